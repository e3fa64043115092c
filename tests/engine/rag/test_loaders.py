"""Loaders on real files of every supported kind, and on files that are not what they claim.

Observed on ../shared/corpus/pdf-oddities with pypdf 7.1 (strict=False, the empty user password tried):

  status               files
  password protected   crazyones-encrypted-256, encrypted-file, libreoffice-writer-password, r2-user-password,
                       r3-user-password, r4-aes-user-password, r4-user-password, r6-both-passwords
  empty                box, encrypted_doc_no_id (decrypts with "", but its 3 pages have no content), git (one
                       image and a space), imagemagick-ASCII85Decode, imagemagick-CCITTFaxDecode,
                       imagemagick-lzw, issue-3850-1bit-indexed-flate
  ok (52 files)        every other file, including r5-user-password and r6-user-password (their user
                       password is in fact empty: pypdf's decrypt("") returns USER_PASSWORD), the
                       owner-password-only files (r2/r4/r5/r6-owner-password) and the empty-password ones
"""

from __future__ import annotations

import codecs
import os
import zipfile
from pathlib import Path

import pytest
from pypdf import PdfReader

from engine.rag.loaders import (
    SUPPORTED_SUFFIXES,
    CorruptDocument,
    DocumentError,
    EmptyDocument,
    PasswordProtected,
    TooLarge,
    UnreadableFile,
    UnsupportedFile,
    WrongFormat,
    decode_text,
    discover,
    kind_for,
    load,
)
from tests.conftest import CORPUS as SHARED_CORPUS

CORPUS = SHARED_CORPUS / "pdf-oddities"
PROTECTED = {
    "crazyones-encrypted-256",
    "encrypted-file",
    "libreoffice-writer-password",
    "r2-user-password",
    "r3-user-password",
    "r4-aes-user-password",
    "r4-user-password",
    "r6-both-passwords",
}
NO_TEXT = {
    "box",
    "encrypted_doc_no_id",
    "git",
    "imagemagick-ASCII85Decode",
    "imagemagick-CCITTFaxDecode",
    "imagemagick-lzw",
    "issue-3850-1bit-indexed-flate",
}
PASSWORD_NAMED = {
    "libreoffice-writer-password",
    "encrypted-file",
    "crazyones-encrypted-256",
    "r6-both-passwords",
    "encrypted_doc_no_id",
}
PHRASES = {  # a phrase read from each file that must come out of it
    "crazyones": "The misfits. The rebels.",
    "hello-world": "Привет, мир",
    "multilang": "こんにちは世界",
    "pdflatex-outline": "here is some text without a meaning",
    "r2-empty-password": "pdf encryption test",
    "r4-owner-password": "pdf encryption test",
    "unencrypted": "pdf encryption test",
}
W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"


def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


def status_of(path: Path) -> str:
    try:
        load(path)
    except DocumentError as exc:
        return exc.status
    return "ok"


# The PDF corpus -------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(p.stem for p in CORPUS.glob("*.pdf")))
def test_every_corpus_pdf_loads_or_says_why(name):
    path = CORPUS / f"{name}.pdf"
    if name in PROTECTED | NO_TEXT:
        with pytest.raises(DocumentError) as info:
            load(path)
        error = info.value
        assert error.status == ("password protected" if name in PROTECTED else "empty")
        assert f"'{path.name}'" in error.message
        if name in NO_TEXT:
            assert "No text could be extracted" in error.message and "without a text layer" in error.message
        return
    document = load(path)
    assert document.kind == "pdf" and document.pages >= 1 and document.path == str(path) and document.title
    assert document.sections and all(s.text.strip() for s in document.sections)
    pages = [s.page for s in document.sections]
    assert pages == sorted(set(pages)) and all(1 <= p <= document.pages for p in pages)


