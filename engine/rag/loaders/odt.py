"""OpenDocument text (.odt): paragraphs, lists and tables from content.xml, in sections under their headings."""

from __future__ import annotations

from pathlib import Path

from engine.rag.loaders.base import LoadedDocument, PasswordProtected, Section, short_label, split_long
from engine.rag.loaders.package import Package

_OFFICE = "{urn:oasis:names:tc:opendocument:xmlns:office:1.0}"
_TEXT = "{urn:oasis:names:tc:opendocument:xmlns:text:1.0}"
_TABLE = "{urn:oasis:names:tc:opendocument:xmlns:table:1.0}"
_DC = "{http://purl.org/dc/elements/1.1/}"
_SKIPPED = {f"{_TEXT}note-citation", f"{_OFFICE}annotation", f"{_TEXT}tracked-changes", f"{_TEXT}sequence-decls"}
_MAX_DEPTH = 200  # nesting deeper than this is not a real document; its deeper parts are left out


def load_odt(path: Path, data: bytes, max_bytes: int) -> LoadedDocument:
    name = path.name
    package = Package(name, data, max_bytes, kind="odt", label="OpenDocument text")
    if package.has("META-INF/manifest.xml") and b"encryption-data" in package.read("META-INF/manifest.xml"):
        raise PasswordProtected(
            f"'{name}' is password protected; Locus cannot read it without the password.",
            hint="Save an unprotected copy and index that instead.",
        )
    body = package.xml("content.xml").find(f"{_OFFICE}body/{_OFFICE}text")
    if body is None:
        raise package.damaged("it has no text body (is it a spreadsheet or a drawing?)")
    reader = _Reader()
    reader.blocks(body, 0)
    reader.flush()
    title = _meta_title(package) or next((s.label for s in reader.sections if s.label), None) or name
    return LoadedDocument(str(path), "odt", title, tuple(reader.sections))


class _Reader:
    def __init__(self) -> None:
        self.sections: list[Section] = []
        self.heading: str | None = None
        self.paragraphs: list[str] = []

    def flush(self) -> None:
        text = "\n\n".join(self.paragraphs)
        self.sections.extend(
            Section(part, heading=self.heading, place="section", label=self.heading)
            for part in split_long(text)
            if part.strip()
        )
        self.paragraphs.clear()

    def blocks(self, node, depth: int) -> None:
        if depth > _MAX_DEPTH:
            return
        for child in node:
            if child.tag == f"{_TEXT}h":
                text = _inline(child).strip()
                if text:
                    self.flush()
                    self.heading = short_label(text)
                    self.paragraphs.append(text)
            elif child.tag == f"{_TEXT}p":
                text = _inline(child).strip()
                if text:
                    self.paragraphs.append(text)
            elif child.tag == f"{_TABLE}table":
                for row in child.iter(f"{_TABLE}table-row"):
                    cells = [
                        " ".join(_inline(p).strip() for p in cell.iter(f"{_TEXT}p")).strip()
                        for cell in row.findall(f"{_TABLE}table-cell")
                    ]
                    if any(cells):
                        self.paragraphs.append(" | ".join(cells))
            elif child.tag not in _SKIPPED:
                self.blocks(child, depth + 1)  # lists, list items, sections, frames


def _inline(node, depth: int = 0) -> str:
    """A paragraph's text with spaces (text:s), tabs and line breaks; note citations left out, and spans
    nested deeper than _MAX_DEPTH (no real document nests them so)."""
    parts = [node.text or ""]
    for child in node:
        if child.tag == f"{_TEXT}s":
            count = child.get(f"{_TEXT}c") or "1"
            parts.append(" " * min(int(count), 100) if count.isascii() and count.isdigit() and len(count) < 6 else " ")
        elif child.tag == f"{_TEXT}tab":
            parts.append("\t")
        elif child.tag == f"{_TEXT}line-break":
            parts.append("\n")
        elif child.tag not in _SKIPPED and depth < _MAX_DEPTH:
            parts.append(_inline(child, depth + 1))
        parts.append(child.tail or "")
    return "".join(parts)


def _meta_title(package: Package) -> str | None:
    if not package.has("meta.xml"):
        return None
    node = package.xml("meta.xml").find(f"{_OFFICE}meta/{_DC}title")
    return short_label(node.text if node is not None else None)
