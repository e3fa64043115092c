"""The tray on a real X server (Xvfb) with a real tray host (Debian's trayer), driven by real clicks.

The app runs in its own process (tests/ui/tray_driver.py: the real services, window and tray from
app.gui.launch) on Qt's xcb platform; it reports what it saw as JSON.
Set LOCUS_SCREENSHOTS to a folder (docs/screenshots) to save the popup's screenshot there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtGui import QImage

from tests.tray_host import Trayer, XServer
from ui.tray import NO_TRAY_NOTICE

REPO = Path(__file__).resolve().parents[2]


def drive(server: XServer, mode: str, home: Path, report: Path) -> dict:
    args = [sys.executable, "-m", "tests.ui.tray_driver", mode, str(report)]
    if os.environ.get("LOCUS_SCREENSHOTS"):
        args.append(os.environ["LOCUS_SCREENSHOTS"])
    report.unlink(missing_ok=True)
    done = subprocess.run(
        args, env=server.env(LOCUS_HOME=str(home)), cwd=REPO, capture_output=True, text=True, timeout=600
    )
    if not report.exists():
        pytest.fail(f"the driver wrote no report (exit {done.returncode}):\n{done.stdout}\n{done.stderr[-4000:]}")
    seen = json.loads(report.read_text(encoding="utf-8"))
    assert "error" not in seen, f"{seen['error']} after {seen['steps']}\n{done.stderr[-4000:]}"
    assert done.returncode == 0, done.stderr[-4000:]
    return seen


def test_tray_icon_menu_quick_ask_close_to_tray_pause_and_quit(tmp_path):
    with XServer() as server, Trayer(server):
        seen = drive(server, "tray", tmp_path / "home", tmp_path / "report.json")

    assert seen["available"] and seen["icon_visible"]
    x, y, width, height = seen["icon_geometry"]
    assert width > 0 and height > 0 and x >= 1280 - 120 and y >= 800 - 32  # docked in trayer's panel
    assert seen["menu"][:3] == ["Quick ask…", "Show window", "Pause indexing"]
    assert seen["menu"][-1] == "Quit Locus"
    assert seen["model_item"] == ["Model: SmolLM2-135M-Instruct (Q4_1, bundled)", False]

    # Opened from the tray's menu by a real right click and click; the answer streamed in, then ended.
    assert "the quick ask opens from the tray menu" in seen["steps"]
    assert seen["popup_flags_frameless"] and seen["popup_flags_on_top"]
    assert seen["partial_answer"] and len(seen["answer"]) > len(seen["partial_answer"])
    assert seen["answer"].startswith(seen["partial_answer"][:5])
    assert seen["status"].startswith("Saved as a conversation")
    assert seen["conversation_saved"] == ["user", "assistant"]
    shot = QImage(seen["screenshot"])
    assert not shot.isNull() and shot.width() == 640 and shot.height() > 100

    assert "a left click on the icon hides the window" in seen["steps"]
    assert "another left click brings it back" in seen["steps"]
    assert "closing the window hides it to the tray" in seen["steps"] and seen["running_after_close"]
    assert seen["paused"] == [True, "Resume indexing"] and seen["resumed"] == [False, "Pause indexing"]

    # Quit from the menu while an answer streamed: the loop ended, no window is left, the answer was
    # stopped and kept as a partial one.
    assert seen["quit"] and seen["windows_open"] == []
    role, status, length = seen["quit_answer"]
    assert (role, status) == ("assistant", "cancelled") and length > 0


def test_without_a_tray_the_app_works_and_says_so_once(tmp_path):
    home = tmp_path / "home"
    with XServer() as server:
        first = drive(server, "notray", home, tmp_path / "first.json")
        second = drive(server, "notray", home, tmp_path / "second.json")

    assert not first["available"] and not first["icon"]
    assert first["notice_said"] and first["status_message"] == NO_TRAY_NOTICE
    assert "the quick ask opens without a tray" in first["steps"]
    assert first["quit_on_last_window"]  # closing the window quits: nothing hides in a missing tray
    assert first["quit"] and "closing the window quits Locus" in first["steps"]
    assert not second["notice_said"] and second["status_message"] != NO_TRAY_NOTICE  # said once only
    assert second["quit"] and "closing the window quits Locus" in second["steps"]