def test_password_status_is_exactly_what_pypdf_cannot_open():
    named = sorted(p for p in CORPUS.glob("*.pdf") if "user-password" in p.stem or p.stem in PASSWORD_NAMED)
    assert len(named) == 11
    for path in named:
        reader = PdfReader(path, strict=False)
        opens = not reader.is_encrypted or bool(reader.decrypt(""))
        assert (status_of(path) == "password protected") == (not opens), path.name
    for stem in (
        "r2-owner-password",
        "r4-owner-password",
        "r5-owner-password",
        "r6-owner-password",
        "r2-empty-password",
        "r3-empty-password",
        "r5-empty-password",
        "r6-empty-password",
        "r5-user-password",
        "r6-user-password",
        "r4-aes-v2-no-key-length",
    ):
        assert load(CORPUS / f"{stem}.pdf").sections[0].text.startswith("pdf encryption test"), stem


@pytest.mark.parametrize("stem, phrase", sorted(PHRASES.items()))
def test_known_readable_files_give_their_text(stem, phrase):
    document = load(CORPUS / f"{stem}.pdf")
    assert any(phrase in s.text for s in document.sections)


def test_git_pdf_is_an_image_with_no_text():
    # Named among the readable files in the brief, but it holds one picture and a lone space.
    with pytest.raises(EmptyDocument):
        load(CORPUS / "git.pdf")


def test_pdf_provenance_pages_titles_and_outline_headings():
    vicksburg = load(CORPUS / "Seige_of_Vicksburg_Sample_OCR.pdf")
    assert "Cannister shot is a tin cylinder" in next(s for s in vicksburg.sections if s.page == 3).text
    assert load(CORPUS / "metadata.pdf").title == "The Title"
    assert load(CORPUS / "example.pdf").title == "PDF Example Document"
    assert load(CORPUS / "crazyones.pdf").title == "crazyones.pdf"  # no metadata title: the file name
    outline = load(CORPUS / "pdflatex-outline.pdf")
    assert [(s.page, s.heading) for s in outline.sections] == [(1, None), (2, "Foo"), (3, "Bar"), (4, "Bar")]
    images = load(CORPUS / "imagemagick-images.pdf")  # pages without text are skipped, numbering kept
    assert images.pages == 6 and len(images.sections) < 6


def test_truncated_pdf_is_damaged_with_the_parsers_reason(tmp_path):
    data = (CORPUS / "crazyones.pdf").read_bytes()[:6000]
    with pytest.raises(CorruptDocument) as info:
        load(write(tmp_path, "cut.pdf", data))
    assert info.value.status == "damaged" and "'cut.pdf'" in info.value.message and info.value.detail


# Text, Markdown, reStructuredText -------------------------------------------------------


def test_markdown_sections_follow_headings_with_exact_lines(tmp_path):
    text = (
        "---\ntitle: front matter\n---\n# Title\n\nIntro line.\n\n## Part A\n\nAlpha text.\nMore alpha.\n\n"
        "Setext\n------\n\nBeta.\n```\n# not a heading\n```\n"
    )
    document = load(write(tmp_path, "notes.md", text))
    assert document.kind == "markdown" and document.title == "Title"
    lines = text.split("\n")
    assert [(s.heading, s.line_start, s.line_end) for s in document.sections] == [
        (None, 1, 3),
        ("Title", 4, 6),
        ("Part A", 8, 11),
        ("Setext", 13, 19),
    ]
    for s in document.sections:
        assert s.text == "\n".join(lines[s.line_start - 1 : s.line_end])


def test_long_sections_split_at_paragraphs_keeping_exact_lines(tmp_path):
    paragraphs = [f"Paragraph {i} " + "words " * 120 for i in range(30)]  # ~22 KB under one heading
    text = "# Big\n\n" + "\n\n".join(paragraphs) + "\n"
    document = load(write(tmp_path, "big.md", text))
    lines = text.split("\n")
    assert len(document.sections) > 3 and {s.heading for s in document.sections} == {"Big"}
    for s in document.sections:
        assert len(s.text) < 6000 and s.text == "\n".join(lines[s.line_start - 1 : s.line_end])
    assert document.sections[0].line_start == 1 and document.sections[-1].line_end == len(lines) - 1


def test_rst_headings_with_and_without_overline(tmp_path):
    text = "=====\nGuide\n=====\n\nWelcome.\n\nInstall\n-------\n\nRun pip.\n\n----\n\nAfter a transition.\n"
    document = load(write(tmp_path, "guide.rst", text))
    assert document.title == "Guide"
    assert [(s.heading, s.line_start, s.line_end) for s in document.sections] == [("Guide", 1, 5), ("Install", 7, 14)]


