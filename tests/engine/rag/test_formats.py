"""The formats people keep, end to end: a real file of each, made here after its published format, indexed by the
real indexer (parse workers, the bundled embedder, LanceDB), searched, and cited at its own kind of place; a
damaged file of each kind fails with its own reason."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from engine.models.bundled import BUNDLED_EMBEDDER_NAME, bundled_embedder_path
from engine.rag.cite import Citation
from engine.rag.library import DocumentLibrary
from engine.rag.loaders import SUPPORTED_SUFFIXES, UnsupportedFile, kind_for, load
from engine.rag.loaders.sheets import MAX_ROWS
from tests.engine.rag import formats

PPTX_MIME = "application/vnd.openxmlformats-officedocument.presentationml.presentation"


def make_corpus(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    deck = formats.pptx(
        folder / "quarterly.pptx",
        [
            ("Welcome", ["Agenda for the quarterly review"]),
            ("Harbour revenue", ["Revenue from the harbour cranes grew by eleven percent"]),
            ("Next steps", ["Hire two welders before the winter"]),
        ],
        notes={3: "Remind everyone about the lighthouse inspection"},
    )
    budget = {
        1: ["Item", "Supplier", "Cost"],
        **{n: [f"Widget {n}", "Acme", n * 10] for n in range(2, 40)},
        40: ["Saffron crates", "Moreau Spices", 990],
    }
    formats.xlsx(folder / "budget.xlsx", {"Summary": {1: ["Total", 1234]}, "Purchases": budget})
    formats.csv_file(
        folder / "stations.csv",
        [["Station", "River", "Depth (m)"]]
        + [[f"Gauge {n}", "Rhine", str(n)] for n in range(2, 30)]
        + [["Pegel Kaub", "Rhine, near the Loreley", "1.9"]],
    )
    formats.epub(
        folder / "novel.epub",
        "A Year at Sea",
        [
            ("Leaving Port", ["The ship left the quay at dawn with forty barrels of apples."]),
            ("The Storm", ["A gale tore the mainsail and the cook prayed to the albatross."]),
            ("Landfall", ["They reached the spice islands in October."]),
        ],
    )
    formats.odt(
        folder / "handbook.odt",
        "Staff Handbook",
        [
            ("p", "Welcome to the company."),
            ("h", "Holidays"),
            ("p", "Every employee gets thirty days of paid leave."),
            ("h", "Bicycles"),
            ("p", "Bicycles may be parked in the<text:s/>courtyard behind the bakery."),
        ],
    )
    formats.eml(
        folder / "plan.eml",
        formats.message(
            "Board meeting",
            "Please read the attached deck before Thursday.",
            [
                ("deck.pptx", deck.read_bytes(), PPTX_MIME),
                ("setup.exe", b"MZ\x90\x00binary", "application/octet-stream"),
                ("minutes.pdf", b"%PDF-1.4\nnot really a pdf", "application/pdf"),
            ],
        ),
    )
    formats.mbox(
        folder / "inbox.mbox",
        [
            formats.message("Lunch", "Pizza on Friday at the usual place."),
            formats.message("Parking", "The garage closes for repairs on Monday; use the orchard lot."),
            formats.message(
                "Recipes",
                "Attached are the recipes.",
                [
                    (
                        "recipes.txt",
                        b"Plum cake\n\nMix the plums with cinnamon and bake for forty minutes.\n",
                        "text/plain",
                    )
                ],
            ),
        ],
    )
    return folder


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    base = tmp_path_factory.mktemp("formats")
    docs = make_corpus(base / "docs")
    lib = DocumentLibrary(base / "index", bundled_embedder_path(), BUNDLED_EMBEDDER_NAME, parse_timeout_s=60)
    result = lib.index([docs]).wait(600)
    yield lib, result
    lib.close()


def cited(lib: DocumentLibrary, question: str, file: str) -> dict:
    """The citation (as the window and the API get it) of the best passage from ``file`` for the question."""
    retrieval = lib.retrieve(question, None, lambda t: len(t.split()), 4000, max_passages=8)
    for passage in retrieval.passages:
        if Path(passage.path).name == file:
            return Citation(1, passage, passage.text[:80], explicit=True).to_dict()
    raise AssertionError(f"no passage of {file} for {question!r}: {[p.path for p in retrieval.passages]}")


def test_every_format_is_indexed_with_its_kind(indexed):
    lib, result = indexed
    assert result.failed == 0 and result.indexed == 7
    kinds = {Path(r.path).name: (r.status, r.kind) for r in lib.documents()}
    assert kinds == {
        "quarterly.pptx": ("done", "pptx"),
        "budget.xlsx": ("done", "xlsx"),
        "stations.csv": ("done", "csv"),
        "novel.epub": ("done", "epub"),
        "handbook.odt": ("done", "odt"),
        "plan.eml": ("done", "email"),
        "inbox.mbox": ("done", "mbox"),
    }
    titles = {Path(r.path).name: r.title for r in lib.documents()}
    assert titles["novel.epub"] == "A Year at Sea" and titles["handbook.odt"] == "Staff Handbook"
    assert titles["plan.eml"] == "Board meeting"


def test_pptx_cites_the_slide(indexed):
    lib, _ = indexed
    source = cited(lib, "How much did harbour crane revenue grow?", "quarterly.pptx")
    assert (source["place"], source["page"], source["place_label"]) == ("slide", 2, "Harbour revenue")
    assert source["location"] == 'slide 2 "Harbour revenue"'
    notes = cited(lib, "lighthouse inspection", "quarterly.pptx")
    assert notes["location"] == 'slide 3 "Next steps"'  # speaker notes belong to their slide


def test_xlsx_cites_sheet_and_rows_with_the_header_in_the_chunk(indexed):
    lib, _ = indexed
    source = cited(lib, "Saffron crates from Moreau Spices", "budget.xlsx")
    assert source["place"] == "rows" and source["place_label"] == "Purchases"
    assert source["line_start"] <= 40 == source["line_end"]
    assert source["location"] == f'sheet "Purchases", rows {source["line_start"]}–40'
    hit = lib.store.text_search("Saffron", 3)[0]
    assert hit.text.startswith("Item | Supplier | Cost\n") and "Saffron crates | Moreau Spices | 990" in hit.text
    first_rows = [h for h in lib.store.chunk_rows(hit.doc_id) if h["place_label"] == "Purchases"]
    assert all(r["text"].startswith("Item | Supplier | Cost\n") for r in first_rows) and len(first_rows) > 1
    assert min(r["line_start"] for r in first_rows) == 2  # the header is row 1; data rows are numbered as in Excel


def test_xlsx_dates_read_as_dates_not_day_numbers(tmp_path):
    import datetime

    book = formats.xlsx(
        tmp_path / "shifts.xlsx",
        {
            "Shifts": {
                1: ["Day", "Starts", "Hours"],
                2: [datetime.date(2025, 3, 3), datetime.datetime(2025, 3, 3, 14, 30), 8],
            }
        },
    )
    assert load(book).sections[0].text == "Day | Starts | Hours\n2025-03-03 | 2025-03-03 14:30 | 8"


def test_csv_cites_rows(indexed):
    lib, _ = indexed
    source = cited(lib, "Pegel Kaub near the Loreley", "stations.csv")
    assert source["place"] == "rows" and source["place_label"] is None and source["line_end"] == 30
    assert source["location"].startswith("rows ") and source["location"].endswith("–30")
    assert source["quote"].startswith("Station | River | Depth (m)")


def test_epub_cites_the_chapter_by_its_table_of_contents_title(indexed):
    lib, _ = indexed
    source = cited(lib, "the gale tore the mainsail", "novel.epub")
    assert (source["place"], source["page"], source["place_label"]) == ("chapter", 2, "The Storm")
    assert source["location"] == 'chapter 2 "The Storm"'  # the cover page is not counted


def test_odt_cites_the_section_heading(indexed):
    lib, _ = indexed
    source = cited(lib, "where can bicycles be parked", "handbook.odt")
    assert source["location"] == 'section "Bicycles"'
    assert "courtyard behind the bakery" in lib.store.text_search("bakery", 1)[0].text


def test_email_cites_the_message_and_its_attachments_slide(indexed):
    lib, _ = indexed
    body = cited(lib, "read the attached deck before Thursday", "plan.eml")
    assert body["location"] == 'message "Board meeting"'
    attached = cited(lib, "Hire two welders before the winter", "plan.eml")
    assert attached["location"] == 'message "Board meeting", attachment "deck.pptx", slide 3 "Next steps"'
    assert attached["place_within"] == 'message "Board meeting", attachment "deck.pptx"'
    record = lib.find(body["path"])
    text = " ".join(r["text"] for r in lib.store.chunk_rows(record.doc_id))
    assert 'Attachments not indexed: "setup.exe" (unsupported), "minutes.pdf" (damaged).' in text


def test_mbox_cites_each_message_and_an_attachments_lines(indexed):
    lib, _ = indexed
    parking = cited(lib, "When does the garage close for repairs?", "inbox.mbox")
    assert parking["location"] == 'message 2 "Parking"'
    recipe = cited(lib, "how long to bake the plum cake with cinnamon", "inbox.mbox")
    assert recipe["location"] == 'message 3 "Recipes", attachment "recipes.txt", lines 1–3'


# Damaged files: each says why in its own words ----------------------------------------------


def broken_zip_part(path: Path, part: str, content: bytes) -> Path:
    """The package with one part's XML replaced (by something that is not well-formed)."""
    with zipfile.ZipFile(path) as src:
        parts = {i.filename: src.read(i) for i in src.infolist()}
    parts[part] = content
    with zipfile.ZipFile(path, "w") as out:
        for name, data in parts.items():
            out.writestr(name, data)
    return path


