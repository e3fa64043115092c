"""PowerPoint (.pptx): each slide's text, in the presentation's order, with its number and title, and its notes."""

from __future__ import annotations

import re
from pathlib import Path

from engine.rag.loaders.base import LoadedDocument, Section, short_label, split_long
from engine.rag.loaders.package import Package, local

_P = "{http://schemas.openxmlformats.org/presentationml/2006/main}"
_A = "{http://schemas.openxmlformats.org/drawingml/2006/main}"
_R = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
_DC = "{http://purl.org/dc/elements/1.1/}"
_TITLE_TYPES = ("title", "ctrTitle")


def load_pptx(path: Path, data: bytes, max_bytes: int) -> LoadedDocument:
    name = path.name
    package = Package(name, data, max_bytes, kind="pptx", label="PowerPoint presentation")
    sections: list[Section] = []
    first_title = None
    for number, part in enumerate(_slide_parts(package), start=1):
        slide = package.xml(part)
        title, paragraphs = _slide_text(slide)
        notes = _notes(package, part)
        if notes:
            paragraphs.append("Notes: " + "\n".join(notes))
        label = short_label(title)
        first_title = first_title or label
        text = "\n".join(paragraphs)
        sections.extend(
            Section(piece, page=number, heading=label, place="slide", label=label)
            for piece in split_long(text)
            if piece.strip()
        )
    title = _core_title(package) or first_title or name
    return LoadedDocument(str(path), "pptx", title, tuple(sections))


def _slide_parts(package: Package) -> list[str]:
    """The slides in show order (presentation.xml's list); by file number when that list is missing."""
    presentation = package.xml("ppt/presentation.xml")
    relations = package.relations("ppt/presentation.xml")
    ordered = []
    for slide_id in presentation.iter(f"{_P}sldId"):
        kind, target = relations.get(slide_id.get(f"{_R}id") or "", ("", ""))
        if kind == "slide" and package.has(target):
            ordered.append(target)
    if ordered:
        return ordered
    found = [n for n in package.names if re.fullmatch(r"ppt/slides/slide\d+\.xml", n)]
    return sorted(found, key=lambda n: int(re.sub(r"\D", "", n)))


def _slide_text(slide) -> tuple[str | None, list[str]]:
    """The slide's title (its title placeholder) and its paragraphs in reading order."""
    title = None
    paragraphs: list[str] = []
    for shape in slide.iter():
        if local(shape.tag) not in ("sp", "graphicFrame"):
            continue
        placeholder = shape.find(f"{_P}nvSpPr/{_P}nvPr/{_P}ph")
        texts = [_paragraph(p) for p in shape.iter(f"{_A}p")]
        texts = [t for t in texts if t.strip()]
        if placeholder is not None and placeholder.get("type") in _TITLE_TYPES and texts and title is None:
            title = " ".join(texts)
        paragraphs.extend(texts)
    return title, paragraphs


def _paragraph(paragraph) -> str:
    parts = []
    for node in paragraph.iter():
        if node.tag == f"{_A}t":
            parts.append(node.text or "")
        elif node.tag == f"{_A}br":
            parts.append(" ")
    return "".join(parts).strip()


def _notes(package: Package, slide_part: str) -> list[str]:
    for kind, target in package.relations(slide_part).values():
        if kind == "notesSlide" and package.has(target):
            notes = package.xml(target)
            out: list[str] = []
            for shape in notes.iter(f"{_P}sp"):
                placeholder = shape.find(f"{_P}nvSpPr/{_P}nvPr/{_P}ph")
                if placeholder is not None and placeholder.get("type") == "body":
                    out.extend(t for t in (_paragraph(p) for p in shape.iter(f"{_A}p")) if t)
            return out
    return []


def _core_title(package: Package) -> str | None:
    if not package.has("docProps/core.xml"):
        return None
    node = package.xml("docProps/core.xml").find(f"{_DC}title")
    return short_label(node.text if node is not None else None)
