"""OCR: text from scanned PDF pages and images, with RapidOCR's ONNX models on the CPU.

The models (PP-OCRv4 detection and recognition, a direction classifier: about
15 MB) ship inside the ``rapidocr-onnxruntime`` wheel, so nothing is downloaded:
OCR works offline from the first run. They read Chinese and English (Latin
script: most Western European text reads well, accents can be lost). It runs
on the CPU (onnxruntime's CPU build, a few threads per worker): a GPU is not
used, since a CUDA context reserves far more address space than the parse
worker's memory ceiling allows.

OCR runs only in the parse worker processes, and only for pages without a text
layer. This module is imported by every worker but costs nothing until a page
needs reading: onnxruntime, OpenCV and the models load on the first page (and
stay loaded in that worker). Each page read calls the progress hook the worker
installs, which tells the parse pool the job is alive: a 30-page scan may take
minutes, but no single page may take longer than the per-file time limit.

Work is capped: at most ``MAX_OCR_PAGES`` pages of one file are read (an
e-mail's attachments share its file's count; ``start_file`` starts it), an
image of more than ``MAX_IMAGE_PIXELS`` pixels is refused before it is decoded
(a decompression bomb), and pages are rendered or scaled to at most
``MAX_SIDE`` pixels on their long side.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from engine.rag.loaders.base import EmptyDocument

if TYPE_CHECKING:
    from PIL.Image import Image

MAX_OCR_PAGES = 200  # pages read by OCR in one document; the rest are left out (and the status says so)
MAX_IMAGE_PIXELS = 60_000_000  # an A4 page at 600 dpi is 35 MP; anything far larger is refused undecoded
MAX_SIDE = 2200  # long side a page is read at: ~200 dpi for A4 or Letter (the models scale to 2000 anyway)
RENDER_DPI = 200
LANGUAGES = "Chinese and English (Latin script)"

_progress: Callable[[], None] | None = None
_pages_read = 0  # pages read by OCR since start_file
_engine = None
_engine_lock = threading.Lock()


class OcrOff(EmptyDocument):
    """A scanned document (or an image) not read because OCR is turned off."""

    status = "OCR is off"
    index_status = "skipped"  # recorded as skipped, not failed: turning OCR on reads it


class OcrLimit(EmptyDocument):
    """An image not read because OCR already read MAX_OCR_PAGES pages of the file it is part of."""

    status = "OCR page limit"


def ocr_off(name: str, *, image: bool = False) -> OcrOff:
    what = "an image, whose text only OCR can read" if image else "scanned pages without a text layer"
    return OcrOff(
        f"'{name}' was skipped: {what}; OCR is off.",
        hint="Turn on OCR in Settings › Documents and index it again.",
    )


def set_progress(callback: Callable[[], None] | None) -> None:
    """The worker's hook, called after each page read (it tells the parse pool the file is still moving)."""
    global _progress
    _progress = callback


def start_file() -> None:
    """A new file begins: its pages read by OCR count from zero."""
    global _pages_read
    _pages_read = 0


def pages_left() -> int:
    """Pages OCR may still read of the file begun by ``start_file`` (MAX_OCR_PAGES in all)."""
    return max(0, MAX_OCR_PAGES - _pages_read)


def page_done() -> None:
    """One page read by OCR: counted, and reported to the worker's hook."""
    global _pages_read
    _pages_read += 1
    if _progress is not None:
        _progress()


def engine():
    """The RapidOCR engine, loaded on first use (bundled models, CPU, a few threads)."""
    global _engine
    with _engine_lock:
        if _engine is None:
            from rapidocr_onnxruntime import RapidOCR

            threads = max(1, min(4, os.cpu_count() or 1))
            _engine = RapidOCR(intra_op_num_threads=threads, inter_op_num_threads=1)
        return _engine


