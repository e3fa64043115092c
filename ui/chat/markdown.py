"""Split an answer into prose and fenced code blocks, and highlight code.

Prose is rendered by Qt's own Markdown support (QTextDocument.setMarkdown);
code blocks become their own widgets so each gets highlighting and a copy button.
An unterminated fence (an answer still streaming) counts as an open code block.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from functools import lru_cache

from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import TextLexer, get_lexer_by_name
from pygments.util import ClassNotFound

_FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})[ \t]*([^\s`]*)[^\n`]*$")


@dataclass(frozen=True)
class Prose:
    text: str


@dataclass(frozen=True)
class Code:
    code: str
    language: str
    closed: bool


Segment = Prose | Code


def split_segments(text: str) -> list[Segment]:
    """Prose and code blocks in order; empty prose between blocks is dropped."""
    segments: list[Segment] = []
    prose: list[str] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            prose.append(lines[i])
            i += 1
            continue
        fence, language = match.group(2), match.group(3)
        body: list[str] = []
        i += 1
        closed = False
        while i < len(lines):
            end = lines[i].strip()
            if end.startswith(fence[0] * len(fence)) and set(end) == {fence[0]}:
                closed = True
                i += 1
                break
            body.append(lines[i])
            i += 1
        if "".join(prose).strip():
            segments.append(Prose("\n".join(prose).strip("\n")))
        prose = []
        code = "\n".join(body)
        segments.append(Code(code if closed else code.rstrip("\n"), language.lower(), closed))
    if "".join(prose).strip():
        segments.append(Prose("\n".join(prose).strip("\n")))
    return segments


def bare_json(text: str, finished: bool) -> Code | None:
    """An answer that is one bare JSON document (Extract JSON's output) as a JSON code block.

    While it streams, an answer opening with '{' is shown as code; once finished it must parse.
    """
    stripped = text.strip()
    if not stripped.startswith("{" if not finished else ("{", "[")):
        return None
    if finished:
        try:
            json.loads(stripped)
        except ValueError:
            return None
    return Code(stripped, "json", finished)


@lru_cache(maxsize=64)
def _lexer(language: str):
    try:
        return get_lexer_by_name(language) if language else TextLexer()
    except ClassNotFound:
        return TextLexer()


def code_html(code: str, language: str, dark: bool) -> str:
    """Highlighted HTML (inline styles, which Qt's rich text understands) for a code block."""
    style = "monokai" if dark else "default"
    formatter = HtmlFormatter(noclasses=True, nowrap=True, style=style)
    body = highlight(code, _lexer(language), formatter) if code else html.escape(code)
    color = "#f8f8f2" if dark else "#1f2328"
    return f'<pre style="margin:0; color:{color}; font-family: monospace;">{body}</pre>'


_CITATION = re.compile(r"\[(\d+(?:\s*[,;]\s*\d+)*)\](?!\()")


def link_citations(text: str, numbers: set[int]) -> str:
    """Turn [n] markers of known sources into links ``source:n`` (Markdown), leaving others alone."""

    def replace(match: re.Match) -> str:
        parts = [int(p) for p in re.split(r"[,;]", match.group(1))]
        if not all(p in numbers for p in parts):
            return match.group(0)
        return " ".join(f"[\\[{p}\\]](source:{p})" for p in parts)

    return _CITATION.sub(replace, text)


def language_label(language: str) -> str:
    """The name to show above a block: pygments' name for the tag, or 'text'."""
    if not language:
        return "text"
    lexer = _lexer(language)
    return lexer.name if not isinstance(lexer, TextLexer) else language


def file_extension(language: str) -> str:
    """The usual file extension for a block's language tag ('.py' for python), '.txt' when unknown."""
    lexer = _lexer(language)
    for pattern in getattr(lexer, "filenames", ()):
        if pattern.startswith("*.") and not any(c in pattern[2:] for c in "*?[]"):
            return pattern[1:]
    return ".txt"