@pytest.mark.parametrize(
    ("name", "make", "part"),
    [
        ("deck.pptx", lambda p: formats.pptx(p, [("A", ["b"])]), "ppt/slides/slide1.xml"),
        ("book.xlsx", lambda p: formats.xlsx(p, {"S": {1: ["a"], 2: ["b"]}}), "xl/worksheets/sheet1.xml"),
        ("text.odt", lambda p: formats.odt(p, "T", [("p", "x")]), "content.xml"),
        ("novel.epub", lambda p: formats.epub(p, "T", [("C", ["x"])]), "OEBPS/content.opf"),
    ],
)
def test_damaged_packages_say_which_part_and_why(tmp_path, name, make, part):
    path = broken_zip_part(make(tmp_path / name), part, b"<unclosed><tag>")
    with pytest.raises(Exception) as caught:
        load(path)
    assert caught.value.status == "damaged" and f"'{part}' is not well-formed XML" in str(caught.value)
    truncated = formats.truncated(make(tmp_path / f"cut-{name}"))
    with pytest.raises(Exception) as cut:
        load(truncated)
    kind = kind_for(name)
    assert cut.value.status == f"not {'an' if kind[0] in 'aeiou' else 'a'} {kind} file"


def test_a_zip_bomb_is_too_large_before_it_is_unpacked(tmp_path):
    path = tmp_path / "bomb.pptx"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("ppt/presentation.xml", "<p/>")
        archive.writestr("ppt/slides/slide1.xml", b"<a>" + b" " * (30 * 2**20) + b"</a>")
    assert path.stat().st_size < 100_000
    with pytest.raises(Exception) as caught:
        load(path, max_bytes=10 * 2**20)
    assert caught.value.status == "too large" and "decompression bomb" in caught.value.hint


