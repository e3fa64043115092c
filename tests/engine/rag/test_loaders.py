"""Loaders on real files of every supported kind, and on files that are not what they claim.

Observed on ../shared/corpus/pdf-oddities (pypdf, empty user password tried):
  password protected: crazyones-encrypted-256, encrypted-file, libreoffice-writer-password, r2-user-password,
                      r3-user-password, r4-aes-user-password, r4-user-password, r6-both-passwords
  empty (no text layer): box, encrypted_doc_no_id, git, imagemagick-ASCII85Decode, imagemagick-CCITTFaxDecode,
                         imagemagick-lzw, issue-3850-1bit-indexed-flate
  everything else loads, including r5/r6-user-password (they open with the empty password) and owner-only files.
"""

from __future__ import annotations

import codecs
import zipfile
from pathlib import Path

import pytest

from engine.rag.loaders import (
    DocumentError,
    EmptyDocument,
    PasswordProtected,
    TooLarge,
    UnsupportedFile,
    WrongFormat,
    decode_text,
    discover,
    kind_for,
    load,
)

CORPUS = Path(__file__).resolve().parents[4] / "shared" / "corpus" / "pdf-oddities"
PROTECTED = {"crazyones-encrypted-256.pdf", "encrypted-file.pdf", "libreoffice-writer-password.pdf",
             "r2-user-password.pdf", "r3-user-password.pdf", "r4-aes-user-password.pdf", "r4-user-password.pdf",
             "r6-both-passwords.pdf"}
NO_TEXT = {"box.pdf", "encrypted_doc_no_id.pdf", "git.pdf", "imagemagick-ASCII85Decode.pdf",
           "imagemagick-CCITTFaxDecode.pdf", "imagemagick-lzw.pdf", "issue-3850-1bit-indexed-flate.pdf"}


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


@pytest.mark.parametrize("name", sorted(p.name for p in CORPUS.glob("*.pdf")))
def test_every_corpus_pdf_loads_or_says_why(name):
    path = CORPUS / name
    if name in PROTECTED:
        with pytest.raises(PasswordProtected) as info:
            load(path)
        assert name in info.value.message and info.value.status == "password protected"
    elif name in NO_TEXT:
        with pytest.raises(EmptyDocument) as info:
            load(path)
        assert "No text could be extracted" in info.value.message
    else:
        document = load(path)
        assert document.kind == "pdf" and document.pages >= 1 and document.sections
        assert all(s.page and 1 <= s.page <= document.pages and s.text.strip() for s in document.sections)


def test_known_phrases_are_on_their_pages():
    assert "misfits" in load(CORPUS / "crazyones.pdf").sections[0].text
    vicksburg = load(CORPUS / "Seige_of_Vicksburg_Sample_OCR.pdf")
    page3 = next(s for s in vicksburg.sections if s.page == 3)
    assert "Cannister shot is a tin cylinder" in page3.text
    assert load(CORPUS / "r4-owner-password.pdf").sections  # owner password only: readable
    assert load(CORPUS / "metadata.pdf").title == "The Title"


def test_markdown_sections_follow_headings_with_exact_lines(tmp_path):
    text = "# Title\n\nIntro line.\n\n## Part A\n\nAlpha text.\nMore alpha.\n\nSetext\n------\n\nBeta.\n" \
           "```\n# not a heading\n```\n"
    document = load(write(tmp_path, "notes.md", text))
    assert document.kind == "markdown" and document.title == "Title"
    lines = text.split("\n")
    assert [(s.heading, s.line_start, s.line_end) for s in document.sections] == [
        ("Title", 1, 3), ("Part A", 5, 8), ("Setext", 10, 16)]
    for s in document.sections:
        assert s.text == "\n".join(lines[s.line_start - 1: s.line_end])


def test_rst_headings(tmp_path):
    text = "=====\nGuide\n=====\n\nWelcome.\n\nInstall\n-------\n\nRun pip.\n"
    document = load(write(tmp_path, "guide.rst", text))
    assert [(s.heading, s.line_start) for s in document.sections] == [("Guide", 1), ("Install", 7)]


def test_html_keeps_only_visible_text(tmp_path):
    html = ("<html><head><title>My page</title><style>body{color:red}</style><script>var secret=1;</script></head>"
            "<body><h1>Welcome</h1><p>Hello &amp; goodbye.</p><noscript>enable js</noscript>"
            "<h2>Details</h2><ul><li>one</li><li>two</li></ul></body></html>")
    document = load(write(tmp_path, "page.html", html))
    text = "\n".join(s.text for s in document.sections)
    assert document.title == "My page"
    assert "Hello & goodbye." in text and "one" in text and "two" in text
    for hidden in ("secret", "color:red", "enable js"):
        assert hidden not in text
    assert [s.heading for s in document.sections] == ["Welcome", "Details"]


