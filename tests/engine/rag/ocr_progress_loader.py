"""A loader for the OCR time-limit test: it works slowly, page by page, as OCR does (run in ParsePool's workers)."""

from __future__ import annotations

import time
from pathlib import Path

from engine.rag import ocr as ocr_module
from engine.rag.loaders import LoadedDocument, Section

STEP_S = 0.25


def slow_pages(path: str, max_bytes: int, ocr: bool | None = None) -> LoadedDocument:
    """'pages-N.txt': N steps of STEP_S, each reported as a page read; 'silent-N.txt': the same, unreported;
    'stall-N.txt': N reported steps, then a page that never ends; 'flood-N.txt': N reports a few
    milliseconds apart, then a page that never ends."""
    name = Path(path).stem
    kind, _, count = name.partition("-")
    if kind == "flood":
        for _ in range(int(count)):
            time.sleep(0.002)
            ocr_module.page_done()
        time.sleep(3600)
    for _ in range(int(count)):
        time.sleep(STEP_S)
        if kind in ("pages", "stall"):
            ocr_module.page_done()
    if kind == "stall":
        time.sleep(3600)
    return LoadedDocument(path, "text", name, (Section(f"{count} steps"),))