def test_entity_bombs_and_encrypted_office_files_are_refused(tmp_path):
    bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]><x>&b;</x>'
    path = broken_zip_part(formats.odt(tmp_path / "bomb.odt", "T", [("p", "x")]), "content.xml", bomb)
    with pytest.raises(Exception) as caught:
        load(path)
    assert caught.value.status == "damaged" and "entities" in str(caught.value)
    encrypted = tmp_path / "secret.xlsx"
    encrypted.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(500) + "EncryptedPackage".encode("utf-16-le"))
    with pytest.raises(Exception) as locked:
        load(encrypted)
    assert locked.value.status == "password protected"


def test_mail_that_is_not_mail(tmp_path):
    not_mail = tmp_path / "note.eml"
    not_mail.write_bytes(b"just some words\nwithout any headers\n")
    with pytest.raises(Exception) as caught:
        load(not_mail)
    assert caught.value.status == "not an e-mail file"
    not_box = tmp_path / "box.mbox"
    not_box.write_bytes(b"Subject: hello\n\nno From line first\n")
    with pytest.raises(Exception) as box:
        load(not_box)
    assert box.value.status == "not a mbox file"


def test_a_csv_with_a_runaway_quote_is_damaged_and_a_huge_one_too_large(tmp_path):
    runaway = tmp_path / "runaway.csv"
    runaway.write_text('a,b\n1,"never closed\n' + "x," * 200_000 + "\n", encoding="utf-8")
    with pytest.raises(Exception) as caught:
        load(runaway)
    assert caught.value.status == "damaged" and "CSV" in str(caught.value)
    huge = tmp_path / "huge.csv"
    huge.write_text("n\n" + "1\n" * (MAX_ROWS + 1), encoding="utf-8")
    with pytest.raises(Exception) as big:
        load(huge)
    assert big.value.status == "too large"