def test_plain_text_in_any_encoding(tmp_path):
    latin = load(write(tmp_path, "latin.txt", "Café crème brûlée, déjà vu à Noël.\n".encode("latin-1")))
    assert latin.kind == "text" and latin.title == "latin.txt"
    assert latin.sections[0].text == "Café crème brûlée, déjà vu à Noël." and latin.sections[0].line_start == 1
    utf16 = load(write(tmp_path, "wide.txt", "Grüße aus Köln\nzweite Zeile".encode("utf-16")))  # with a BOM
    assert utf16.sections[0].text == "Grüße aus Köln\nzweite Zeile" and utf16.sections[0].line_end == 2
    bom8 = load(write(tmp_path, "bom.txt", codecs.BOM_UTF8 + "naïve".encode()))
    assert bom8.sections[0].text == "naïve"
    garbage = decode_text(bytes(range(128, 256)) * 4 + b"\xff\xfe\xfd", "x.txt")
    assert isinstance(garbage, str) and garbage


# HTML, DOCX, code ---------------------------------------------------------------------


def test_html_keeps_only_visible_text(tmp_path):
    html = (
        "<html><head><title>My page</title><style>body{color:red}</style><script>var secret=1;</script></head>"
        "<body><h1>Welcome</h1><p>Hello &amp; goodbye.</p><noscript>enable js</noscript>"
        "<template><p>template text</p></template><svg><title>icon</title><text>drawn</text></svg>"
        "<h2>Details</h2><ul><li>one</li><li>two</li></ul>line<br/>break</body></html>"
    )
    document = load(write(tmp_path, "page.html", html))
    text = "\n".join(s.text for s in document.sections)
    assert document.kind == "html" and document.title == "My page"
    assert "Hello & goodbye." in text and "one\n" in text and "line\nbreak" in text
    for hidden in ("secret", "color:red", "enable js", "template text", "icon", "drawn", "My page"):
        assert hidden not in text
    assert [s.heading for s in document.sections] == ["Welcome", "Details"]
    assert all(s.line_start is None and s.page is None for s in document.sections)


def test_html_with_an_unclosed_head_still_shows_its_body(tmp_path):
    document = load(write(tmp_path, "sloppy.htm", "<html><head><meta charset=utf-8><body><h3>Notes</h3>Body text"))
    assert document.title == "Notes" and "Body text" in document.sections[0].text


def docx_bytes(tmp_path: Path, body: str, name: str = "report.docx") -> Path:
    path = tmp_path / name
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("word/document.xml", f'<w:document xmlns:w="{W}"><w:body>{body}</w:body></w:document>')
    return path


def test_docx_paragraphs_headings_and_tables(tmp_path):
    body = (
        "<w:p><w:r><w:t>Preface before any heading.</w:t></w:r></w:p>"
        '<w:p><w:pPr><w:pStyle w:val="Heading1"/></w:pPr><w:r><w:t>Quarterly report</w:t></w:r></w:p>'
        '<w:p><w:r><w:t xml:space="preserve">Revenue grew </w:t></w:r><w:r><w:t>twelve percent.</w:t></w:r></w:p>'
        "<w:tbl><w:tr><w:tc><w:p><w:r><w:t>Region</w:t></w:r></w:p></w:tc>"
        "<w:tc><w:p><w:r><w:t>North</w:t></w:r></w:p></w:tc></w:tr></w:tbl>"
        '<w:p><w:pPr><w:pStyle w:val="Heading2"/></w:pPr><w:r><w:t>Outlook</w:t></w:r></w:p>'
        "<w:p><w:r><w:t>Steady.</w:t></w:r></w:p>"
    )
    document = load(docx_bytes(tmp_path, body))
    assert document.kind == "docx" and document.title == "Quarterly report"
    assert [s.heading for s in document.sections] == [None, "Quarterly report", "Outlook"]
    assert document.sections[0].text == "Preface before any heading."
    assert "Revenue grew twelve percent." in document.sections[1].text
    assert "Region | North" in document.sections[1].text
    assert all(s.page is None and s.line_start is None for s in document.sections)


