"""A document's text as the index holds it, for the source viewer: its chunks in order, under a line for each
place (slide, sheet, chapter, message, attachment, heading), with the lines each chunk fills.

The text was extracted by the parse workers when the document was indexed, so showing it never parses the
file in the window's process. Build it off the GUI thread (it formats places with engine code).
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.rag.loaders.base import describe_location

PLACE_MARK = "──"


@dataclass(frozen=True)
class SourceText:
    text: str
    chunk_lines: dict[str, tuple[int, int]]  # chunk id -> (first, last) 1-based line of the view it fills
    # (page, place, label, within) of each place, the first row (rows) it shows and the view line where its text
    # starts (for rows: the header row, so that row N is on line start + 1 + N - first row)
    places: tuple[tuple[tuple, int, int], ...]
    # (place key, first row, view line) of each chunk of rows, the view line again being where row N would be at
    # line + 1 + N - first row: rows after a run of empty rows start a chunk of their own, so a place's first
    # row alone does not find them
    row_chunks: tuple[tuple[tuple, int, int], ...] = ()


def _key(row: dict) -> tuple:
    return (row.get("page"), row.get("place"), row.get("place_label"), row.get("place_within"))


def place_title(row: dict) -> str:
    """The words on a place's line: 'slide 2 "Results"', 'sheet "Budget"', …, or the heading for formats
    whose only places are headings (Word, HTML)."""
    where = describe_location(
        row.get("place"), row.get("place_label"), row.get("place_within"), row.get("page"), None, None
    )
    return where or (row.get("heading") or "")


def build_source_text(rows: list[dict]) -> SourceText:
    """The chunks (store rows) of one document as one text, overlaps removed; a table's header row shown once
    per sheet part."""
    lines: list[str] = []
    spans: dict[str, tuple[int, int]] = {}
    places: list[tuple[tuple, int, int]] = []
    row_chunks: list[tuple[tuple, int, int]] = []
    previous_key: tuple | None = None
    previous_heading: str | None = None
    previous_text = ""
    for row in sorted(rows, key=lambda r: r["chunk_index"]):
        key = _key(row)
        text = row["text"]
        new_place = key != previous_key or (row.get("place") is None and row.get("heading") != previous_heading)
        skip_header = 0
        if new_place:
            if lines:
                lines.append("")
            title = place_title(row)
            if title:
                lines.append(f"{PLACE_MARK} {title} {PLACE_MARK}")
            places.append((key, row.get("line_start") or 0, len(lines) + 1))  # the place's first chunk starts here
            skip_header = 1 if row.get("place") == "rows" and "\n" in text else 0
        elif row.get("place") == "rows":
            text = text.partition("\n")[2]  # the header is already shown above this sheet's rows
        else:
            text = _without_overlap(previous_text, text)
        first = len(lines) + 1
        if row.get("place") == "rows" and row.get("line_start"):
            header_line = first if (new_place and skip_header) else first - 1
            row_chunks.append((key, row["line_start"], header_line))
        lines.extend(text.split("\n"))
        spans[row["chunk_id"]] = (first + skip_header, len(lines))
        previous_key, previous_heading, previous_text = key, row.get("heading"), row["text"]
    return SourceText("\n".join(lines), spans, tuple(places), tuple(row_chunks))


def _without_overlap(left: str, right: str) -> str:
    """``right`` without the text it repeats from the end of ``left`` (chunks overlap by a few tokens)."""
    for size in range(min(len(left), len(right)), 8, -1):
        if left.endswith(right[:size]):
            return right[size:].lstrip()
    return right


def cited_lines(source: dict, built: SourceText) -> tuple[int, int] | None:
    """The view lines of the cited passage: its chunks by id, else (an index rebuilt since) its place and rows."""
    found = [built.chunk_lines[c] for c in source.get("chunk_ids") or () if c in built.chunk_lines]
    if found:
        return min(f for f, _ in found), max(last for _, last in found)
    key = (source.get("page"), source.get("place"), source.get("place_label"), source.get("place_within"))
    start = source.get("line_start")
    if source.get("place") == "rows" and start:
        before = [(first_row, line) for k, first_row, line in built.row_chunks if k == key and first_row <= start]
        if before:
            first_row, line = max(before)  # the chunk the cited rows start in
            return line + 1 + start - first_row, line + 1 + (source.get("line_end") or start) - first_row
    for place_key, _first_row, line in built.places:
        if place_key == key and key != (None, None, None, None):
            return line, line
    return None
