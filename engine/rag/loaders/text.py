"""Plain text, Markdown, reStructuredText and source code: sections with exact line ranges."""

from __future__ import annotations

import re

from engine.rag.loaders.base import SECTION_CHARS, Section

_CODE_WINDOW = 60  # lines per section for code without recognisable definitions


_MD_ATX = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_MD_SETEXT = re.compile(r"^ {0,3}(=+|-+)\s*$")
_RST_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+:._])\1{2,}\s*$")


def _headings(lines: list[str], kind: str) -> dict[int, str]:
    """0-based line index -> heading text, for the lines where a section starts."""
    found: dict[int, str] = {}
    in_fence = False
    skip_to = 0
    if kind == "markdown" and lines and lines[0].strip() == "---":  # YAML front matter is not a heading
        skip_to = next((i + 1 for i in range(1, len(lines)) if lines[i].strip() in ("---", "...")), 0)
    for i in range(skip_to, len(lines)):
        line, following = lines[i], lines[i + 1] if i + 1 < len(lines) else ""
        if kind == "markdown":
            if line.lstrip().startswith(("```", "~~~")):
                in_fence = not in_fence
            if in_fence:
                continue
            match = _MD_ATX.match(line)
            if match:
                found[i] = match.group(2).strip()
            elif (
                line.strip()
                and _MD_SETEXT.match(following)
                and not _MD_SETEXT.match(line)
                and not line.lstrip().startswith(("-", "*", ">", "|"))
            ):
                found[i] = line.strip()  # a setext heading: text over === or ---
        elif (
            line.strip()
            and _RST_UNDERLINE.match(following)
            and not _RST_UNDERLINE.match(line)
            and len(following.rstrip()) >= len(line.rstrip())
        ):
            start = i - 1 if i > 0 and _RST_UNDERLINE.match(lines[i - 1]) else i  # an overlined title
            found[start] = line.strip()
    return found


def first_heading(text: str, kind: str) -> str | None:
    if kind not in ("markdown", "rst"):
        return None
    headings = _headings(text.split("\n")[:400], kind)
    return headings[min(headings)] if headings else None


def prose_sections(text: str, kind: str) -> list[Section]:
    """Sections at headings (Markdown, RST), each split at blank lines when long; exact line ranges."""
    lines = text.split("\n")
    starts = _headings(lines, kind) if kind in ("markdown", "rst") else {}
    boundaries = sorted(set(starts) | {0})
    sections = []
    for n, start in enumerate(boundaries):
        end = boundaries[n + 1] if n + 1 < len(boundaries) else len(lines)
        sections.extend(_line_block_sections(lines, start, end, starts.get(start)))
    return sections


def _line_block_sections(lines: list[str], start: int, end: int, heading: str | None) -> list[Section]:
    """Lines [start, end) as sections of about SECTION_CHARS, cut at blank lines (at any line if none come)."""
    out, block_start, size = [], start, 0
    for i in range(start, end):
        size += len(lines[i]) + 1
        if size > SECTION_CHARS and i > block_start and (not lines[i].strip() or size > 2 * SECTION_CHARS):
            out.append(_section_of(lines, block_start, i + 1, heading))
            block_start, size = i + 1, 0
    if block_start < end:
        out.append(_section_of(lines, block_start, end, heading))
    return [s for s in out if s.text.strip()]


def _section_of(lines: list[str], start: int, end: int, heading: str | None) -> Section:
    """Lines [start, end) without leading and trailing blank lines, numbered from 1."""
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return Section("\n".join(lines[start:end]), line_start=start + 1, line_end=max(start + 1, end), heading=heading)


_DEFINITION = re.compile(
    r"^(?:export\s+(?:default\s+)?)?"
    r"(?:(?:public|private|protected|static|async|pub(?:\([a-z]+\))?|abstract|final|inline|unsafe)\s+)*"
    r"(?:def|class|function|func|fn|interface|struct|enum|impl|trait|module|object|sub|proc)\b"
)
_LEAD_IN = ("@", "#", "//", "/*", " *", '"""', "///", "--")  # decorators and comments that belong to what follows


def code_sections(text: str) -> list[Section]:
    """Sections at top-level (column 0) definitions, long ones in windows of _CODE_WINDOW lines."""
    lines = text.split("\n")
    starts = []
    for s in (i for i, line in enumerate(lines) if _DEFINITION.match(line)):
        while s > 0 and lines[s - 1].startswith(_LEAD_IN) and not _DEFINITION.match(lines[s - 1]):
            s -= 1
        starts.append(s)
    boundaries = sorted({0, *starts})
    sections = []
    for n, start in enumerate(boundaries):
        end = boundaries[n + 1] if n + 1 < len(boundaries) else len(lines)
        definition = next((lines[i].strip() for i in range(start, end) if _DEFINITION.match(lines[i])), None)
        for window in range(start, end, _CODE_WINDOW):
            section = _section_of(
                lines, window, min(end, window + _CODE_WINDOW), definition[:80] if definition else None
            )
            if section.text.strip():
                sections.append(section)
    return sections
