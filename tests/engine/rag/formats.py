"""Real files of the formats people keep, written by hand after the published formats (ECMA-376 for .pptx and
.xlsx, OASIS OpenDocument 1.2 for .odt, EPUB 3.2 and EPUB 2's NCX, RFC 5322 / RFC 2046 through the standard
library's email package for .eml and .mbox, RFC 4180 through the csv module)."""

from __future__ import annotations

import csv
import datetime
import mailbox
import zipfile
from email.message import EmailMessage
from pathlib import Path
from xml.sax.saxutils import escape

_CT = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_RELS_NS = "http://schemas.openxmlformats.org/package/2006/relationships"
_R_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_OFFICE_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"


def _zip(path: Path, parts: dict[str, str | bytes], *, stored_first: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        if stored_first:  # OpenDocument and EPUB: "mimetype" first and uncompressed
            archive.writestr(zipfile.ZipInfo(stored_first), parts[stored_first], zipfile.ZIP_STORED)
        for name, content in parts.items():
            if name != stored_first:
                archive.writestr(name, content)
    return path


def _rels(*relations: tuple[str, str, str]) -> str:
    body = "".join(f'<Relationship Id="{i}" Type="{_OFFICE_REL}/{t}" Target="{target}"/>' for i, t, target in relations)
    return f'{_CT}<Relationships xmlns="{_RELS_NS}">{body}</Relationships>'


# PowerPoint ----------------------------------------------------------------------------

_P_NS = (
    'xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main" '
    f'xmlns:r="{_R_NS}" xmlns:p="http://schemas.openxmlformats.org/presentationml/2006/main"'
)


def _shape(n: int, paragraphs: list[str], placeholder: str | None) -> str:
    ph = f'<p:nvPr><p:ph type="{placeholder}"/></p:nvPr>' if placeholder else "<p:nvPr/>"
    paras = "".join(f"<a:p><a:r><a:t>{escape(t)}</a:t></a:r></a:p>" for t in paragraphs)
    return (
        f'<p:sp><p:nvSpPr><p:cNvPr id="{n}" name="Shape {n}"/><p:cNvSpPr/>{ph}</p:nvSpPr><p:spPr/>'
        f"<p:txBody><a:bodyPr/>{paras}</p:txBody></p:sp>"
    )


def pptx(path: Path, slides: list[tuple[str, list[str]]], notes: dict[int, str] | None = None) -> Path:
    """A presentation of (title, body paragraphs) slides; ``notes``: slide number -> speaker notes.
    The slide files are numbered backwards so that only presentation.xml gives the right order."""
    notes = notes or {}
    count = len(slides)
    parts: dict[str, str | bytes] = {
        "[Content_Types].xml": (
            f'{_CT}<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Override PartName="/ppt/presentation.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml"/>'
            "</Types>"
        ),
        "_rels/.rels": _rels(("rId1", "officeDocument", "ppt/presentation.xml")),
        "ppt/presentation.xml": (
            f"{_CT}<p:presentation {_P_NS}><p:sldIdLst>"
            + "".join(f'<p:sldId id="{256 + i}" r:id="rId{i + 1}"/>' for i in range(count))
            + "</p:sldIdLst></p:presentation>"
        ),
        "ppt/_rels/presentation.xml.rels": _rels(
            *((f"rId{i + 1}", "slide", f"slides/slide{count - i}.xml") for i in range(count))
        ),
    }
    for i, (title, body) in enumerate(slides):
        file_number = count - i
        tree = _shape(2, [title], "title") + _shape(3, body, "body")
        parts[f"ppt/slides/slide{file_number}.xml"] = (
            f'{_CT}<p:sld {_P_NS}><p:cSld><p:spTree><p:nvGrpSpPr><p:cNvPr id="1" name=""/><p:cNvGrpSpPr/>'
            f"<p:nvPr/></p:nvGrpSpPr><p:grpSpPr/>{tree}</p:spTree></p:cSld></p:sld>"
        )
        if i + 1 in notes:
            parts[f"ppt/slides/_rels/slide{file_number}.xml.rels"] = _rels(
                ("rId1", "notesSlide", f"../notesSlides/notesSlide{file_number}.xml")
            )
            parts[f"ppt/notesSlides/notesSlide{file_number}.xml"] = (
                f"{_CT}<p:notes {_P_NS}><p:cSld><p:spTree>{_shape(2, [notes[i + 1]], 'body')}</p:spTree></p:cSld>"
                "</p:notes>"
            )
    return _zip(path, parts)


# Excel ----------------------------------------------------------------------------------

_S_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"


def _column(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def xlsx(path: Path, sheets: dict[str, dict[int, list[object]]]) -> Path:
    """A workbook of sheets: name -> {row number: cell values}; strings go to the shared-strings table,
    numbers stay numbers, dates are day numbers styled as a built-in date format (style 1) and datetimes
    styled by a custom "dd.mm.yyyy hh:mm" format (style 2), as Excel stores them. Rows may skip numbers."""
    shared: list[str] = []
    parts: dict[str, str | bytes] = {
        "[Content_Types].xml": (
            f'{_CT}<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            "</Types>"
        ),
        "_rels/.rels": _rels(("rId1", "officeDocument", "xl/workbook.xml")),
        "xl/workbook.xml": (
            f'{_CT}<workbook xmlns="{_S_NS}" xmlns:r="{_R_NS}"><sheets>'
            + "".join(
                f'<sheet name="{escape(name)}" sheetId="{i + 1}" r:id="rId{i + 1}"/>' for i, name in enumerate(sheets)
            )
            + "</sheets></workbook>"
        ),
        "xl/_rels/workbook.xml.rels": _rels(
            *((f"rId{i + 1}", "worksheet", f"worksheets/sheet{i + 1}.xml") for i in range(len(sheets)))
        ),
    }
    for i, rows in enumerate(sheets.values()):
        xml_rows = []
        for number, values in sorted(rows.items()):
            cells = []
            for c, value in enumerate(values):
                ref = f"{_column(c)}{number}"
                if isinstance(value, datetime.datetime):
                    serial = (value - datetime.datetime(1899, 12, 30)).total_seconds() / 86400
                    cells.append(f'<c r="{ref}" s="2"><v>{serial}</v></c>')
                elif isinstance(value, datetime.date):
                    cells.append(f'<c r="{ref}" s="1"><v>{(value - datetime.date(1899, 12, 30)).days}</v></c>')
                elif isinstance(value, (int, float)):
                    cells.append(f'<c r="{ref}"><v>{value}</v></c>')
                elif value is not None:
                    shared.append(str(value))
                    cells.append(f'<c r="{ref}" t="s"><v>{len(shared) - 1}</v></c>')
            xml_rows.append(f'<row r="{number}">{"".join(cells)}</row>')
        parts[f"xl/worksheets/sheet{i + 1}.xml"] = (
            f'{_CT}<worksheet xmlns="{_S_NS}"><sheetData>{"".join(xml_rows)}</sheetData></worksheet>'
        )
    parts["xl/styles.xml"] = (
        f'{_CT}<styleSheet xmlns="{_S_NS}"><numFmts count="1">'
        '<numFmt numFmtId="164" formatCode="dd&quot;.&quot;mm&quot;.&quot;yyyy\\ hh:mm"/></numFmts>'
        '<cellXfs count="3"><xf numFmtId="0"/><xf numFmtId="14"/><xf numFmtId="164"/></cellXfs></styleSheet>'
    )
    parts["xl/sharedStrings.xml"] = (
        f'{_CT}<sst xmlns="{_S_NS}" count="{len(shared)}" uniqueCount="{len(shared)}">'
        + "".join(f"<si><t>{escape(s)}</t></si>" for s in shared)
        + "</sst>"
    )
    return _zip(path, parts)


def csv_file(path: Path, rows: list[list[str]], delimiter: str = ",") -> Path:
    with open(path, "w", newline="", encoding="utf-8") as out:
        csv.writer(out, delimiter=delimiter).writerows(rows)
    return path


# OpenDocument text -------------------------------------------------------------------------

_ODF_NS = (
    'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
    'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
    'xmlns:dc="http://purl.org/dc/elements/1.1/" office:version="1.2"'
)


def odt(path: Path, title: str, blocks: list[tuple[str, str]]) -> Path:
    """An .odt of ("h", heading) and ("p", paragraph) blocks; "p" text may hold <text:s/> and the like."""
    body = "".join(
        f'<text:h text:outline-level="1">{escape(t)}</text:h>' if kind == "h" else f"<text:p>{t}</text:p>"
        for kind, t in blocks
    )
    return _zip(
        path,
        {
            "mimetype": "application/vnd.oasis.opendocument.text",
            "META-INF/manifest.xml": (
                f'{_CT}<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" '
                'manifest:version="1.2"><manifest:file-entry manifest:full-path="/" '
                'manifest:media-type="application/vnd.oasis.opendocument.text"/>'
                '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>'
                "</manifest:manifest>"
            ),
            "content.xml": (
                f"{_CT}<office:document-content {_ODF_NS}><office:body><office:text>{body}"
                "</office:text></office:body></office:document-content>"
            ),
            "meta.xml": (
                f"{_CT}<office:document-meta {_ODF_NS}><office:meta><dc:title>{escape(title)}</dc:title>"
                "</office:meta></office:document-meta>"
            ),
        },
        stored_first="mimetype",
    )


# EPUB -----------------------------------------------------------------------------------------


def epub(path: Path, title: str, chapters: list[tuple[str, list[str]]], *, epub2_toc: bool = False) -> Path:
    """A book of (chapter title, paragraphs), with a cover page first (no text) that readers do not count;
    its table of contents is an EPUB 3 nav document, or an EPUB 2 NCX with ``epub2_toc``."""
    manifest = ['<item id="cover" href="text/cover.xhtml" media-type="application/xhtml+xml"/>']
    spine = ['<itemref idref="cover"/>']
    parts: dict[str, str | bytes] = {
        "mimetype": "application/epub+zip",
        "META-INF/container.xml": (
            f'{_CT}<container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">'
            '<rootfiles><rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>'
            "</rootfiles></container>"
        ),
        "OEBPS/text/cover.xhtml": _xhtml("Cover", '<img src="cover.png" alt=""/>'),
    }
    toc_links, nav_points = [], []
    for i, (chapter, paragraphs) in enumerate(chapters, start=1):
        href = f"text/ch{i}.xhtml"
        manifest.append(f'<item id="ch{i}" href="{href}" media-type="application/xhtml+xml"/>')
        spine.append(f'<itemref idref="ch{i}"/>')
        body = "".join(f"<p>{escape(p)}</p>" for p in paragraphs)
        # The chapter's heading says only its number; the table of contents gives its name.
        parts[f"OEBPS/{href}"] = _xhtml(f"Chapter {i}", f"<h1>{i}</h1>{body}")
        toc_links.append(f'<li><a href="{href}">{escape(chapter)}</a></li>')
        nav_points.append(
            f'<navPoint id="n{i}" playOrder="{i}"><navLabel><text>{escape(chapter)}</text></navLabel>'
            f'<content src="{href}"/></navPoint>'
        )
    if epub2_toc:
        manifest.append('<item id="ncx" href="toc.ncx" media-type="application/x-dtbncx+xml"/>')
        parts["OEBPS/toc.ncx"] = (
            f'{_CT}<!DOCTYPE ncx PUBLIC "-//NISO//DTD ncx 2005-1//EN" "http://www.daisy.org/z3986/2005/ncx-2005-1.dtd">'
            f'<ncx xmlns="http://www.daisy.org/z3986/2005/ncx/" version="2005-1"><navMap>{"".join(nav_points)}'
            "</navMap></ncx>"
        )
        spine_open = '<spine toc="ncx">'
    else:
        manifest.append('<item id="nav" href="nav.xhtml" media-type="application/xhtml+xml" properties="nav"/>')
        parts["OEBPS/nav.xhtml"] = _xhtml("Contents", f'<nav epub:type="toc"><ol>{"".join(toc_links)}</ol></nav>')
        spine_open = "<spine>"
    parts["OEBPS/content.opf"] = (
        f'{_CT}<package xmlns="http://www.idpf.org/2007/opf" version="3.0" unique-identifier="id">'
        f'<metadata xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:identifier id="id">urn:x</dc:identifier>'
        f"<dc:title>{escape(title)}</dc:title><dc:language>en</dc:language></metadata>"
        f"<manifest>{''.join(manifest)}</manifest>{spine_open}{''.join(spine)}</spine></package>"
    )
    return _zip(path, parts, stored_first="mimetype")


def _xhtml(title: str, body: str) -> str:
    return (
        f'{_CT}<!DOCTYPE html><html xmlns="http://www.w3.org/1999/xhtml" xmlns:epub="http://www.idpf.org/2007/ops">'
        f"<head><title>{escape(title)}</title></head><body>{body}&#160;</body></html>"
    )


# E-mail ---------------------------------------------------------------------------------------


def message(subject: str, body: str, attachments: list[tuple[str, bytes, str]] = (), **headers: str) -> EmailMessage:
    """A message with a plain-text body and (file name, bytes, MIME type) attachments."""
    msg = EmailMessage()
    msg["From"] = headers.get("sender", "Ada Lovelace <ada@example.org>")
    msg["To"] = headers.get("to", "Charles Babbage <charles@example.org>")
    msg["Date"] = headers.get("date", "Mon, 03 Mar 2025 09:30:00 +0100")
    msg["Subject"] = subject
    msg.set_content(body)
    for name, data, mime in attachments:
        maintype, subtype = mime.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg


def eml(path: Path, msg: EmailMessage) -> Path:
    path.write_bytes(bytes(msg))
    return path


def mbox(path: Path, messages: list[EmailMessage]) -> Path:
    box = mailbox.mbox(str(path))
    try:
        for msg in messages:
            box.add(msg)
        box.flush()
    finally:
        box.close()
    return path


def truncated(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path
