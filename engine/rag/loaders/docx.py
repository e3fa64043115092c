"""Word (.docx): paragraphs, headings and tables from word/document.xml, without extra libraries."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from xml.etree import ElementTree

from engine.rag.loaders.base import (
    CorruptDocument,
    LoadedDocument,
    PasswordProtected,
    Section,
    TooLarge,
    WrongFormat,
    split_long,
)

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # the container of encrypted .docx files and of old .doc


def load_docx(path: Path, data: bytes, max_bytes: int) -> LoadedDocument:
    name = path.name
    if data.startswith(_OLE_MAGIC) and "EncryptedPackage".encode("utf-16-le") in data:
        raise PasswordProtected(
            f"'{name}' is password protected; Locus cannot read it without the password.",
            hint="Save an unprotected copy and index that instead.",
        )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            if archive.getinfo("word/document.xml").file_size > max_bytes:  # a zip bomb, or absurdly large
                raise TooLarge(f"'{name}' unpacks to more than {max_bytes / 2**20:.0f} MB of text markup.")
            xml = archive.read("word/document.xml")
    except (zipfile.BadZipFile, KeyError) as exc:
        raise WrongFormat(
            f"'{name}' is not a Word (.docx) document, whatever its name says.", kind="docx", detail=str(exc)
        ) from exc
    except (zipfile.LargeZipFile, NotImplementedError, OSError, EOFError, ValueError) as exc:
        raise CorruptDocument(f"'{name}' is a damaged Word document.", detail=repr(exc)) from exc
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as exc:
        raise CorruptDocument(f"'{name}' is a damaged Word document.", detail=str(exc)) from exc
    sections: list[Section] = []
    heading: str | None = None
    paragraphs: list[str] = []
    title: str | None = None

    def flush() -> None:
        text = "\n\n".join(paragraphs)
        sections.extend(Section(part, heading=heading) for part in split_long(text) if part.strip())
        paragraphs.clear()

    body = root.find(f"{_W}body")
    for block in list(body) if body is not None else []:
        if block.tag == f"{_W}p":
            text = _docx_text(block).strip()
            style = block.find(f"{_W}pPr/{_W}pStyle")
            style_name = (style.get(f"{_W}val") or "").lower().replace(" ", "") if style is not None else ""
            if text and (style_name.startswith("heading") or style_name == "title"):
                flush()
                heading = text
                title = title or text
            if text:
                paragraphs.append(text)
        elif block.tag == f"{_W}tbl":
            for row in block.iter(f"{_W}tr"):
                cells = [
                    " ".join(_docx_text(p).strip() for p in cell.iter(f"{_W}p")).strip()
                    for cell in row.findall(f"{_W}tc")
                ]
                if any(cells):
                    paragraphs.append(" | ".join(cells))
    flush()
    return LoadedDocument(str(path), "docx", title or name, tuple(sections))


def _docx_text(paragraph) -> str:
    """A paragraph's runs as text, with tabs and line breaks kept."""
    parts = []
    for node in paragraph.iter():
        if node.tag == f"{_W}t":
            parts.append(node.text or "")
        elif node.tag == f"{_W}tab":
            parts.append("\t")
        elif node.tag in (f"{_W}br", f"{_W}cr"):
            parts.append("\n")
    return "".join(parts)
