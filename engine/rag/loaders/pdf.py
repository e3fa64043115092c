"""PDF: text per page with pypdf (page numbers kept), headings from the bookmarks; pages without a
text layer (scans) read by OCR when it is on (engine/rag/ocr.py)."""

from __future__ import annotations

import io
import logging
import re
import unicodedata
import warnings
from pathlib import Path

from engine.rag.loaders.base import (
    CorruptDocument,
    DocumentError,
    LoadedDocument,
    PasswordProtected,
    Section,
    UnsupportedFile,
    WrongFormat,
)


def load_pdf(path: Path, data: bytes, *, ocr: bool | None = None) -> LoadedDocument:
    """A PDF's text per page. ``ocr``: pages with no text layer are read by OCR (at most MAX_OCR_PAGES of
    them); pages that have one never are. False (OCR off): a PDF of scanned pages alone fails as OcrOff;
    None (not asked): as EmptyDocument."""
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError

    name = path.name
    if b"%PDF-" not in data[:1024]:  # pypdf would "repair" HTML or noise into a blank document
        raise WrongFormat(f"'{name}' is not a PDF file, whatever its name says.", kind="pdf")
    logging.getLogger("pypdf").setLevel(logging.ERROR)  # malformed files log a warning per object
    protected = PasswordProtected(
        f"'{name}' is password protected; Locus cannot read it without the password.",
        hint="Save an unprotected copy and index that instead.",
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reader = PdfReader(io.BytesIO(data), strict=False)
            # Owner-password-only files (and empty user passwords) open with "": read them.
            if reader.is_encrypted and not reader.decrypt(""):
                raise protected
            count = len(reader.pages)
            headings = _outline_headings(reader, count)
            sections, failures, textless = [], 0, []
            for number, page in enumerate(reader.pages, start=1):
                try:
                    text = page.extract_text() or ""
                except FileNotDecryptedError:
                    raise
                except Exception:  # noqa: BLE001 - one bad page must not sink the document
                    failures += 1
                    continue
                # NFKC turns ligatures (ﬁ, ﬂ) and other compatibility forms into the letters people
                # type when they search; NULs from broken font maps are noise.
                text = unicodedata.normalize("NFKC", text).replace("\x00", "").strip()
                if text:
                    sections.append(Section(text, page=number, heading=headings.get(number)))
                else:
                    textless.append(number)
            title = _pdf_title(reader) or name
    except FileNotDecryptedError as exc:
        raise protected from exc
    except DependencyError as exc:  # AES without the 'cryptography' package
        raise UnsupportedFile(
            f"'{name}' uses an encryption this installation cannot read.",
            hint="Install pypdf's crypto extra (the 'cryptography' package).",
            detail=str(exc),
        ) from exc
    except (DocumentError, MemoryError):
        raise
    except Exception as exc:
        raise CorruptDocument(
            f"'{name}' is a damaged PDF that could not be read.", detail=f"{type(exc).__name__}: {exc}"[:300]
        ) from exc
    if count and failures == count:
        raise CorruptDocument(f"'{name}' is a damaged PDF: none of its {count} pages could be read.")
    ocr_pages = ocr_left_out = 0
    if textless and ocr:
        from engine.rag.ocr import pages_left, read_pdf_pages

        allowed = pages_left()
        read = read_pdf_pages(data, textless[:allowed])
        sections.extend(Section(text, page=number, heading=headings.get(number)) for number, text in read.items())
        sections.sort(key=lambda s: s.page or 0)
        ocr_pages = len(read)
        ocr_left_out = max(0, len(textless) - allowed)
    elif textless and not sections and ocr is False:
        from engine.rag.ocr import ocr_off

        raise ocr_off(name)
    return LoadedDocument(
        str(path), "pdf", title, tuple(sections), pages=count, ocr_pages=ocr_pages, ocr_left_out=ocr_left_out
    )


def _outline_headings(reader, pages: int) -> dict[int, str]:
    """1-based page -> the bookmark title in force there (first one starting on it, else the last before)."""
    starts: dict[int, str] = {}
    try:
        todo, seen = list(reader.outline), 0
        while todo and seen < 5000:  # a hostile outline can be huge or cyclic
            item, seen = todo.pop(0), seen + 1
            if isinstance(item, list):
                todo[:0] = item
                continue
            page = reader.get_destination_page_number(item)
            title = " ".join(str(item.title or "").split())[:120]
            if title and page is not None and 0 <= page < pages:
                starts.setdefault(page + 1, title)
    except Exception:  # noqa: BLE001 - bookmarks are a nicety; broken ones are common
        return {}
    headings, current = {}, None
    for number in range(1, pages + 1):
        current = starts.get(number, current)
        if current:
            headings[number] = current
    return headings


def _pdf_title(reader) -> str | None:
    try:
        title = (reader.metadata or {}).get("/Title")
    except Exception:  # noqa: BLE001 - metadata is optional
        return None
    title = re.sub(r"^Microsoft (Word|PowerPoint|Excel) - ", "", str(title).strip() if title else "")
    placeholder = title.lower() in {"untitled", "untitled document", "title", "model", "document"}
    file_name = re.search(r"\.(pdf|docx?|pptx?|xlsx?|odt|txt)$", title, re.IGNORECASE)
    if placeholder or file_name or not (2 < len(title) < 200) or not title.isprintable():
        return None
    return title
