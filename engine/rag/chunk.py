"""Chunking: split a loaded document into overlapping, token-sized passages.

Chunks are counted in the embedding model's own tokens, never cross a section
(a page, a heading's body, a code definition), break at paragraph boundaries
where they can, then at sentences, then at tokens, and carry their provenance:
page, line range, heading and, for other kinds of place (a slide, a chapter, rows
of a sheet, an e-mail), that place. A section of table rows (place "rows": its
first line the header, each further line one row) is cut between rows only and
every chunk of it starts with the header, so that a chunk of rows reads on its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from engine.rag.loaders import LoadedDocument, Section

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n+")
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+")
_LINE_BREAK = re.compile(r"\n")


@dataclass(frozen=True)
class Chunk:
    index: int  # position within its document
    text: str
    n_tokens: int
    page: int | None
    line_start: int | None
    line_end: int | None
    heading: str | None
    place: str | None = None  # see Section: "slide", "rows", "chapter", "section", "message"
    label: str | None = None
    within: str | None = None


class Chunker:
    """Token-aware chunking with a fast (Rust) tokenizer loaded from a tokenizer.json."""

    def __init__(self, tokenizer_file: str | Path, max_tokens: int = 200, overlap_tokens: int = 32):
        if not 0 <= overlap_tokens < max_tokens // 2:
            raise ValueError("overlap must be smaller than half a chunk")
        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.max_tokens = max_tokens
        self.overlap_tokens = overlap_tokens

    def count(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def chunk(self, document: LoadedDocument) -> list[Chunk]:
        chunks: list[Chunk] = []
        for section in document.sections:
            if section.place == "rows":
                pieces = self._row_pieces(section)
            else:
                pieces = [
                    (section.text[start:end], _line_at(section, start), _line_at(section, end - 1))
                    for start, end in self._spans(section.text)
                ]
            for text, line_start, line_end in pieces:
                chunks.append(
                    Chunk(
                        index=len(chunks),
                        text=text,
                        n_tokens=self.count(text),
                        page=section.page,
                        line_start=line_start,
                        line_end=line_end,
                        heading=section.heading,
                        place=section.place,
                        label=section.label,
                        within=section.within,
                    )
                )
        return chunks

    def _row_pieces(self, section: Section) -> list[tuple[str, int | None, int | None]]:
        """Chunks of a section of rows: cut between rows, no overlap, each headed by the header line
        (cut to a third of a chunk when longer); line numbers are row numbers, counted from line_start
        for the first row after the header."""
        header, _, body = section.text.partition("\n")
        if not body.strip():  # a sheet that is only its header row
            return [(header, section.line_start, section.line_end)] if header.strip() else []
        offsets = self.tokenizer.encode(header, add_special_tokens=False).offsets
        if len(offsets) > self.max_tokens // 3:
            header = header[: offsets[self.max_tokens // 3 - 1][1]] + " …"
        budget = max(self.max_tokens // 2, self.max_tokens - self.count(header) - 1)
        first = section.line_start
        pieces = []
        for start, end in self._spans(body, _LINE_BREAK, budget, 0):
            rows = (
                (first + body.count("\n", 0, start), first + body.count("\n", 0, end - 1))
                if first is not None
                else (None, None)
            )
            pieces.append((f"{header}\n{body[start:end]}" if header.strip() else body[start:end], *rows))
        return pieces

    # Spans -------------------------------------------------------------------------

    def _spans(
        self,
        text: str,
        units_at: re.Pattern = _PARAGRAPH_BREAK,
        max_tokens: int | None = None,
        overlap_tokens: int | None = None,
    ) -> list[tuple[int, int]]:
        """[start, end) character spans of the chunks of one section, cut at ``units_at`` where they can."""
        max_tokens = self.max_tokens if max_tokens is None else max_tokens
        overlap = self.overlap_tokens if overlap_tokens is None else overlap_tokens
        units = _trimmed(text, _split(text, units_at))
        spans: list[tuple[int, int]] = []
        current: tuple[int, int] | None = None
        current_tokens = 0
        for unit in self._fit_units(text, units, max_tokens - overlap):
            n = self.count(text[unit[0] : unit[1]])
            if current is not None and current_tokens + n > max_tokens:
                spans.append(current)
                if not overlap:
                    current, current_tokens = unit, n
                    continue
                start = self._overlap_start(text, current, overlap)
                current, current_tokens = (start, unit[1]), self.count(text[start : unit[1]])
                if current_tokens > max_tokens:  # overlap plus a full unit: drop the overlap
                    current, current_tokens = unit, n
            elif current is None:
                current, current_tokens = unit, n
            else:
                current, current_tokens = (current[0], unit[1]), current_tokens + n
        if current is not None:
            spans.append(current)
        return spans

    def _fit_units(self, text: str, units: list[tuple[int, int]], budget: int) -> list[tuple[int, int]]:
        """Units no larger than a chunk: long paragraphs split at sentences, long sentences at tokens."""
        out: list[tuple[int, int]] = []
        for start, end in units:
            if self.count(text[start:end]) <= budget:
                out.append((start, end))
                continue
            for s_start, s_end in _trimmed(text, _split(text, _SENTENCE_END, start, end)):
                if self.count(text[s_start:s_end]) <= budget:
                    out.append((s_start, s_end))
                else:
                    out.extend(self._token_windows(text, s_start, s_end, budget))
        return out

    def _token_windows(self, text: str, start: int, end: int, size: int) -> list[tuple[int, int]]:
        offsets = self.tokenizer.encode(text[start:end], add_special_tokens=False).offsets
        windows = []
        for i in range(0, len(offsets), size):
            piece = offsets[i : i + size]
            windows.append((start + piece[0][0], start + piece[-1][1]))
        return windows

    def _overlap_start(self, text: str, span: tuple[int, int], overlap: int) -> int:
        """Where the next chunk starts so that it repeats about ``overlap`` (> 0) tokens of this one."""
        offsets = self.tokenizer.encode(text[span[0] : span[1]], add_special_tokens=False).offsets
        if len(offsets) <= overlap:
            return span[0]
        start = span[0] + offsets[-overlap][0]
        while start > span[0] and not text[start - 1].isspace():  # do not start mid-word
            start -= 1
        return start


def _split(text: str, pattern: re.Pattern, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    end = len(text) if end is None else end
    spans, position = [], start
    for match in pattern.finditer(text, start, end):
        spans.append((position, match.start()))
        position = match.end()
    spans.append((position, end))
    return spans


def _trimmed(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Spans without surrounding whitespace; empty ones dropped."""
    out = []
    for start, end in spans:
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if start < end:
            out.append((start, end))
    return out


def _line_at(section: Section, offset: int) -> int | None:
    """The file line of a character of the section (sections keep their text line for line)."""
    if section.line_start is None:
        return None
    return section.line_start + section.text.count("\n", 0, max(offset, 0))
