"""Scanned inputs for the OCR tests, made on the spot: rendered text as page images, and PDFs of them."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont


def page(*lines: str, size=(1240, 1754)) -> Image.Image:
    """A scanned page: black text on white, A4 at 150 dpi, in Pillow's own scalable font."""
    image = Image.new("L", size, 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=38)
    for i, line in enumerate(lines):
        draw.text((100, 140 + i * 80), line, fill=0, font=font)
    return image


def scanned_pdf(path: Path, words: list[str]) -> Path:
    """A PDF of page images only (no text layer), one codeword per page."""
    pages = [page(f"Page {n} of the scanned report.", f"The codeword is {w}.") for n, w in enumerate(words, 1)]
    pages[0].save(path, save_all=True, append_images=pages[1:], resolution=150)
    return path
