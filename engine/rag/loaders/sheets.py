"""Spreadsheets (.xlsx, .csv, .tsv): rows under their header, with the sheet and row numbers as the place.

Each row becomes one line, its cells joined by " | "; the first non-empty row of a sheet is its header.
A section holds consecutive rows of one sheet (place "rows", line_start = the first row's number) and
starts with the header line, which the chunker repeats at the top of every chunk. Files with more than
MAX_ROWS rows are refused as too large rather than indexed in part.
"""

from __future__ import annotations

import csv
import datetime
import io
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from engine.rag.loaders.base import (
    SECTION_CHARS,
    CorruptDocument,
    EmptyDocument,
    LoadedDocument,
    Section,
    TooLarge,
    short_label,
)
from engine.rag.loaders.package import Package

MAX_ROWS = 200_000  # rows in one file
MAX_CELL_CHARS = 2000  # a longer cell is cut (a row stays one line of reasonable size)
MAX_ROW_CHARS = 8000  # a longer row's line is cut
MAX_TEXT_CHARS = 50_000_000  # text from one file; a workbook that yields more is refused as too large
_GAP = "…"  # stands for a run of empty cells in a row much wider than its cells with text
MAX_GAP = 3  # more empty rows than this between two rows start a new section
_S = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_R = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
_CELL_REF = re.compile(r"([A-Z]+)(\d+)")
_FORMAT_LITERALS = re.compile(r'"[^"]*"|\[[^\]]*\]|\\.')


def rows_sections(rows: Iterable[tuple[int, list[str]]], name: str, sheet: str | None, sheet_number: int | None):
    """Sections of (row number, cells) rows of one sheet: the header line first, then rows, each section
    consecutive rows up to about SECTION_CHARS."""
    header: str | None = None
    header_number = 0
    sections: list[Section] = []
    lines: list[str] = []
    first = last = 0
    size = 0

    def section(text: str, start: int, end: int) -> Section:
        return Section(
            text, page=sheet_number, line_start=start, line_end=end, heading=sheet, place="rows", label=sheet
        )

    def flush() -> None:
        if lines:
            sections.append(section("\n".join([header or "", *lines]), first, last))
            lines.clear()

    for number, cells in rows:
        line = _line(cells)
        if not line:
            continue
        if header is None:
            header, header_number = line, number
            continue
        if lines and (number - last > MAX_GAP + 1 or size + len(line) > SECTION_CHARS):
            flush()
        if not lines:
            first, size = number, 0
        lines.extend([""] * (number - last - 1) if lines else [])  # a few empty rows keep the numbering
        lines.append(line)
        last, size = number, size + len(line) + 1
    flush()
    if header is not None and not sections:  # a sheet that is only its header row
        sections.append(section(header, header_number, header_number))
    return sections


def _line(cells: list[str]) -> str:
    """A row's line: cells joined by " | ", trailing empty cells dropped, cut to MAX_ROW_CHARS."""
    cut = [" ".join(c.split())[:MAX_CELL_CHARS] for c in cells]
    while cut and not cut[-1]:
        cut.pop()
    return " | ".join(cut)[:MAX_ROW_CHARS] if any(cut) else ""


def squeezed(cells: dict[int, str]) -> list[str]:
    """A row's cells (column -> text) as a list: empty cells between kept where they line up with the
    header, but in a row much wider than its cells with text each run of empty cells is one "…"."""
    filled = {column: text for column, text in cells.items() if text.strip()}
    if not filled:
        return []
    width = max(filled) + 1
    if width <= 2 * len(filled) + 2:
        return [filled.get(i, "") for i in range(width)]
    out: list[str] = []
    previous = -1
    for column in sorted(filled):
        if column > previous + 1:
            out.append(_GAP)
        out.append(filled[column])
        previous = column
    return out


