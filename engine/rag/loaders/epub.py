"""EPUB: the book's chapters in reading order (the spine), each numbered and titled from the table of contents."""

from __future__ import annotations

import posixpath
from dataclasses import replace
from pathlib import Path
from urllib.parse import unquote

from engine.rag.loaders.base import DocumentError, LoadedDocument, PasswordProtected, Section, short_label
from engine.rag.loaders.html import load_html
from engine.rag.loaders.package import Package, local

_XHTML_TYPES = ("application/xhtml+xml", "text/html", "application/x-dtbook+xml")


def load_epub(path: Path, data: bytes, max_bytes: int) -> LoadedDocument:
    name = path.name
    package = Package(name, data, max_bytes, kind="epub", label="EPUB book")
    opf_path = _rootfile(package)
    opf = package.xml(opf_path)
    folder = posixpath.dirname(opf_path)
    items: dict[str, tuple[str, str, str]] = {}  # id -> (part, media type, properties)
    for item in opf.iter():
        if local(item.tag) == "item" and item.get("id") and item.get("href"):
            part = posixpath.normpath(posixpath.join(folder, unquote(item.get("href") or "").split("#")[0]))
            items[item.get("id") or ""] = (part, item.get("media-type") or "", item.get("properties") or "")
    spine = [i.get("idref") or "" for i in opf.iter() if local(i.tag) == "itemref" and i.get("linear") != "no"]
    chapters = [items[i][0] for i in spine if i in items and items[i][1] in _XHTML_TYPES and package.has(items[i][0])]
    if not chapters:
        raise package.damaged("its reading order lists no chapters it contains")
    _refuse_drm(package, set(chapters))
    try:
        titles = _toc_titles(package, items)
    except DocumentError:  # a broken table of contents costs the titles, not the book
        titles = {}
    sections: list[Section] = []
    number = 0
    for part in chapters:
        chapter = load_html(Path(part), _decode(package.read(part)))
        if not any(s.text.strip() for s in chapter.sections):
            continue  # a cover image or a blank page: not a chapter a reader would count
        number += 1
        first_heading = next((s.heading for s in chapter.sections if s.heading), None)
        label = (
            titles.get(part)
            or short_label(first_heading)
            or short_label(chapter.title if chapter.title != posixpath.basename(part) else None)
        )
        sections.extend(
            replace(s, page=number, place="chapter", label=label, heading=s.heading or label) for s in chapter.sections
        )
    title = next((short_label(t.text) for t in opf.iter() if local(t.tag) == "title" and (t.text or "").strip()), None)
    return LoadedDocument(str(path), "epub", title or name, tuple(sections))


def _rootfile(package: Package) -> str:
    container = package.xml("META-INF/container.xml")
    for node in container.iter():
        if local(node.tag) == "rootfile" and node.get("full-path"):
            return unquote(node.get("full-path") or "")
    raise package.damaged("its container names no package document")


def _refuse_drm(package: Package, chapters: set[str]) -> None:
    """Chapters listed in META-INF/encryption.xml are locked by DRM (fonts alone may be obfuscated: fine)."""
    if not package.has("META-INF/encryption.xml"):
        return
    for node in package.xml("META-INF/encryption.xml").iter():
        if local(node.tag) == "CipherReference" and unquote(node.get("URI") or "") in chapters:
            raise PasswordProtected(
                f"'{package.name}' is locked by DRM (copy protection); Locus cannot read its text.",
                hint="Index a DRM-free copy of the book.",
            )


def _toc_titles(package: Package, items: dict[str, tuple[str, str, str]]) -> dict[str, str]:
    """Chapter part -> its first title in the table of contents (EPUB 3 nav, else EPUB 2 NCX)."""
    titles: dict[str, str] = {}
    nav = next((part for part, _, props in items.values() if "nav" in props.split()), None)
    ncx = next((part for part, media, _ in items.values() if media == "application/x-dtbncx+xml"), None)
    if nav and package.has(nav):
        import html.parser

        folder = posixpath.dirname(nav)

        class _Links(html.parser.HTMLParser):
            def __init__(self) -> None:
                super().__init__(convert_charrefs=True)
                self.href: str | None = None
                self.text: list[str] = []

            def handle_starttag(self, tag, attrs) -> None:
                if tag == "a":
                    self.href, self.text = dict(attrs).get("href"), []

            def handle_data(self, data) -> None:
                if self.href is not None:
                    self.text.append(data)

            def handle_endtag(self, tag) -> None:
                if tag == "a" and self.href:
                    part = posixpath.normpath(posixpath.join(folder, unquote(self.href.split("#")[0])))
                    label = short_label("".join(self.text))
                    if label:
                        titles.setdefault(part, label)
                    self.href = None

        links = _Links()
        links.feed(_decode(package.read(nav)))
        links.close()
    elif ncx and package.has(ncx):
        folder = posixpath.dirname(ncx)
        for point in package.xml(ncx).iter():
            if local(point.tag) != "navPoint":
                continue
            label = next((short_label(t.text) for t in point.iter() if local(t.tag) == "text"), None)
            content = next((c.get("src") for c in point.iter() if local(c.tag) == "content"), None)
            if label and content:
                titles.setdefault(posixpath.normpath(posixpath.join(folder, unquote(content.split("#")[0]))), label)
    return titles


def _decode(data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace")
    return data.decode("utf-8-sig", errors="replace")