def test_an_attachment_inside_forwarded_messages_stops_at_the_depth_limit(tmp_path):
    from email.message import EmailMessage

    inner = formats.message("Level 4", "deepest", [("deep.txt", b"the treasure is under the oak\n", "text/plain")])
    for level in (3, 2, 1):
        outer = formats.message(f"Level {level}", f"forwarding level {level}")
        outer.add_attachment(inner)  # message/rfc822
        inner = outer
    assert isinstance(inner, EmailMessage)
    document = load(formats.eml(tmp_path / "fwd.eml", inner))
    text = "\n".join(s.text for s in document.sections)
    assert "forwarding level 3" in text and "treasure" not in text
    assert any("nested" in why for why in document.skipped)
    wheres = {s.within for s in document.sections}
    assert 'message "Level 1", attachment "attachment 1"' in wheres


def test_new_kinds_are_supported_and_named_in_the_hint(tmp_path):
    assert {".epub", ".odt", ".pptx", ".xlsx", ".csv", ".tsv", ".eml", ".mbox"} <= SUPPORTED_SUFFIXES
    with pytest.raises(UnsupportedFile) as caught:
        load(tmp_path / "x.key")
    words = ("EPUB", "PowerPoint", "Excel", "CSV", "e-mail", ".odt", "PNG", "JPEG", "TIFF", "OCR")
    assert all(word in caught.value.hint for word in words)


# Rows in chunks, text in any encoding, and an index from before places ------------------------------


def test_rows_are_chunked_between_rows_each_chunk_headed_by_the_header():
    from engine.rag.chunk import Chunker
    from engine.rag.loaders import LoadedDocument
    from engine.rag.loaders.sheets import rows_sections

    chunker = Chunker(bundled_embedder_path() / "tokenizer.json", max_tokens=64, overlap_tokens=12)
    rows = [(1, ["Name", "Town", "Favourite fruit"])] + [(n, [f"Person {n}", "Leeds", "plums"]) for n in range(2, 60)]
    document = LoadedDocument("/x.csv", "csv", "x.csv", tuple(rows_sections(rows, "x.csv", None, None)))
    chunks = chunker.chunk(document)
    assert len(chunks) > 3
    assert all(c.text.startswith("Name | Town | Favourite fruit\n") and c.n_tokens <= 64 for c in chunks)
    covered = []
    for c in chunks:
        body = c.text.split("\n")[1:]
        assert (
            body[0] == f"Person {c.line_start} | Leeds | plums" and body[-1] == f"Person {c.line_end} | Leeds | plums"
        )
        covered.extend(range(c.line_start, c.line_end + 1))
    assert covered == list(range(2, 60))  # every row once, none split, none repeated


@pytest.mark.parametrize(
    ("encoding", "text"),
    [
        ("utf-16-le", "Grüße aus Köln\nzweite Zeile"),  # no byte-order mark
        ("utf-16-be", "Grüße aus Köln\nzweite Zeile"),
        ("cp1252", "“Smart quotes” and an em dash — café prices in €"),
        ("shift_jis", "東京の天気は晴れです。明日は雨が降るでしょう。会議は午後三時に始まります。"),
        ("cp1251", "Привет, как дела? Сегодня хорошая погода."),
    ],
)
def test_plain_text_in_legacy_encodings_and_utf16_without_a_mark(tmp_path, encoding, text):
    path = tmp_path / "note.txt"
    path.write_bytes(text.encode(encoding))
    assert load(path).sections[0].text == text


def test_binary_with_zero_bytes_is_still_not_text(tmp_path):
    path = tmp_path / "blob.txt"
    path.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(UnsupportedFile):
        load(path)


