"""Markdown cut for translation: prose units for the model, everything else copied byte for byte.

``segment`` splits a text into copied pieces (code blocks, front matter, HTML blocks, the markers
of headings, lists, quotes and tables) and prose units; ``mask`` swaps the spans inside a unit that
must not change (inline code, URLs, link targets, HTML tags) for numbered placeholders like ⟦1⟧;
``checked`` refuses a translation that lost, doubled or broke one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Piece:
    """A run of the original text: ``prose`` is translated, anything else is copied as it is."""

    text: str  # the original, byte for byte
    prose: bool = False
    source: str = ""  # for prose: what the model sees (continuation lines without their prefixes)
    continuation: str = ""  # for prose: what starts each further line of the translation ("> ", indentation)
    kind: str = "paragraph"  # "paragraph", "line" (a heading: one line) or "cell" (a table cell)


_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})(.*)$")
_HR_OR_UNDERLINE = re.compile(r"^ {0,3}(?:(?:([-*_])[ \t]*(?:\1[ \t]*){2,})|=+[ \t]*|-+[ \t]*)$")
_LINK_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:[ \t]*\S")
_HTML_BLOCK = re.compile(
    r"^ {0,3}(?:<!--|<\?|<![A-Za-z]|<(?:pre|script|style|textarea)[\s>]|</?(?:address|article|aside|blockquote|"
    r"center|details|dialog|div|dl|dd|dt|fieldset|figcaption|figure|footer|form|h[1-6]|header|hr|li|main|nav|ol|p|"
    r"picture|section|summary|table|tbody|td|tfoot|th|thead|tr|ul)(?:[\s/>]|$)|</?[A-Za-z][\w-]*(?:\s[^<>]*)?/?>"
    r"[ \t]*$)",
    re.I,
)
_HTML_RAW = re.compile(r"^ {0,3}<(?:(!--)|(pre|script|style|textarea)(?=[\s>]|$))", re.I)  # may hold blank lines
_TABLE_SEP = re.compile(r"^[ \t]*\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$")
_PREFIX = re.compile(
    r"^[ \t]*(?P<quote>(?:>[ \t]?)*)[ \t]*(?:(?P<heading>#{1,6}(?:[ \t]+|$))|"
    r"(?P<item>(?:[-*+]|\d{1,9}[.)])(?:[ \t]+|$)(?:\[[ xX]\][ \t]+)?))?"
)
_CLOSING_HASHES = re.compile(r"[ \t]+#+[ \t]*$")
_INDENTED = re.compile(r"^(?: {4}|\t)")


def _eol(line: str) -> tuple[str, str]:
    body = line.rstrip("\r\n")
    return body, line[len(body) :]


def _blank(line: str) -> bool:
    return not line.strip()


def segment(text: str) -> list[Piece]:
    """The text as copied pieces and prose units; joining every piece's ``text`` gives ``text`` back."""
    lines = text.splitlines(keepends=True)
    out: list[Piece] = []
    i, in_list = 0, False
    if lines and lines[0].rstrip() == "---":  # YAML front matter
        end = next((j for j in range(1, len(lines)) if lines[j].rstrip() in ("---", "...")), None)
        if end is not None:
            out.append(Piece("".join(lines[: end + 1])))
            i = end + 1
    while i < len(lines):
        line = lines[i]
        start_of_block = i == 0 or _blank(lines[i - 1])
        close = _fence_closer(_eol(line)[0])
        if _blank(line):
            end = i + 1
        elif close:
            end = next((j + 1 for j in range(i + 1, len(lines)) if close.match(_eol(lines[j])[0])), len(lines))
        elif start_of_block and _INDENTED.match(line) and not in_list:  # indented code
            end = i + 1
            while end < len(lines) and (
                _INDENTED.match(lines[end])
                or (_blank(lines[end]) and end + 1 < len(lines) and _INDENTED.match(lines[end + 1]))
            ):
                end += 1
        elif start_of_block and _HTML_BLOCK.match(line):
            raw = _HTML_RAW.match(line)
            closing = ("-->" if raw.group(1) else f"</{raw.group(2).lower()}>") if raw else None
            end = i
            while end < len(lines) and (closing or not _blank(lines[end])):
                end += 1
                if closing and closing in lines[end - 1].lower()[(len(raw.group(0)) if raw and end - 1 == i else 0) :]:
                    break
        else:
            end = i + 1
            while end < len(lines) and not _blank(lines[end]) and not _FENCE.match(lines[end]):
                end += 1
            in_list = _block_pieces(lines[i:end], out, in_list)
            i = end
            continue
        out.append(Piece("".join(lines[i:end])))
        i = end
    return _merged(out)


