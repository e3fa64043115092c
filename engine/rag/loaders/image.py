"""Images (PNG, JPEG, TIFF): their text by OCR (engine/rag/ocr.py), a multi-page TIFF page by page."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from engine.rag.loaders.base import CorruptDocument, EmptyDocument, LoadedDocument, Section, TooLarge, WrongFormat

FORMATS = ("PNG", "JPEG", "TIFF")


def load_image(path: Path, data: bytes, *, ocr: bool | None = None) -> LoadedDocument:
    """An image's text by OCR; without OCR (``ocr`` not True) it fails as OcrOff, since only OCR reads it."""
    from engine.rag import ocr as ocr_mod

    name = path.name
    if not ocr:
        raise ocr_mod.ocr_off(name, image=True)
    from PIL import Image, ImageOps, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = ocr_mod.MAX_IMAGE_PIXELS
    texts: list[tuple[int, str]] = []
    allowed = ocr_mod.pages_left()  # an image attached to a mail shares the mail's OCR pages
    if not allowed:
        raise ocr_mod.OcrLimit(
            f"'{name}' was not read: OCR had already read {ocr_mod.MAX_OCR_PAGES} pages of this file, "
            "the most it reads from one file."
        )
    try:
        with warnings.catch_warnings():
            # Over MAX_IMAGE_PIXELS Pillow only warns (it raises at twice that): refuse it, undecoded.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=FORMATS)
            frames = max(1, int(getattr(image, "n_frames", 1) or 1))
            for index in range(min(frames, allowed)):
                image.seek(index)
                if image.format == "JPEG":
                    image.draft("RGB", (ocr_mod.MAX_SIDE, ocr_mod.MAX_SIDE))  # decode at a reduced size
                frame = ImageOps.exif_transpose(image)  # a phone photo taken sideways reads upright
                frame.load()
                text = ocr_mod.read_image(frame)
                ocr_mod.page_done()
                if text.strip():
                    texts.append((index + 1, text))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise TooLarge(
            f"'{name}' is an image of too many pixels to read (over {ocr_mod.MAX_IMAGE_PIXELS // 10**6} million).",
            hint="Scale it down, or save it at a lower resolution.",
            detail=str(exc)[:300],
        ) from exc
    except UnidentifiedImageError as exc:
        raise WrongFormat(
            f"'{name}' is not a PNG, JPEG or TIFF image, whatever its name says.", kind="PNG, JPEG or TIFF"
        ) from exc
    except MemoryError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, IndexError) as exc:  # truncated or garbled pixel data
        raise CorruptDocument(
            f"'{name}' is a damaged image that could not be read.", detail=f"{type(exc).__name__}: {exc}"[:300]
        ) from exc
    if not texts:
        raise EmptyDocument(f"No text could be found in the image '{name}'.")
    paged = frames > 1
    sections = tuple(Section(text, page=number if paged else None) for number, text in texts)
    left_out = max(0, frames - allowed)  # a TIFF's frames past the OCR page limit, named in its message
    return LoadedDocument(str(path), "image", name, sections, pages=frames, ocr_pages=len(texts), ocr_left_out=left_out)