def test_encoded_headers_legacy_charsets_and_html_only_mail(tmp_path):
    from email.message import EmailMessage

    german = formats.message("Grüße zur Überweisung", "placeholder")
    german.set_content("Die Überweisung über 300 € ist angekommen.", charset="iso-8859-15", cte="quoted-printable")
    html_only = EmailMessage()
    html_only["From"], html_only["Subject"] = "news@example.org", "Newsletter"
    html_only.set_content(
        "<html><head><style>p{color:red}</style><script>steal()</script></head>"
        "<body><h1>Spring</h1><p>The orchard opens on Saturday.</p></body></html>",
        subtype="html",
    )
    box = load(formats.mbox(tmp_path / "mixed.mbox", [german, html_only]))
    first, second = box.sections
    assert first.label == "Grüße zur Überweisung" and "Die Überweisung über 300 € ist angekommen." in first.text
    assert second.page == 2 and "The orchard opens on Saturday." in second.text
    assert "steal" not in second.text and "color" not in second.text


def test_names_from_a_document_carry_no_control_characters_into_locations(tmp_path):
    deck = formats.pptx(tmp_path / "evil.pptx", [("Results\u202edeR\u2066 red", ["body text here"])])
    section = load(deck).sections[0]  # a right-to-left override would show the title reversed
    assert section.label == "Results deR red" and section.heading == section.label
    mail = formats.message("Invoice\x1b[31m due", "Pay soon.")  # a terminal escape in a header
    assert load(formats.eml(tmp_path / "esc.eml", mail)).sections[0].label == "Invoice [31m due"


# Hostile and odd inputs (review of issue 19) --------------------------------------------------------


def xlsx_with(path: Path, sheet_data: str, styles: str | None = None) -> Path:
    """A real workbook whose first sheet's <sheetData> (and optionally styles.xml) is given as raw XML."""
    book = formats.xlsx(path, {"S": {1: ["a"]}})
    ns = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    broken_zip_part(
        book,
        "xl/worksheets/sheet1.xml",
        f'<worksheet xmlns="{ns}"><sheetData>{sheet_data}</sheetData></worksheet>'.encode(),
    )
    if styles is not None:
        broken_zip_part(book, "xl/styles.xml", f'<styleSheet xmlns="{ns}">{styles}</styleSheet>'.encode())
    return book


def test_a_tiny_workbook_of_far_right_cells_does_not_become_megabytes_of_bars(tmp_path):
    rows = "".join(
        f'<row r="{i}"><c r="A{i}" t="inlineStr"><is><t>k{i}</t></is></c><c r="XFD{i}"><v>1</v></c></row>'
        for i in range(1, 501)
    )
    path = xlsx_with(tmp_path / "wide.xlsx", rows)
    assert path.stat().st_size < 50_000
    document = load(path)
    text = "\n".join(s.text for s in document.sections)
    assert len(text) < 60_000 and "k7 | … | 1" in text


def test_a_row_is_cut_to_a_line_and_a_sheet_of_too_much_text_is_too_large(tmp_path, monkeypatch):
    from engine.rag.loaders import sheets

    cells = "".join(f'<c r="{formats._column(c)}2" t="inlineStr"><is><t>{"w" * 1500}</t></is></c>' for c in range(40))
    path = xlsx_with(
        tmp_path / "long.xlsx",
        f'<row r="1"><c r="A1" t="inlineStr"><is><t>h</t></is></c></row><row r="2">{cells}</row>',
    )
    document = load(path)
    assert max(len(line) for s in document.sections for line in s.text.splitlines()) <= sheets.MAX_ROW_CHARS
    monkeypatch.setattr(sheets, "MAX_TEXT_CHARS", 5000)  # read in-process: the loader takes the limit at call time
    with pytest.raises(Exception) as caught:
        load(path)
    assert caught.value.status == "too large" and "text" in str(caught.value)


def test_rows_numbered_backwards_count_on_instead(tmp_path):
    rows = "".join(
        f'<row r="{r}"><c r="A{r}" t="inlineStr"><is><t>{t}</t></is></c></row>'
        for r, t in ((1, "head"), (10, "ten"), (5, "five"), (5, "again"))
    )
    document = load(xlsx_with(tmp_path / "back.xlsx", rows))
    places = [(s.line_start, s.line_end) for s in document.sections]
    assert all(start <= end for start, end in places) and places[-1][1] == 12