def test_docx_paragraphs_headings_and_tables(tmp_path):
    w = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
    xml = (f'<w:document xmlns:w="{w}"><w:body>'
           '<w:p><w:pPr><w:pStyle w:val="Heading1"/></w:pPr><w:r><w:t>Quarterly report</w:t></w:r></w:p>'
           '<w:p><w:r><w:t>Revenue grew </w:t></w:r><w:r><w:t>twelve percent.</w:t></w:r></w:p>'
           '<w:tbl><w:tr><w:tc><w:p><w:r><w:t>Region</w:t></w:r></w:p></w:tc>'
           '<w:tc><w:p><w:r><w:t>North</w:t></w:r></w:p></w:tc></w:tr></w:tbl>'
           '</w:body></w:document>')
    path = tmp_path / "report.docx"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("word/document.xml", xml)
    document = load(path)
    assert document.kind == "docx" and document.title == "Quarterly report"
    text = document.sections[0].text
    assert "Revenue grew twelve percent." in text and "Region | North" in text
    assert document.sections[0].heading == "Quarterly report"


def test_code_sections_at_definitions(tmp_path):
    code = "import os\n\n\n@decorator\ndef first():\n    return 1\n\n\nclass Second:\n    pass\n"
    document = load(write(tmp_path, "mod.py", code))
    assert document.kind == "code" and document.language == "python"
    assert [(s.heading, s.line_start, s.line_end) for s in document.sections] == [
        (None, 1, 1), ("def first():", 4, 6), ("class Second:", 9, 10)]


def test_encodings_never_crash(tmp_path):
    latin = load(write(tmp_path, "latin.txt", "Café crème brûlée".encode("latin-1")))
    assert "Café crème" in latin.sections[0].text
    utf16 = load(write(tmp_path, "wide.txt", codecs.BOM_UTF16_LE + "Grüße aus Köln".encode("utf-16-le")))
    assert utf16.sections[0].text == "Grüße aus Köln"
    garbage = decode_text(bytes(range(128, 256)) * 4, "x.txt")
    assert isinstance(garbage, str) and garbage


@pytest.mark.parametrize("name, data, error, status", [
    ("fake.pdf", "<html><body>not a pdf</body></html>", WrongFormat, "wrong format"),
    ("noise.pdf", bytes(range(256)) * 8, WrongFormat, "wrong format"),
    ("empty.txt", b"", EmptyDocument, "empty"),
    ("blank.md", "\n\n   \n", EmptyDocument, "empty"),
    ("binary.txt", b"\x00\x01\x02binary\x00" * 100, UnsupportedFile, "unsupported"),
    ("fake.docx", "plain text pretending", WrongFormat, "wrong format"),
    ("picture.png", b"\x89PNG\r\n\x1a\n", UnsupportedFile, "unsupported"),
])
def test_files_that_are_not_what_they_say(tmp_path, name, data, error, status):
    with pytest.raises(error) as info:
        load(write(tmp_path, name, data))
    assert info.value.status == status and name in info.value.message


def test_truncated_pdf_is_damaged_not_a_crash(tmp_path):
    data = (CORPUS / "GeoBase_NHNC1_Data_Model_UML_EN.pdf").read_bytes()[:20000]
    with pytest.raises(DocumentError) as info:
        load(write(tmp_path, "cut.pdf", data))
    assert info.value.status in ("damaged", "empty")


def test_size_limit(tmp_path):
    with pytest.raises(TooLarge):
        load(write(tmp_path, "big.txt", "x" * 2000), max_bytes=1000)


def test_discover_skips_hidden_vcs_build_and_binary(tmp_path):
    for name in ("a.md", "sub/b.py", ".hidden/c.txt", ".git/config.txt", "node_modules/d.js", "build/e.txt",
                 "img.png", "sub/f.exe", "sub/__pycache__/g.py", "Makefile"):
        write_path = tmp_path / name
        write_path.parent.mkdir(parents=True, exist_ok=True)
        write_path.write_text("x")
    found = [p.relative_to(tmp_path.resolve()).as_posix() for p in discover([tmp_path])]
    assert found == ["Makefile", "a.md", "sub/b.py"]
    explicit = list(discover([tmp_path / "img.png"]))
    assert explicit == [(tmp_path / "img.png").resolve()]  # named directly: reported, not silently skipped
    assert kind_for("x.PDF") == "pdf" and kind_for("x.unknown") is None
