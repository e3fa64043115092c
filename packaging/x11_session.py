"""An X server for the package test, and ways to watch and photograph a window from outside.

Xvfb is a real X server with no screen: the app under test runs on Qt's xcb
platform exactly as on a desktop. The window is found with xdotool (mapped and
viewable, as a user would see it) and captured from the root window by a separate
Qt process, so the app itself is never asked to draw for the test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

MIN_SIZE = (500, 350)  # smaller than this is a message box, not the main window
MIN_COLOURS = 40  # a drawn window has text, icons and borders; a blank one has a handful


class Xvfb:
    """A private Xvfb on a free display number, for the length of a `with` block."""

    def __init__(self, size: str = "1280x800x24") -> None:
        self.size = size
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> str:
        read, write = os.pipe()
        self.process = subprocess.Popen(
            ["Xvfb", "-displayfd", str(write), "-screen", "0", self.size, "-nolisten", "tcp", "-noreset"],
            pass_fds=(write,),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(write)
        with os.fdopen(read) as pipe:
            number = pipe.readline().strip()  # written once the server accepts connections
        if not number:
            raise RuntimeError("Xvfb did not start")
        return f":{number}"

    def __exit__(self, *exc) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)


def visible_window(
    display: str, app: subprocess.Popen, timeout: float, name: str = "Locus", min_size: tuple[int, int] = MIN_SIZE
) -> str | None:
    """Wait until a window of the app whose title has `name` is mapped, viewable and at least
    min_size (by default: the main window); its X id, or None if the app ended first."""
    env = {**os.environ, "DISPLAY": display}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if app.poll() is not None:
            return None
        search = ["xdotool", "search", "--all", "--onlyvisible", "--pid", str(app.pid), "--name", name]
        found = subprocess.run(search, env=env, capture_output=True, text=True).stdout.split()
        for window in found:
            width, height = geometry(display, window)[2:]
            if width >= min_size[0] and height >= min_size[1]:
                return window
        time.sleep(0.05)
    raise TimeoutError(f"no window titled like '{name}' became visible within {timeout:.0f} s")


def geometry(display: str, window: str) -> tuple[int, int, int, int]:
    """(x, y, width, height) of a window on the root window."""
    out = subprocess.run(
        ["xdotool", "getwindowgeometry", "--shell", window],
        env={**os.environ, "DISPLAY": display},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    values = dict(line.split("=", 1) for line in out.split())
    return int(values["X"]), int(values["Y"]), int(values["WIDTH"]), int(values["HEIGHT"])


_GRAB = """
import sys
from PySide6.QtGui import QGuiApplication
x, y, w, h, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
app = QGuiApplication([])
image = app.primaryScreen().grabWindow(0, x, y, w, h).toImage()
colours = {image.pixel(i, j) for i in range(0, image.width(), 3) for j in range(0, image.height(), 3)}
print(len(colours))
sys.exit(0 if image.save(out, "PNG") else 1)
"""


def grab_window(display: str, window: str, out: Path) -> None:
    """Capture the window's area of the screen into a PNG; fail if it is blank."""
    x, y, width, height = geometry(display, window)
    out.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb"}
    result = subprocess.run(
        [sys.executable, "-c", _GRAB, str(x), str(y), str(width), str(height), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0:
        raise RuntimeError(f"could not capture the screen:\n{result.stderr[-2000:]}")
    colours = int(result.stdout.split()[-1])
    if colours < MIN_COLOURS:
        raise RuntimeError(f"the window looks blank ({colours} colours in {width}x{height}); see {out}")


def app_processes(executable: str) -> list[psutil.Process]:
    """Running processes of this executable (the app and its workers)."""
    found = []
    for process in psutil.process_iter(["exe"]):
        if process.info["exe"] == executable:
            found.append(process)
    return found
