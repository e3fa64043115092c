"""Fixtures for driving the real window: real services on a temporary LOCUS_HOME."""

from __future__ import annotations

import importlib.util
import os
import sqlite3
import sys
import threading
from pathlib import Path

import pytest

from app.paths import resolve_paths
from app.services import build_services
from ui.main_window import MainWindow
from ui.ops import wait_for_background

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def services(locus_home):
    s = build_services(resolve_paths())
    yield s
    wait_for_background()
    s.close()


@pytest.fixture()
def window(qtbot, services):
    w = MainWindow(services, "test")
    qtbot.addWidget(w)
    w.show()
    yield w
    w.stop()


@pytest.fixture()
def loaded_window(qtbot, window):
    with qtbot.waitSignal(window.bridge.modelLoaded, timeout=120_000):
        window.start()
    return window


# Packages whose code is blocking work (disk, native model, parsing): none of it may run on the GUI thread.
BLOCKING_PACKAGES = {
    "lancedb": "LanceDB",
    "llama_cpp": "llama.cpp",
    "sentence_transformers": "the embedding model",
    "transformers": "the embedding model",
    "torch": "the embedding model",
    "pypdf": "document parsing",
}
# The engine's own entry points into such work.
BLOCKING_ENGINE_PATHS = {
    "engine/rag/loaders/": "document parsing",
    "engine/rag/embed.py": "embedding",
}


def _blocking_prefixes() -> tuple[tuple[str, str], ...]:
    """(path prefix, seam) for each blocking package (found without importing it) and engine module."""
    prefixes = []
    for package, seam in BLOCKING_PACKAGES.items():
        spec = importlib.util.find_spec(package)
        for folder in (spec.submodule_search_locations or []) if spec else []:
            prefixes.append((os.path.join(folder, ""), seam))
    prefixes += [(str(REPO / path), seam) for path, seam in BLOCKING_ENGINE_PATHS.items()]
    return tuple(prefixes)


class GuiThreadGuard:
    """While armed (``with guard:``), records every entry into blocking work on the GUI thread: any call on
    an SQLite connection or cursor, and any function of LanceDB, llama.cpp, the embedding model or the
    document parsers. A profile function (``sys.setprofile``, set on the GUI thread only) sees each call
    that thread makes, C functions included; other threads are not watched. ``entered`` lists
    "seam: function (called from file:line)" once per place."""

    def __init__(self):
        self.entered: list[str] = []
        self._prefixes = _blocking_prefixes()
        self._starts = tuple(prefix for prefix, _ in self._prefixes)
        self._previous = None

    def __enter__(self):
        assert threading.current_thread() is threading.main_thread(), "Qt's GUI thread is the main thread"
        self._previous = sys.getprofile()
        sys.setprofile(self._profile)
        return self

    def __exit__(self, *exc):
        sys.setprofile(self._previous)

    def _profile(self, frame, event, arg):
        if event == "c_call":
            owner = getattr(arg, "__self__", None)
            if isinstance(owner, (sqlite3.Connection, sqlite3.Cursor)) or arg is sqlite3.connect:
                self._note("SQLite", f"sqlite3.{getattr(arg, '__qualname__', arg)}", frame)
        elif event == "call" and frame.f_code.co_filename.startswith(self._starts):
            outer = frame.f_back  # only the way in: the package's own calls below it are not listed again
            if outer is None or not outer.f_code.co_filename.startswith(self._starts):
                filename = frame.f_code.co_filename
                seam = next(seam for prefix, seam in self._prefixes if filename.startswith(prefix))
                self._note(seam, frame.f_code.co_qualname, frame.f_back)

    def _note(self, seam: str, function: str, caller) -> None:
        chain = []  # the project's frames that led there, innermost first
        while caller is not None and len(chain) < 4:
            if caller.f_code.co_filename.startswith(str(REPO)):
                chain.append(f"{os.path.relpath(caller.f_code.co_filename, REPO)}:{caller.f_lineno}")
            caller = caller.f_back
        line = f"{seam}: {function} (called from {' < '.join(chain) or '?'})"
        if line not in self.entered:
            self.entered.append(line)


@pytest.fixture()
def gui_guard():
    """A GuiThreadGuard to wrap the part of a test that drives the window."""
    guard = GuiThreadGuard()
    yield guard
    guard.__exit__(None, None, None)


class FifoTrap:
    """A named pipe with a writer waiting on it in another process: every time anything opens the pipe
    to read it, the writer wakes and notes it, so a test can prove a view never tried to read a file."""

    def __init__(self, folder):
        import os
        import subprocess

        self.path = folder / "trap.png"
        self.marker = folder / "trap-opened"
        os.mkfifo(self.path)
        # One writer after another: a reader that opens the pipe again (Qt's image fallback does) gets one
        # too, so reading code on the GUI thread ends (and the test fails) instead of hanging.
        self.writer = subprocess.Popen(
            [
                "sh",
                "-c",
                'while :; do exec 3>"$0"; echo opened >> "$1"; exec 3>&-; done',
                str(self.path),
                str(self.marker),
            ]
        )

    @property
    def opened(self) -> int:
        """How many times the pipe was opened for reading."""
        return len(self.marker.read_text().split()) if self.marker.exists() else 0

    def close(self) -> None:
        self.writer.kill()
        self.writer.wait()


@pytest.fixture()
def fifo_trap(tmp_path):
    trap = FifoTrap(tmp_path)
    yield trap
    trap.close()
