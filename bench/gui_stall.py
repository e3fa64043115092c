"""How long the window stops responding while it works: the longest gap between the ticks of a 10 ms
timer on the GUI thread (a heartbeat), in the real window on the real services, offscreen.

Three phases, each on its own heartbeat: loading the bundled model (and opening the document index),
streaming one answer of up to ``--tokens`` tokens, and indexing documents from ../shared/corpus (the
embedding model loads on the first one). The tests prove the cause deterministically (no SQLite,
LanceDB, llama.cpp or parsing call on the GUI thread: tests/ui/conftest.py's GuiThreadGuard); this
measures what is left, which depends on the machine's load (another thread holding the GIL stalls the
GUI thread too), so it is a figure to watch, not a test.

    .venv/bin/python bench/gui_stall.py [--tokens 200] [--rounds 3] [--folder DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from PySide6.QtCore import QCoreApplication, QEventLoop, QTimer
from PySide6.QtWidgets import QApplication

from app.paths import resolve_paths
from app.services import build_services
from ui.main_window import MainWindow
from ui.ops import wait_for_background

CORPUS = REPO.parent / "shared" / "corpus"
DOCUMENTS = ["pdflatex-outline.pdf", "Seige_of_Vicksburg_Sample_OCR.pdf"]


class Heartbeat:
    """A 10 ms QTimer on the GUI thread; the longest gap between its ticks is how long the GUI stalled."""

    def __init__(self):
        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(self.tick)
        self.last, self.max_gap, self.ticks = time.perf_counter(), 0.0, 0

    def tick(self) -> None:
        now = time.perf_counter()
        self.max_gap, self.last, self.ticks = max(self.max_gap, now - self.last), now, self.ticks + 1

    def __enter__(self):
        self.last, self.max_gap, self.ticks = time.perf_counter(), 0.0, 0
        self.timer.start()
        return self

    def __exit__(self, *exc):
        self.tick()
        self.timer.stop()


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)


def one_round(tokens: int, folder: Path) -> dict[str, float]:
    """One fresh window on a fresh LOCUS_HOME: the longest stall (s) of each phase."""
    with tempfile.TemporaryDirectory() as home:
        os.environ["LOCUS_HOME"] = home
        services = build_services(resolve_paths())
        window = MainWindow(services, "bench")
        window.show()
        stalls = {}
        try:
            loaded = []
            window.bridge.modelLoaded.connect(loaded.append)
            with Heartbeat() as beat:
                window.start()
                wait_until(lambda: loaded and window.documents.library is not None, 300, "the model and the index")
            stalls["load"] = beat.max_gap

            services.update_settings(
                lambda s: s.with_value("sampling.max_tokens", tokens).with_value("sampling.temperature", 0.0)
            )
            ended = []
            window.answerFinished.connect(ended.append)
            with Heartbeat() as beat:
                window.send("Write a long story about a dragon who learns to bake bread.")
                wait_until(lambda: ended, 300, "the answer")
            stalls["answer"] = beat.max_gap

            paths = [str(folder / name) for name in DOCUMENTS if (folder / name).exists()]
            with Heartbeat() as beat:
                window.documents.add(paths)
                wait_until(
                    lambda: sum(1 for row in window.documents.panel.rows() if row[2] == "done") == len(paths),
                    600,
                    "the documents indexed",
                )
            stalls["index"] = beat.max_gap
        finally:
            window.stop()
            window.close()
            wait_for_background()
            services.close()
    return stalls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--folder", type=Path, default=CORPUS / "pdf-oddities")
    args = parser.parse_args()
    QApplication.instance() or QApplication([])
    rounds = [one_round(args.tokens, args.folder) for _ in range(args.rounds)]
    load = os.getloadavg()[0]
    print(f"longest GUI stall (10 ms heartbeat), medians of {args.rounds} rounds, load average {load:.1f}")
    print(f"{'phase':<8} {'median ms':>10} {'worst ms':>10}")
    for phase in rounds[0]:
        gaps = [r[phase] * 1000 for r in rounds]
        print(f"{phase:<8} {statistics.median(gaps):>10.0f} {max(gaps):>10.0f}")


if __name__ == "__main__":
    main()