def test_times_and_durations_are_not_shown_as_dates(tmp_path):
    styles = (
        '<numFmts count="1"><numFmt numFmtId="164" formatCode="[h]:mm"/></numFmts>'
        '<cellXfs count="4"><xf numFmtId="0"/><xf numFmtId="20"/><xf numFmtId="21"/><xf numFmtId="164"/></cellXfs>'
    )
    rows = (
        '<row r="1"><c r="A1" t="inlineStr"><is><t>when</t></is></c></row>'
        '<row r="2"><c r="A2" s="1"><v>0.5</v></c><c r="B2" s="2"><v>0.75</v></c><c r="C2" s="3"><v>1.5</v></c></row>'
    )
    document = load(xlsx_with(tmp_path / "times.xlsx", rows, styles))
    assert "12:00 | 18:00:00 | 36:00" in document.sections[0].text
    assert "1899" not in document.sections[0].text


def test_entity_bombs_in_utf16_and_a_docx_are_refused_and_a_bomb_of_many_parts_too(tmp_path):
    bomb = (
        '<?xml version="1.0" encoding="UTF-16"?>'
        '<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;">]><x>&b;</x>'
    )
    for encoding in ("utf-16", "utf-16-be"):
        path = broken_zip_part(
            formats.odt(tmp_path / f"{encoding}.odt", "T", [("p", "x")]), "content.xml", bomb.encode(encoding)
        )
        with pytest.raises(Exception) as caught:
            load(path)
        assert caught.value.status == "damaged" and "entities" in str(caught.value)
    word = tmp_path / "bomb.docx"
    with zipfile.ZipFile(word, "w") as archive:
        archive.writestr("word/document.xml", bomb.encode("utf-16"))
    with pytest.raises(Exception) as docx:
        load(word)
    assert docx.value.status == "damaged" and "entities" in str(docx.value)
    many = tmp_path / "many.pptx"
    with zipfile.ZipFile(many, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("ppt/presentation.xml", "<p/>")
        for n in range(1, 5):  # each part under the limit, together over it
            archive.writestr(f"ppt/slides/slide{n}.xml", b"<a>" + b" " * (4 * 2**20) + b"</a>")
    with pytest.raises(Exception) as big:
        load(many, max_bytes=10 * 2**20)
    assert big.value.status == "too large"


def test_odt_with_odd_space_counts_and_deep_nesting_reads(tmp_path):
    deep = "<text:span>" * 5000 + "buried" + "</text:span>" * 5000
    blocks = [("h", "Odd"), ("p", 'one<text:s text:c="²"/>two'), ("p", f"top {deep}")]
    document = load(formats.odt(tmp_path / "odd.odt", "T", blocks))
    text = "\n".join(s.text for s in document.sections)
    assert "one two" in text and "top" in text


def test_a_bad_attachment_leaves_the_rest_of_the_mailbox_indexed(tmp_path, monkeypatch):
    from engine.rag import loaders

    def crash(*args, **kwargs):  # any parser bug, not a DocumentError
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(loaders, "load_odt", crash)
    first = formats.message(
        "Minutes", "the minutes are attached", [("minutes.odt", b"PK whatever", "application/octet-stream")]
    )
    second = formats.message("Lunch", "the canteen serves lentil soup on Fridays")
    document = load(formats.mbox(tmp_path / "box.mbox", [first, second]))
    text = "\n".join(s.text for s in document.sections)
    assert "lentil soup" in text and '"minutes.odt" (damaged)' in text
    assert any("minutes.odt" in why for why in document.skipped)


def test_an_attachment_is_read_by_its_full_name_and_one_without_a_name_by_its_type(tmp_path):
    long_name = "quarterly-" + "very-" * 20 + "long-report.txt"
    msg = formats.message("Files", "see attached", [(long_name, b"the harbour fees rose by a third\n", "text/plain")])
    msg.add_attachment(b"<html><body><p>the ferry leaves at noon</p></body></html>", maintype="text", subtype="html")
    document = load(formats.eml(tmp_path / "files.eml", msg))
    text = "\n".join(s.text for s in document.sections)
    assert "harbour fees" in text and "ferry leaves at noon" in text, document.skipped


def test_mail_that_is_not_mail_says_e_mail():
    from engine.rag.loaders import WrongFormat

    assert WrongFormat("x", kind="e-mail").status == "not an e-mail file"