def test_docx_that_is_not_a_word_document(tmp_path):
    for path in (write(tmp_path, "fake.docx", "plain text pretending"), tmp_path / "other.docx"):
        if not path.exists():
            with zipfile.ZipFile(path, "w") as archive:
                archive.writestr("content.xml", "<x/>")
        with pytest.raises(WrongFormat) as info:
            load(path)
        assert info.value.status == "not a docx file" and f"'{path.name}'" in info.value.message
    encrypted = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(500) + "EncryptedPackage".encode("utf-16-le")
    with pytest.raises(PasswordProtected):
        load(write(tmp_path, "secret.docx", encrypted))


def test_code_sections_at_definitions(tmp_path):
    code = (
        "import os\n\n\n@decorator\ndef first():\n    # inner comment\n    return 1\n\n\n"
        "class Second:\n    def method(self):\n        pass\n\n\nasync def third():\n    pass\n"
    )
    document = load(write(tmp_path, "mod.py", code))
    assert document.kind == "code" and document.language == "python" and document.title == "mod.py"
    assert [(s.heading, s.line_start, s.line_end) for s in document.sections] == [
        (None, 1, 1),
        ("def first():", 4, 7),
        ("class Second:", 10, 12),
        ("async def third():", 15, 16),
    ]
    js = load(write(tmp_path, "app.js", "const a = 1;\n\nexport function run() {\n  return a;\n}\n"))
    assert js.language == "javascript" and js.sections[-1].heading == "export function run() {"


def test_code_without_definitions_comes_in_windows(tmp_path):
    lines = [f'  "key{i}": {i},' for i in range(150)]
    document = load(write(tmp_path, "data.json", "{\n" + "\n".join(lines) + "\n}\n"))
    assert document.language == "json"
    assert [(s.line_start, s.line_end) for s in document.sections] == [(1, 60), (61, 120), (121, 152)]


# Files that are not what they say ---------------------------------------------------


@pytest.mark.parametrize(
    "name, data, error, status",
    [
        ("fake.pdf", "<html><body>not a pdf</body></html>", WrongFormat, "not a pdf file"),
        ("noise.pdf", bytes(range(256)) * 8, WrongFormat, "not a pdf file"),
        ("zero.pdf", b"", EmptyDocument, "empty"),
        ("empty.txt", b"", EmptyDocument, "empty"),
        ("blank.md", "\n\n   \n", EmptyDocument, "empty"),
        ("binary.txt", b"\x00\x01\x02binary\x00" * 100, UnsupportedFile, "unsupported"),
        ("picture.gif", b"GIF89a", UnsupportedFile, "unsupported"),  # images Locus reads by OCR: test_ocr.py
    ],
)
def test_files_that_are_not_what_they_say(tmp_path, name, data, error, status):
    with pytest.raises(error) as info:
        load(write(tmp_path, name, data))
    assert info.value.status == status and f"'{name}'" in info.value.message
    assert info.value.code == "document_error"
    if status == "empty":
        assert "No text could be extracted" in info.value.message


def test_size_limit_and_missing_files(tmp_path):
    with pytest.raises(TooLarge) as info:
        load(write(tmp_path, "big.txt", "x" * 2000), max_bytes=1000)
    assert info.value.status == "too large" and "'big.txt'" in info.value.message
    with pytest.raises(UnreadableFile) as info:
        load(tmp_path / "gone.md")
    assert info.value.status == "unreadable" and "'gone.md'" in info.value.message


# Discovery ----------------------------------------------------------------------------