def _fence_closer(line: str) -> re.Pattern | None:
    """For a line that opens a fenced code block, the pattern of the line that closes it."""
    fence = _FENCE.match(line)
    if not fence or (fence.group(1)[0] == "`" and "`" in fence.group(2)):  # ```x``` is inline code
        return None
    mark = fence.group(1)
    return re.compile(rf"^[ \t]*{re.escape(mark[0])}{{{len(mark)},}}[ \t]*$")


def _merged(pieces: list[Piece]) -> list[Piece]:
    """Adjacent copied pieces joined into one (fewer, larger pieces to stream)."""
    merged: list[Piece] = []
    for piece in pieces:
        if not piece.text:
            continue
        if merged and not piece.prose and not merged[-1].prose:
            merged[-1] = Piece(merged[-1].text + piece.text)
        else:
            merged.append(piece)
    return merged


def _block_pieces(lines: list[str], out: list[Piece], in_list: bool) -> bool:
    """Pieces of one block of non-blank lines; returns whether it holds (or continues) a list."""
    if len(lines) >= 2 and "|" in lines[0] and "|" in lines[1] and _TABLE_SEP.match(_eol(lines[1])[0]):
        for line in lines:
            _row_pieces(line, out)
        return False
    unit: list[tuple[str, str, str]] = []  # (prefix, content, line end) of the open unit's lines
    quote, has_item = "", False
    fence_close: re.Pattern | None = None  # inside a code block fenced after a quote or list marker

    def flush() -> None:
        if unit:
            _unit_pieces(unit, out)
            unit.clear()

    for line in lines:
        body, nl = _eol(line)
        m = _prefix(body)
        prefix, content = body[: m.end()], body[m.end() :]
        if fence_close is not None:
            fence_close = None if fence_close.match(content) else fence_close
            out.append(Piece(line))
            continue
        fence_close = _fence_closer(content)
        if fence_close is not None or _HR_OR_UNDERLINE.match(body) or _LINK_DEF.match(body):
            flush()
            out.append(Piece(line))
            continue
        has_item = has_item or bool(m.group("item"))
        if (
            unit
            and not (m.group("heading") or m.group("item"))
            and m.group("quote").strip() == quote
            and content.strip()
        ):
            unit.append((prefix, content, nl))
            continue
        flush()
        if not content.strip():
            out.append(Piece(line))
            continue
        if m.group("heading"):
            closing = _CLOSING_HASHES.search(content)
            cut = closing.start() if closing else len(content.rstrip())
            out += [Piece(prefix), _prose(content[:cut], "line"), Piece(content[cut:] + nl)]
            continue
        unit.append((prefix, content, nl))
        quote = m.group("quote").strip()
    flush()
    return has_item or (in_list and bool(_INDENTED.match(lines[0])))


def _prefix(line: str) -> re.Match[str]:
    """A line's Markdown prefix (quote marks, list item, heading), maybe empty."""
    m = _PREFIX.match(line)
    assert m is not None  # each part of the pattern is optional: it matches every line
    return m


