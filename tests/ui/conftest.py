"""Fixtures for driving the real window: real services on a temporary LOCUS_HOME."""

from __future__ import annotations

import time

import pytest
from PySide6.QtCore import QTimer

from app.paths import resolve_paths
from app.services import build_services
from ui.main_window import MainWindow
from ui.ops import wait_for_background


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


class Heartbeat:
    """A 10 ms QTimer on the GUI thread; the longest gap between its ticks is how long the GUI stalled."""

    def __init__(self):
        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(self._tick)
        self.reset()

    def reset(self):
        self.last = time.perf_counter()
        self.max_gap = 0.0
        self.ticks = 0

    def _tick(self):
        now = time.perf_counter()
        self.max_gap = max(self.max_gap, now - self.last)
        self.last = now
        self.ticks += 1

    def start(self):
        self.reset()
        self.timer.start()

    def stop(self):
        self._tick()
        self.timer.stop()


@pytest.fixture()
def heartbeat():
    beat = Heartbeat()
    yield beat
    beat.timer.stop()


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
        self.writer = subprocess.Popen(["sh", "-c", 'while :; do exec 3>"$0"; echo opened >> "$1"; exec 3>&-; done',
                                        str(self.path), str(self.marker)])

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