def test_discover_skips_hidden_vcs_build_and_binary(tmp_path):
    for name in (
        "a.md",
        "sub/b.py",
        ".hidden/c.txt",
        ".git/config.txt",
        "node_modules/d.js",
        "build/e.txt",
        "img.gif",
        "sub/f.exe",
        "sub/__pycache__/g.py",
        "Makefile",
        "sub/.env",
        "z/archive.zip",
        "z/y/deep.rst",
        "venv/lib.py",
        "report.doc",
    ):
        write(tmp_path, name, "x")
    os.symlink(tmp_path, tmp_path / "sub" / "loop")  # a symlink back up the tree
    found = [p.relative_to(tmp_path.resolve()).as_posix() for p in discover([tmp_path])]
    assert found == ["Makefile", "a.md", "sub/b.py", "z/y/deep.rst"]
    assert list(discover([tmp_path, tmp_path / "a.md"])) == [tmp_path.resolve() / p for p in found]
    explicit = list(discover([tmp_path / "img.gif", tmp_path / "missing.txt"]))
    assert explicit == [(tmp_path / "img.gif").resolve()]  # named directly: reported, not silently skipped


def test_kinds_by_extension():
    assert kind_for("x.PDF") == "pdf" and kind_for("notes.markdown") == "markdown" and kind_for("a.rst") == "rst"
    assert kind_for("page.htm") == "html" and kind_for("memo.docx") == "docx" and kind_for("log.txt") == "text"
    assert kind_for("main.rs") == "code" and kind_for("Dockerfile") == "code"
    assert kind_for("photo.JPG") == "image" and kind_for("scan.tiff") == "image" and kind_for("a.png") == "image"
    assert kind_for("x.unknown") is None and kind_for("anim.gif") is None and kind_for("old.doc") is None
    assert {".py", ".md", ".pdf", ".docx", ".html", ".yaml"} <= SUPPORTED_SUFFIXES


def link_tree(base: Path) -> Path:
    """A folder to index whose links lead out of it, into hidden places, round in loops, and to its own files.

    base/.docker/config.json        credentials beside the folder
    base/outside/diary.md           another folder of the user's
    base/root/docs/real.md          the one file to index
    base/root/.private/keys.md      a hidden folder inside the added one
    base/root/.env.md               a hidden file inside it
    """
    write(base, ".docker/config.json", '{"auths": {"registry": {"auth": "c2VjcmV0"}}}')
    write(base, "outside/diary.md", "Dear diary.")
    root = base / "root"
    write(root, "docs/real.md", "# Real\n\nA document that belongs here.")
    write(root, ".private/keys.md", "private keys")
    write(root, ".env.md", "API_KEY=secret")
    write(root, "node_modules/pkg/readme.md", "a dependency")
    links = {
        "cfg": "../.docker",  # a folder outside (the example)
        "config.json": "../.docker/config.json",  # a file outside
        "diaries": "../outside",  # a folder outside
        "private": ".private",  # a hidden folder inside
        "env.md": ".env.md",  # a hidden file inside
        "deps": "node_modules/pkg",  # an excluded folder inside
        "docs/up": "..",  # back up the tree: a loop
        "spin": "spin",  # a link to itself
        "alias.md": "docs/real.md",  # a file inside: followed
        "shortcut": "docs",  # a folder inside: followed
    }
    for name, target in links.items():
        os.symlink(target, root / name)
    return root


def test_discover_follows_links_only_within_the_folder_and_says_what_it_skipped(tmp_path):
    root = link_tree(tmp_path)
    skipped = []
    found = list(discover([root], on_skip=skipped.append))
    assert found == [root.resolve() / "docs" / "real.md"]  # the link to it and into its folder add no copy
    why = {link.path.relative_to(root).as_posix(): link.reason for link in skipped}
    assert why == {
        "cfg": "link leaves the folder",
        "config.json": "link leaves the folder",
        "diaries": "link leaves the folder",
        "private": "link into a hidden folder",
        "env.md": "link to a hidden file",
        "deps": "link into an excluded folder",
        "docs/up": "link loop",
        "spin": "link loop",
    }
    cfg = next(link for link in skipped if link.path.name == "cfg")
    assert cfg.target == (tmp_path / ".docker").resolve()
    assert cfg.message.startswith(f"'{root / 'cfg'}' was not followed: it leads to '{cfg.target}', outside")
    assert list(discover([root])) == found  # on_skip is optional


def test_a_file_named_directly_is_the_users_choice_even_through_a_link(tmp_path):
    root = link_tree(tmp_path)
    assert list(discover([root / "config.json"])) == [(tmp_path / ".docker" / "config.json").resolve()]
