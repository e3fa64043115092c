"""Runs the real Locus desktop (services, window, tray: app.gui.launch) on an X display and drives it
with real clicks, then writes what it saw as JSON. tests/ui/test_tray.py starts it under Xvfb.

    python -m tests.ui.tray_driver tray|notray REPORT.json [SCREENSHOT_DIR]

LOCUS_HOME, DISPLAY and QT_QPA_PLATFORM=xcb come from the environment.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

from PySide6.QtCore import QEventLoop, QPoint, Qt, QTimer
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from app.gui import launch
from app.services import build_services
from engine.history.store import HistoryStore
from tests.tray_host import XInput
from ui.theme import apply_theme
from ui.tray import NO_TRAY_NOTICE

QUESTION = "In two sentences, what is a lighthouse for?"


class Driver:
    def __init__(self, mode: str, report_path: Path, shots: Path | None):
        self.mode, self.report_path, self.shots = mode, report_path, shots
        self.report: dict = {"mode": mode, "steps": []}
        self.app = QApplication.instance()
        self.services = build_services()
        apply_theme(self.app, "light")
        chat = self.services.assistant.settings
        self.services.assistant.settings = dataclasses.replace(
            chat, sampling=dataclasses.replace(chat.sampling, temperature=0.0, max_tokens=70)
        )
        self.desktop = launch(self.services, "test")
        self.window, self.tray = self.desktop.window, self.desktop.tray
        self.window.setGeometry(40, 40, 900, 600)  # no window manager: keep clear of the tray panel
        self.x = XInput()

    # Helpers ------------------------------------------------------------------------

    def wait(self, condition, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for: {what}")
            self.app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
        self.report["steps"].append(what)

    def pause(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)

    def icon_center(self) -> QPoint:
        return self.tray.icon.geometry().center()

    def choose_from_menu(self, action) -> None:
        """Right-click the tray icon, then click the menu entry, both as real pointer events."""
        center = self.icon_center()
        self.x.click(center.x(), center.y(), button=3)
        self.wait(lambda: self.tray.menu.isVisible(), f"the tray menu opens (for '{action.text()}')", 20)
        self.pause(0.2)  # the menu finishes placing itself
        rect = self.tray.menu.actionGeometry(action)
        target = self.tray.menu.mapToGlobal(rect.center())
        self.x.click(target.x(), target.y(), button=1)
        self.wait(lambda: not self.tray.menu.isVisible(), f"the menu closes after '{action.text()}'", 20)

    # The runs --------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self.wait(lambda: self.window.model.info is not None, "the model is loaded", 180)
            (self.tray_run if self.mode == "tray" else self.no_tray_run)()
        except Exception as exc:  # noqa: BLE001 - reported to the test, which shows it
            self.report["error"] = f"{type(exc).__name__}: {exc}"
            self.tray.quit()

    def tray_run(self) -> None:
        tray, popup, window, r = self.tray, self.tray.quick_ask, self.window, self.report
        r["available"] = tray.available
        r["icon_visible"] = tray.icon is not None and tray.icon.isVisible()
        geometry = tray.icon.geometry()
        r["icon_geometry"] = [geometry.x(), geometry.y(), geometry.width(), geometry.height()]
        r["menu"] = [a.text() for a in tray.menu.actions() if not a.isSeparator()]
        r["model_item"] = [tray.model_action.text(), tray.model_action.isEnabled()]

        self.choose_from_menu(tray.quick_ask_action)
        self.wait(popup.isVisible, "the quick ask opens from the tray menu")
        r["popup_flags_frameless"] = bool(popup.windowFlags() & Qt.WindowType.FramelessWindowHint)
        r["popup_flags_on_top"] = bool(popup.windowFlags() & Qt.WindowType.WindowStaysOnTopHint)
        QTest.keyClicks(popup.input, QUESTION)
        answered = []
        popup.answered.connect(answered.append)
        QTest.keyClick(popup.input, Qt.Key.Key_Return)
        self.wait(lambda: popup.live is not None and len(popup.answer.toPlainText()) > 5, "the answer streams in")
        r["partial_answer"] = popup.answer.toPlainText()
        self.wait(lambda: answered, "the answer ends", 120)
        r["answer"] = popup.answer.toPlainText()
        r["status"] = popup.status.text()
        r["conversation_saved"] = [m.role for m in self.services.history.messages(answered[0])]
        self.pause(0.3)
        r["screenshot"] = self.save_shot(popup, "quick-ask.png")
        popup.close()

        self.x.click(self.icon_center().x(), self.icon_center().y())  # left click: hide the window
        self.wait(lambda: not window.isVisible(), "a left click on the icon hides the window")
        self.pause(2 * QApplication.doubleClickInterval() / 1000)  # a second click, not a double click
        self.x.click(self.icon_center().x(), self.icon_center().y())
        self.wait(window.isVisible, "another left click brings it back")

        self.x.close_window(int(window.winId()))  # the title bar's close button
        self.wait(lambda: not window.isVisible(), "closing the window hides it to the tray")
        r["running_after_close"] = not tray.quitting
        self.choose_from_menu(tray.show_action)
        self.wait(window.isVisible, "Show window brings it back")

        self.wait(
            lambda: window.documents.library is not None and tray.pause_action.isEnabled(),
            "the document index is open",
            120,
        )
        self.choose_from_menu(tray.pause_action)
        r["paused"] = [window.documents.library.paused, tray.pause_action.text()]
        self.choose_from_menu(tray.pause_action)
        r["resumed"] = [window.documents.library.paused, tray.pause_action.text()]

        # Quit while an answer streams: it must be stopped and saved, and every window closed.
        popup.open()
        popup.input.setText("Write a very long story about the sea.")
        popup.answered.disconnect()
        chat = self.services.assistant.settings
        self.services.assistant.settings = dataclasses.replace(
            chat, sampling=dataclasses.replace(chat.sampling, max_tokens=2000)
        )
        QTest.keyClick(popup.input, Qt.Key.Key_Return)
        self.wait(lambda: len(popup.answer.toPlainText()) > 10, "a long answer streams")
        r["quit_conversation"] = popup.conversation_id
        self.choose_from_menu(tray.quit_action)

    def no_tray_run(self) -> None:
        tray, window, r = self.tray, self.window, self.report
        r["available"] = tray.available
        r["icon"] = tray.icon is not None
        r["status_message"] = window.statusBar().currentMessage()
        r["notice_said"] = r["status_message"] == NO_TRAY_NOTICE
        r["quit_on_last_window"] = self.app.quitOnLastWindowClosed()
        popup = tray.open_quick_ask()  # as `locus --quick-ask` does
        self.wait(popup.isVisible, "the quick ask opens without a tray")
        popup.close()
        self.x.close_window(int(window.winId()))  # no tray to hide in: closing the window quits
        self.wait(lambda: tray.quitting and not window.isVisible(), "closing the window quits Locus")

    def save_shot(self, widget, name: str) -> str:
        pixmap = widget.grab()
        path = self.report_path.with_name(name)
        pixmap.save(str(path))
        if self.shots is not None:
            pixmap.save(str(self.shots / name))
        return str(path)


def main(argv: list[str]) -> int:
    mode, report_path = argv[0], Path(argv[1])
    shots = Path(argv[2]) if len(argv) > 2 else None
    app = QApplication([sys.argv[0]])
    app.setApplicationName("Locus")
    driver = Driver(mode, report_path, shots)
    QTimer.singleShot(0, driver.run)
    code = app.exec()
    driver.report["quit"] = True
    driver.report["windows_open"] = [w.objectName() or type(w).__name__ for w in app.topLevelWidgets() if w.isVisible()]
    driver.desktop.close()
    driver.services.close()
    conversation = driver.report.get("quit_conversation")
    if conversation is not None:  # read back after the engine closed: what Quit left saved
        history = HistoryStore(driver.services.paths.history_db)
        last = history.messages(conversation)[-1]
        driver.report["quit_answer"] = [last.role, last.status, len(last.content)]
        history.close()
    report_path.write_text(json.dumps(driver.report, indent=1), encoding="utf-8")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
