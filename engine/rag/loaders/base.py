"""What every loader produces (sections with provenance) and the errors it raises."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from engine.errors import EngineError

MAX_FILE_BYTES = 200 * 2**20
SECTION_CHARS = 4000  # a heading's body longer than this is split at paragraph boundaries


@dataclass(frozen=True)
class Section:
    """A run of a document's text and where it sits: page, line range, nearest heading."""

    text: str
    page: int | None = None  # 1-based page (PDF)
    line_start: int | None = None  # 1-based first line in the file (text, Markdown, RST, code)
    line_end: int | None = None  # 1-based last line, inclusive
    heading: str | None = None  # nearest heading above; for code the enclosing definition
    # Where the section sits when that is not a page or lines (see ``describe_location``): a kind of place,
    # its name, and the containers around it. The numbers stay in page/line_start/line_end.
    place: str | None = None  # "slide", "rows", "chapter", "section", "message"; None: page or lines
    label: str | None = None  # the place's name: slide title, sheet name, chapter title, e-mail subject
    within: str | None = None  # the containers, for an attachment: 'message 3 "Budget", attachment "plan.pdf"'


PLACES = ("slide", "rows", "chapter", "section", "message")
LABEL_CHARS = 80


def short_label(text: str | None) -> str | None:
    """A name from a document made fit for a location: one line without control or bidi-override characters
    (a terminal or a label must not obey them), at most LABEL_CHARS, None if blank."""
    shown = "".join(" " if unicodedata.category(ch) in ("Cc", "Cf") else ch for ch in (text or "")[: LABEL_CHARS * 4])
    label = " ".join(shown.split())
    if not label:
        return None
    return label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1].rstrip() + "…"


def describe_location(
    place: str | None,
    label: str | None,
    within: str | None,
    page: int | None,
    line_start: int | None,
    line_end: int | None,
) -> str:
    """Words for where a passage is: 'page 3', 'lines 10–24', 'slide 4 "Results"', 'sheet "Budget", rows 2–9',
    'chapter 2 "The Storm"', 'section "Install"', 'message 3 "Lunch"', 'attachment "a.pdf", page 2', or ''."""
    named = f' "{label}"' if label else ""
    if place == "slide":
        inner = f"slide {page}{named}" if page is not None else f"slide{named}"
    elif place == "rows":
        rows = _range("row", line_start, line_end)
        inner = ", ".join(x for x in (f'sheet "{label}"' if label else "", rows) if x)
    elif place in ("chapter", "message"):
        inner = f"{place} {page}{named}" if page is not None else (f"{place}{named}" if named else "")
    elif place == "section":
        inner = f"section{named}" if named else ""
    elif page is not None:
        inner = f"page {page}"
    else:
        inner = _range("line", line_start, line_end)
    return ", ".join(x for x in (within, inner) if x)


def _range(unit: str, start: int | None, end: int | None) -> str:
    if start is None:
        return ""
    return f"{unit} {start}" if end in (None, start) else f"{unit}s {start}–{end}"


@dataclass(frozen=True)
class LoadedDocument:
    """One file's text as sections, with its kind and a title to show."""

    path: str
    kind: str  # pdf, text, markdown, rst, html, docx, code, epub, odt, pptx, xlsx, csv, email, mbox
    title: str
    sections: tuple[Section, ...]
    language: str | None = None  # for code: "python", "javascript", …
    pages: int | None = None  # for PDFs
    skipped: tuple[str, ...] = ()  # parts left out and why, e.g. an e-mail's attachment Locus cannot read
    ocr_pages: int = 0  # pages (or images) whose text came from OCR
    ocr_left_out: int = 0  # pages without a text layer past the OCR page limit, not read


class DocumentError(EngineError):
    """A file that could not be indexed; ``status`` is the short reason shown beside it."""

    code = "document_error"
    status = "failed"


class PasswordProtected(DocumentError):
    """An encrypted file that does not open without its password."""

    status = "password protected"


class EmptyDocument(DocumentError):
    """A file with no extractable text (empty, blank, or scanned pages without a text layer)."""

    status = "empty"


class WrongFormat(DocumentError):
    """A file whose content is not what its extension says; status names the kind, e.g. 'not a pdf file'."""

    status = "wrong format"

    def __init__(self, message: str, *, kind: str | None = None, hint: str | None = None, detail: str | None = None):
        super().__init__(message, hint=hint, detail=detail)
        if kind:  # an instance attribute, so it survives pickling across the worker boundary
            self.status = f"not {'an' if kind[:1] in 'aeiou' else 'a'} {kind} file"


class CorruptDocument(DocumentError):
    """A malformed file its parser gave up on; ``detail`` keeps the parser's reason."""

    status = "damaged"


class UnsupportedFile(DocumentError):
    """A kind of file Locus does not read (binary, images, archives, …)."""

    status = "unsupported"


class UnreadableFile(DocumentError):
    """A file that is missing or that the operating system would not let us open."""

    status = "unreadable"


class TooLarge(DocumentError):
    """A file over the per-file size limit."""

    status = "too large"


class ParseTimeout(DocumentError):
    """Parsing took longer than the per-file time limit (reported by the parse pool)."""

    status = "timed out"


class ParserCrashed(DocumentError):
    """The parser process died on this file (reported by the parse pool)."""

    status = "parser crashed"


class TooMuchMemory(DocumentError):
    """Reading the file needed more memory than a parser may use (reported by the parse pool)."""

    status = "needs too much memory"


def split_long(text: str) -> list[str]:
    """Text cut at paragraph breaks into parts of about SECTION_CHARS."""
    parts, current = [], ""
    for paragraph in text.split("\n\n"):
        if current and len(current) + len(paragraph) > SECTION_CHARS:
            parts.append(current)
            current = paragraph
        else:
            current = f"{current}\n\n{paragraph}" if current else paragraph
    return parts + ([current] if current else [])
