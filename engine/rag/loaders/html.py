"""HTML: the visible text only, with h1–h6 as section headings."""

from __future__ import annotations

import html.parser
import re
from pathlib import Path

from engine.rag.loaders.base import LoadedDocument, Section, split_long

_INVISIBLE = {"script", "style", "head", "title", "noscript", "template", "svg", "math", "iframe", "object"}
_BLOCKS = {
    "p",
    "div",
    "br",
    "li",
    "tr",
    "td",
    "th",
    "section",
    "article",
    "header",
    "footer",
    "blockquote",
    "pre",
    "table",
    "ul",
    "ol",
    "dl",
    "dd",
    "dt",
    "hr",
    "main",
    "nav",
    "aside",
    "figure",
    "figcaption",
    "form",
}
_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}


class _VisibleText(html.parser.HTMLParser):
    """Collects visible text, split into (heading, text parts) at h1–h6, and the <title>."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hidden: list[str] = []  # open invisible elements, innermost last
        self.title = ""
        self.heading: list[str] | None = None  # text of the heading being read
        self.sections: list[tuple[str | None, list[str]]] = [(None, [])]

    def handle_starttag(self, tag, attrs) -> None:
        if tag == "body":  # an unclosed <head> must not hide the whole page
            self.hidden.clear()
        if tag in _INVISIBLE:
            self.hidden.append(tag)
        elif tag in _HEADINGS and not self.hidden:
            self.heading = []
        elif tag in _BLOCKS:
            self.sections[-1][1].append("\n")

    def handle_startendtag(self, tag, attrs) -> None:
        if tag not in _INVISIBLE:  # <br/>, <hr/>: a break, never an unclosed hidden element
            self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag) -> None:
        if tag in self.hidden:
            del self.hidden[len(self.hidden) - 1 - self.hidden[::-1].index(tag) :]
        elif tag in _HEADINGS and self.heading is not None:
            text = " ".join("".join(self.heading).split())
            self.heading = None
            if text:
                self.sections.append((text, [text, "\n"]))
        elif tag in _BLOCKS:
            self.sections[-1][1].append("\n")

    def handle_data(self, data) -> None:
        if self.hidden:
            if self.hidden[-1] == "title" and "svg" not in self.hidden:
                self.title += data
        elif self.heading is not None:
            self.heading.append(data)
        else:
            self.sections[-1][1].append(data)


def load_html(path: Path, text: str) -> LoadedDocument:
    parser = _VisibleText()
    parser.feed(text)
    parser.close()
    sections: list[Section] = []
    for heading, parts in parser.sections:
        lines = [" ".join(line.split()) for line in "".join(parts).split("\n")]
        body = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
        sections.extend(Section(part, heading=heading) for part in split_long(body) if part.strip())
    first_heading = next((s.heading for s in sections if s.heading), None)
    title = " ".join(parser.title.split()) or first_heading or path.name
    return LoadedDocument(str(path), "html", title, tuple(sections))
