"""A real X desktop for tray tests: Xvfb, Debian's `trayer` as the tray host, and real input.

``XServer`` and ``Trayer`` run the processes; ``XInput`` (libX11 and libXtst through
ctypes, used inside the process under test) clicks like a mouse does and closes
a window the way a window manager's close button does, so Qt sees the same
spontaneous events a desktop gives it.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import time
from pathlib import Path

_X11_SOCKETS = Path("/tmp/.X11-unix")


def free_display(start: int = 90) -> int:
    """A display number no X server uses (nor has a lock file for)."""
    for number in range(start, start + 200):
        if not (_X11_SOCKETS / f"X{number}").exists() and not Path(f"/tmp/.X{number}-lock").exists():
            return number
    raise RuntimeError("no free X display number")


def _wait(condition, what: str, timeout: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not ready within {timeout} s")
        time.sleep(0.05)


class XServer:
    """An Xvfb on a free display for as long as the ``with`` block runs."""

    def __init__(self, width: int = 1280, height: int = 800):
        self.number = free_display()
        self.display = f":{self.number}"
        self.size = (width, height)
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> XServer:
        width, height = self.size
        self.process = subprocess.Popen(
            ["Xvfb", self.display, "-screen", "0", f"{width}x{height}x24", "-nolisten", "tcp"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait(lambda: (_X11_SOCKETS / f"X{self.number}").exists(), "Xvfb", 30, self.process)
        return self

    def env(self, **extra: str) -> dict[str, str]:
        """The environment for a Qt program on this display (xcb, not offscreen)."""
        env = dict(os.environ, DISPLAY=self.display, QT_QPA_PLATFORM="xcb", **extra)
        env.pop("WAYLAND_DISPLAY", None)
        return env

    def __exit__(self, *_exc) -> None:
        _stop(self.process)


class Trayer:
    """Debian's `trayer` (an XEmbed system tray) docked at the bottom right of the display."""

    def __init__(self, server: XServer):
        self.server = server
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Trayer:
        self.process = subprocess.Popen(
            [
                "trayer",
                "--edge",
                "bottom",
                "--align",
                "right",
                "--widthtype",
                "pixel",
                "--width",
                "120",
                "--height",
                "32",
                "--transparent",
                "false",
            ],
            env=self.server.env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # It owns the tray selection before it maps its panel: once the panel shows, the tray is there.
        _wait(self._panel_shown, "trayer", 30, self.process)
        return self

    def _panel_shown(self) -> bool:
        tree = subprocess.run(
            ["xwininfo", "-root", "-tree"], env=self.server.env(), capture_output=True, text=True
        ).stdout
        return '"panel": ("panel" "trayer")' in tree

    def __exit__(self, *_exc) -> None:
        _stop(self.process)


def _stop(process: subprocess.Popen | None) -> None:
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class _ClientMessage(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("serial", ctypes.c_ulong),
        ("send_event", ctypes.c_int),
        ("display", ctypes.c_void_p),
        ("window", ctypes.c_ulong),
        ("message_type", ctypes.c_ulong),
        ("format", ctypes.c_int),
        ("data", ctypes.c_long * 5),
    ]


class _XEvent(ctypes.Union):
    _fields_ = [("xclient", _ClientMessage), ("pad", ctypes.c_long * 24)]


_CLIENT_MESSAGE = 33


class XInput:
    """Real pointer clicks (XTest) and a window manager's close request, on the display in $DISPLAY."""

    def __init__(self, display: str | None = None):
        self.x11 = ctypes.CDLL("libX11.so.6")
        self.xtst = ctypes.CDLL("libXtst.so.6")
        self.x11.XOpenDisplay.restype = ctypes.c_void_p
        self.x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
        self.x11.XFlush.argtypes = [ctypes.c_void_p]
        self.x11.XInternAtom.restype = ctypes.c_ulong
        self.x11.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
        self.x11.XSendEvent.argtypes = [
            ctypes.c_void_p,
            ctypes.c_ulong,
            ctypes.c_int,
            ctypes.c_long,
            ctypes.POINTER(_XEvent),
        ]
        self.x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
        self.xtst.XTestFakeMotionEvent.argtypes = [
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_ulong,
        ]
        self.xtst.XTestFakeButtonEvent.argtypes = [ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_ulong]
        self.dpy = self.x11.XOpenDisplay((display or os.environ["DISPLAY"]).encode())
        if not self.dpy:
            raise RuntimeError(f"cannot open X display {display or os.environ['DISPLAY']}")

    def click(self, x: int, y: int, button: int = 1) -> None:
        """Move the pointer to (x, y) on the screen and press and release a button (1 left, 3 right)."""
        self.xtst.XTestFakeMotionEvent(self.dpy, -1, int(x), int(y), 0)
        self.xtst.XTestFakeButtonEvent(self.dpy, button, 1, 0)
        self.xtst.XTestFakeButtonEvent(self.dpy, button, 0, 0)
        self.x11.XFlush(self.dpy)

    def close_window(self, window_id: int) -> None:
        """Ask a top-level window to close, as a window manager does for its title bar's close button."""
        event = _XEvent()
        message = event.xclient
        message.type = _CLIENT_MESSAGE
        message.window = window_id
        message.message_type = self.x11.XInternAtom(self.dpy, b"WM_PROTOCOLS", 0)
        message.format = 32
        message.data[0] = self.x11.XInternAtom(self.dpy, b"WM_DELETE_WINDOW", 0)
        message.data[1] = 0  # CurrentTime
        self.x11.XSendEvent(self.dpy, window_id, 0, 0, ctypes.byref(event))
        self.x11.XFlush(self.dpy)

    def close(self) -> None:
        self.x11.XCloseDisplay(self.dpy)