def _prose(text: str, kind: str, source: str | None = None, continuation: str = "") -> Piece:
    return Piece(
        text, prose=True, source=text.strip() if source is None else source, continuation=continuation, kind=kind
    )


def _unit_pieces(unit: list[tuple[str, str, str]], out: list[Piece]) -> None:
    """A paragraph or list item over one or more lines: its first prefix and last line end are copied."""
    first_prefix = unit[0][0]
    body = "".join(c + nl + (unit[k + 1][0] if k + 1 < len(unit) else "") for k, (_, c, nl) in enumerate(unit))
    body = body[: len(body) - len(unit[-1][2])]
    stripped = body.rstrip()
    if len(unit) > 1:
        continuation = unit[1][0]
    else:
        m = _prefix(first_prefix)
        continuation = first_prefix[: m.end("quote")] + " " * (len(first_prefix) - m.end("quote"))
    source = "\n".join(c.strip() for _, c, _ in unit)
    out += [
        Piece(first_prefix),
        _prose(stripped, "paragraph", source, continuation),
        Piece(body[len(stripped) :] + unit[-1][2]),
    ]


def _row_pieces(line: str, out: list[Piece]) -> None:
    """A table row: pipes and cell padding copied, each cell's text a prose unit."""
    body, nl = _eol(line)
    if _TABLE_SEP.match(body):
        out.append(Piece(line))
        return
    bounds, i, start = [], 0, 0
    while i < len(body):
        if body[i] == "\\":
            i += 2
            continue
        if body[i] == "`":
            run = len(body[i:]) - len(body[i:].lstrip("`"))
            close = _find_run(body, i + run, run)
            i = close + run if close >= 0 else i + run
            continue
        if body[i] == "|":
            bounds.append((start, i))
            start = i + 1
        i += 1
    bounds.append((start, len(body)))
    pos = 0
    for a, b in bounds:
        cell = body[a:b]
        lead = len(cell) - len(cell.lstrip())
        content = cell.strip()
        out.append(Piece(body[pos : a + lead]))
        if content:
            out.append(_prose(content, "cell"))
        pos = a + lead + len(content)
    out.append(Piece(body[pos:] + nl))


def _find_run(text: str, start: int, run: int) -> int:
    """Where a backtick run of exactly ``run`` backticks starts at or after ``start``; -1 when none."""
    for m in re.finditer(r"`+", text[start:]):
        if len(m.group()) == run:
            return start + m.start()
    return -1


# Masking --------------------------------------------------------------------------------------

PLACEHOLDER = re.compile(r"⟦\s*(\d+)\s*⟧")
_URL = re.compile(r"(?:(?:https?|ftp|file)://|www\.|mailto:)[^\s<>`\"]+", re.I)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_AUTOLINK = re.compile(r"<(?:[A-Za-z][A-Za-z0-9+.-]{1,31}:[^\s<>]*|[\w.+-]+@[\w-]+(?:\.[\w-]+)+)>")
_HTML_INLINE = re.compile(r"<!--.*?-->|</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>", re.S)
_ENTITY = re.compile(r"&(?:#\d+|#x[0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]{1,31});")


@dataclass(frozen=True)
class Masked:
    """A prose unit as the model sees it: protected spans replaced by ⟦n⟧ (``spans[n - 1]``)."""

    text: str
    spans: tuple[str, ...]
    shapes: dict[int, str] = field(default_factory=dict)  # link targets: the text around ⟦n⟧ that must stay

    def restore(self, translation: str) -> str:
        return PLACEHOLDER.sub(lambda m: self.spans[int(m.group(1)) - 1], translation)


def mask(text: str) -> Masked:
    """Replace inline code, URLs, e-mail addresses, link targets, HTML tags and entities with placeholders."""
    masker = _Masker()
    return Masked(masker.run(text), tuple(masker.spans), masker.shapes)


