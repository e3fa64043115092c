"""Word (.docx): paragraphs, headings and tables from word/document.xml, without extra libraries."""

from __future__ import annotations

from pathlib import Path

from engine.rag.loaders.base import LoadedDocument, Section, split_long
from engine.rag.loaders.package import Package

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"


def load_docx(path: Path, data: bytes, max_bytes: int) -> LoadedDocument:
    name = path.name
    package = Package(name, data, max_bytes, kind="docx", label="Word (.docx) document")
    root = package.xml("word/document.xml")
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