def bounded(image: Image) -> Image:
    """The image as 8-bit RGB, no longer than MAX_SIDE on its long side: 16-bit and floating-point
    greyscale scaled to 8 bits by its own range, transparency laid on white paper."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        image = image.convert("F")  # 32-bit, lossless for 16-bit values; scaled down before it is stretched
        if max(image.size) > MAX_SIDE:
            image.thumbnail((MAX_SIDE, MAX_SIDE))
        image = _to_8_bit(image)
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        image.mode in ("P", "L", "RGB") and "transparency" in image.info
    ):
        from PIL import Image as PILImage

        rgba = image.convert("RGBA")
        paper = PILImage.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = PILImage.alpha_composite(paper, rgba)
    if image.mode != "RGB":
        image = image.convert("RGB")
    if max(image.size) > MAX_SIDE:
        image = image.copy()
        image.thumbnail((MAX_SIDE, MAX_SIDE))
    return image


def _to_8_bit(image: Image) -> Image:
    """A 16-bit or 32-bit greyscale image stretched from its darkest to its lightest value onto 0-255
    (Pillow's own conversion clips everything above 255 to white)."""
    import numpy as np
    from PIL import Image as PILImage

    values = np.asarray(image, dtype=np.float32)
    low, high = float(np.nanmin(values)), float(np.nanmax(values))
    scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    return PILImage.fromarray(np.nan_to_num(scaled).clip(0, 255).astype(np.uint8), "L")


def read_image(image: Image) -> str:
    """The text on one page image, a line per detected text line, top to bottom ("" for a blank page)."""
    import numpy as np

    image = bounded(image)
    low, high = image.convert("L").getextrema()  # one band: two ints
    if int(high) - int(low) < 16:  # type: ignore[arg-type]  # blank (or a flat colour): nothing to read, and no model time spent on it
        return ""
    pixels = np.asarray(image)[:, :, ::-1]  # RapidOCR takes OpenCV's BGR order
    result, _ = engine()(np.ascontiguousarray(pixels))
    if not result:
        return ""
    boxes = sorted(result, key=lambda r: (_top(r[0]), _left(r[0])))
    return "\n".join(_lines(boxes))


def _top(box) -> float:
    return min(point[1] for point in box)


def _left(box) -> float:
    return min(point[0] for point in box)


def _lines(boxes) -> list[str]:
    """Boxes (sorted by top) whose vertical middles overlap form one line, read left to right."""
    lines: list[list] = []
    for entry in boxes:
        box = entry[0]
        top, bottom = _top(box), max(point[1] for point in box)
        middle = (top + bottom) / 2
        if lines:
            last = lines[-1]
            last_top = min(_top(e[0]) for e in last)
            last_bottom = max(max(p[1] for p in e[0]) for e in last)
            if last_top <= middle <= last_bottom:
                last.append(entry)
                continue
        lines.append([entry])
    return [" ".join(str(e[1]) for e in sorted(line, key=lambda e: _left(e[0]))) for line in lines]


def read_pdf_pages(data: bytes, pages: list[int]) -> dict[int, str]:
    """OCR these 1-based pages of a PDF (rendered with PDFium); page -> text, pages with none left out.

    A page PDFium cannot render is left out (one bad page must not sink the rest); a PDF it cannot open
    at all gives nothing."""
    import pypdfium2 as pdfium

    texts: dict[int, str] = {}
    try:
        document = pdfium.PdfDocument(data)
    except pdfium.PdfiumError:
        return texts
    try:
        for number in pages:
            try:
                text = _read_pdf_page(document, number)
            except MemoryError:
                raise
            except Exception:  # noqa: BLE001 - a page that will not render is this page's problem only
                text = ""
            if text.strip():
                texts[number] = text
            page_done()
    finally:
        document.close()
    return texts


def _read_pdf_page(document, number: int) -> str:
    page = document[number - 1]
    try:
        width, height = page.get_size()  # points
        scale = min(RENDER_DPI / 72, MAX_SIDE / max(width, height, 1.0))
        bitmap = page.render(scale=scale)
        try:
            return read_image(bitmap.to_pil())
        finally:
            bitmap.close()
    finally:
        page.close()