def _counted(rows: Iterable[tuple[int, list[str]]], name: str, seen: list[int]) -> Iterator[tuple[int, list[str]]]:
    """The rows, refusing the file once it passes MAX_ROWS rows or about MAX_TEXT_CHARS of text
    (``seen``: [rows, characters] so far, shared by a workbook's sheets)."""
    for row in rows:
        seen[0] += 1
        seen[1] += min(sum(min(len(c), MAX_CELL_CHARS) + 3 for c in row[1]), MAX_ROW_CHARS)
        if seen[0] > MAX_ROWS:
            raise TooLarge(
                f"'{name}' has more than {MAX_ROWS:,} rows, more than Locus indexes from one file.",
                hint="Split it into smaller files, or index a summary of it.",
            )
        if seen[1] > MAX_TEXT_CHARS:
            raise TooLarge(
                f"'{name}' holds more than {MAX_TEXT_CHARS / 1e6:g} million characters of text, more than Locus "
                "indexes from one file.",
                hint="Split it into smaller files, or index a summary of it.",
            )
        yield row


# CSV ---------------------------------------------------------------------------------


def load_csv(path: Path, text: str) -> LoadedDocument:
    """A comma-, semicolon- or tab-separated file; rows are numbered as records (the header is row 1)."""
    name = path.name
    sample = text[:8192]  # the sniffer's regular expressions slow down badly on long samples
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel_tab if path.suffix.lower() == ".tsv" else csv.excel
    csv.field_size_limit(MAX_CELL_CHARS * 50)
    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    try:
        sections = rows_sections(_counted(enumerate(reader, start=1), name, [0, 0]), name, None, None)
    except csv.Error as exc:
        raise CorruptDocument(f"'{name}' is a damaged CSV file: {exc}.", detail=str(exc)) from exc
    return LoadedDocument(str(path), "csv", name, tuple(sections))


# XLSX --------------------------------------------------------------------------------


def load_xlsx(path: Path, data: bytes, max_bytes: int) -> LoadedDocument:
    name = path.name
    package = Package(name, data, max_bytes, kind="xlsx", label="Excel workbook")
    shared = _shared_strings(package)
    dates = _Dates(package)
    sections: list[Section] = []
    seen = [0, 0]
    for number, (sheet, part) in enumerate(_sheets(package), start=1):
        rows = _counted(_sheet_rows(package, part, shared, dates), name, seen)
        sections.extend(rows_sections(rows, name, sheet, number))
    if not sections:
        raise EmptyDocument(f"No text could be extracted from '{name}': its sheets are empty.")
    return LoadedDocument(str(path), "xlsx", name, tuple(sections))


def _sheets(package: Package) -> list[tuple[str, str]]:
    """(sheet name, part) in the workbook's order."""
    workbook = package.xml("xl/workbook.xml")
    targets = {rel_id: target for rel_id, (_, target) in package.relations("xl/workbook.xml").items()}
    out = []
    for number, sheet in enumerate(workbook.iter(f"{_S}sheet"), start=1):
        part = targets.get(sheet.get(f"{_R}id") or "") or f"xl/worksheets/sheet{number}.xml"
        if package.has(part):
            out.append((short_label(sheet.get("name")) or f"Sheet{number}", part))
    if not out:
        raise package.damaged("it lists no sheets that it contains")
    return out


def _shared_strings(package: Package) -> list[str]:
    if not package.has("xl/sharedStrings.xml"):
        return []
    return [_inline_text(si) for si in package.xml("xl/sharedStrings.xml").iter(f"{_S}si")]


def _inline_text(node) -> str:
    """The text of a string item: plain <t> or rich-text runs (phonetic hints left out)."""
    parts = []
    for child in node:
        if child.tag == f"{_S}t":
            parts.append(child.text or "")
        elif child.tag == f"{_S}r":
            run = child.find(f"{_S}t")
            parts.append((run.text or "") if run is not None else "")
    return "".join(parts)