def _trim_url(url: str) -> str:
    while True:
        trimmed = url.rstrip(".,;:!?'*_~")
        for close, open_ in ((")", "("), ("]", "[")):
            if trimmed.endswith(close) and trimmed.count(close) > trimmed.count(open_):
                trimmed = trimmed[:-1]
        if trimmed == url:
            return url
        url = trimmed


class _Masker:
    def __init__(self) -> None:
        self.spans: list[str] = []
        self.shapes: dict[int, str] = {}

    def hold(self, span: str) -> str:
        self.spans.append(span)
        return f"⟦{len(self.spans)}⟧"

    def run(self, text: str) -> str:
        out, i, n = [], 0, len(text)
        while i < n:
            c = text[i]
            m = None
            if c == "`":
                run = len(text[i:]) - len(text[i:].lstrip("`"))
                close = _find_run(text, i + run, run)
                end = close + run if close >= 0 else i + run
                out.append(self.hold(text[i:end]) if close >= 0 else text[i:end])
                i = end
                continue
            if c == "\\" and i + 1 < n:
                out.append(text[i : i + 2])
                i += 2
                continue
            if c in "[!" and text.startswith("[", i + (c == "!")):
                link = self.link(text, i)
                if link:
                    out.append(link[0])
                    i = link[1]
                    continue
            if c == "<":
                m = _AUTOLINK.match(text, i) or _HTML_INLINE.match(text, i)
            elif c == "&":
                m = _ENTITY.match(text, i)
            elif c in "⟦⟧":  # a literal bracket would read as a broken placeholder
                out.append(self.hold(c))
                i += 1
                continue
            elif (c.isalnum() or c in "_.+-") and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] in "_.+-")):
                m = _URL.match(text, i) or _EMAIL.match(text, i)
            if m:
                span = _trim_url(m.group()) if m.re is _URL else m.group()
                out.append(self.hold(span))
                i += len(span)
                continue
            out.append(c)
            i += 1
        return "".join(out)

    def link(self, text: str, i: int) -> tuple[str, int] | None:
        """``[label](target)``, ``![alt](src)`` or ``[label][ref]``: the label is prose, the target held."""
        start = i + (2 if text[i] == "!" else 1)
        close = _matching(text, start - 1, "[", "]")
        if close < 0 or close + 1 >= len(text) or text[close + 1] not in "([":
            return None
        opener = text[close + 1]
        end = _matching(text, close + 1, opener, ")" if opener == "(" else "]")
        if end < 0:
            return None
        label = self.run(text[start:close])
        placeholder = self.hold(text[close + 2 : end])
        shape = f"]{opener}{placeholder}{text[end]}"
        self.shapes[len(self.spans)] = shape
        return text[i:start] + label + shape, end + 1


def _matching(text: str, i: int, open_: str, close: str) -> int:
    """The index of the bracket closing the one at ``i`` (escapes and code spans skipped); -1 when none."""
    depth, j = 0, i
    while j < len(text):
        c = text[j]
        if c == "\\":
            j += 2
            continue
        if c == "`" and open_ == "[":
            run = len(text[j:]) - len(text[j:].lstrip("`"))
            found = _find_run(text, j + run, run)
            j = found + run if found >= 0 else j + run
            continue
        if c == open_:
            depth += 1
        elif c == close:
            depth -= 1
            if depth == 0:
                return j
        j += 1
    return -1


def checked(translation: str, sent: str, masked: Masked) -> str | None:
    """The translation with its placeholders tidied, or None when one is lost, doubled, invented or broken."""
    text = PLACEHOLDER.sub(lambda m: f"⟦{m.group(1)}⟧", translation.strip())
    found = sorted(int(x) for x in PLACEHOLDER.findall(text))
    if not text or found != sorted(int(x) for x in PLACEHOLDER.findall(sent)):
        return None
    if "⟦" in PLACEHOLDER.sub("", text) or "⟧" in PLACEHOLDER.sub("", text):
        return None
    if any(k in masked.shapes and masked.shapes[k] not in text for k in found):
        return None
    return text