class _Dates:
    """Which cell styles show a number as a date, a time of day or a duration (Excel keeps them as day
    counts), and the workbook's epoch."""

    def __init__(self, package: Package):
        self.styles: dict[int, str] = {}  # cell style -> "date", "time", "time_s", "minutes" or "duration"
        self.epoch = datetime.datetime(1899, 12, 30)
        workbook_pr = next((n for n in package.xml("xl/workbook.xml").iter(f"{_S}workbookPr")), None)
        if workbook_pr is not None and workbook_pr.get("date1904") in ("1", "true"):
            self.epoch = datetime.datetime(1904, 1, 1)
        if not package.has("xl/styles.xml"):
            return
        styles = package.xml("xl/styles.xml")
        custom = {
            int(f.get("numFmtId") or -1): _format_kind(f.get("formatCode") or "")
            for f in styles.iter(f"{_S}numFmt")
            if (f.get("numFmtId") or "").isdigit() and len(f.get("numFmtId") or "") < 10
        }
        cell_formats = styles.find(f"{_S}cellXfs")
        for index, xf in enumerate(cell_formats if cell_formats is not None else []):
            raw = xf.get("numFmtId") or "0"
            fmt = int(raw) if raw.isdigit() and len(raw) < 10 else 0
            kind = _BUILT_IN_KINDS.get(fmt) or custom.get(fmt)
            if kind:
                self.styles[index] = kind

    def text(self, style: str | None, raw: str) -> str | None:
        """The ISO date (and time), the time of day or the duration a styled number shows, else None."""
        if not self.styles or not (style or "").isdigit() or len(style or "") > 9:
            return None
        kind = self.styles.get(int(style or 0))
        if kind is None:
            return None
        try:
            days = float(raw)
            moment = self.epoch + datetime.timedelta(days=days)
        except (ValueError, OverflowError):
            return None
        if kind == "duration":  # [h]:mm — hours past 24 keep counting
            minutes = round(days * 1440)
            sign, minutes = ("-" if minutes < 0 else ""), abs(minutes)
            return f"{sign}{minutes // 60}:{minutes % 60:02d}"
        if kind == "time":
            return moment.strftime("%H:%M")
        if kind == "time_s":
            return moment.strftime("%H:%M:%S")
        if kind == "minutes":
            return moment.strftime("%M:%S")
        if moment.hour or moment.minute:
            return moment.strftime("%Y-%m-%d %H:%M")
        return moment.strftime("%Y-%m-%d")


# ECMA-376 built-in formats: dates (14-17, 22, and East Asian 27-36, 50-58), times of day (18-21),
# minutes and seconds (45, 47) and elapsed hours (46).
_BUILT_IN_KINDS = {
    **dict.fromkeys((*range(14, 18), 22, *range(27, 37), *range(50, 59)), "date"),
    18: "time",
    19: "time_s",
    20: "time",
    21: "time_s",
    45: "minutes",
    46: "duration",
    47: "minutes",
}


def _format_kind(code: str) -> str | None:
    """What a custom number format shows: a date, a time of day or a duration; None for a plain number."""
    lowered = code.lower()
    if re.search(r"\[h+\]", lowered):
        return "duration"
    bare = _FORMAT_LITERALS.sub("", code).lower()
    if any(ch in bare for ch in "dy"):
        return "date"
    if "h" in bare and "m" in bare:
        return "time_s" if "s" in bare else "time"
    return None


def _sheet_rows(package: Package, part: str, shared: list[str], dates: _Dates) -> Iterator[tuple[int, list[str]]]:
    sheet = package.xml(part)
    previous = 0
    for row in sheet.iter(f"{_S}row"):
        try:
            number = int(row.get("r") or previous + 1)
        except ValueError:
            number = previous + 1
        if number <= previous:  # rows out of order or repeated (hostile, or a broken writer): count on
            number = previous + 1
        previous = number
        cells: dict[int, str] = {}
        for position, cell in enumerate(row.iter(f"{_S}c")):
            match = _CELL_REF.match(cell.get("r") or "")
            column = _column(match.group(1)) if match else position
            cells[column] = _cell_value(cell, shared, dates)
        if cells and max(cells) < 16384:
            yield number, squeezed(cells)


def _column(letters: str) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + ord(ch) - 64
    return n - 1


def _cell_value(cell, shared: list[str], dates: _Dates) -> str:
    kind = cell.get("t")
    if kind == "inlineStr":
        inline = cell.find(f"{_S}is")
        return _inline_text(inline) if inline is not None else ""
    value = cell.find(f"{_S}v")
    raw = (value.text or "") if value is not None else ""
    if kind == "s":
        try:
            return shared[int(raw)]
        except (ValueError, IndexError):
            return ""
    if kind == "b":
        return "TRUE" if raw == "1" else "FALSE"
    if kind in ("str", "e"):
        return raw
    if kind in (None, "n", "d") and raw:
        if kind == "d":  # an ISO 8601 date cell (strict Open XML)
            return raw.replace("T", " ").removesuffix(" 00:00:00")
        date = dates.text(cell.get("s"), raw)
        if date is not None:
            return date
    if raw.endswith(".0"):
        raw = raw[:-2]
    return raw
