"""The system-tray icon: quick ask, show the window, pause indexing, the model in use, quit.

Closing the window (its title-bar button) hides it to the tray when the setting
says so and a tray is there; File > Quit and the tray's Quit end Locus. Where
the desktop has no tray, Locus works without the icon and says so once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QEvent, QObject, QSettings, QTimer
from PySide6.QtGui import QAction, QIcon
from PySide6.QtWidgets import QApplication, QMainWindow, QMenu, QSystemTrayIcon

from engine.rag.indexer import IndexProgress
from resources import resource_path
from ui.plain import mnemonic_safe
from ui.quick_ask import QuickAsk

log = logging.getLogger(__name__)

NO_TRAY_NOTICE = (
    "This desktop has no system tray: Locus works without its tray icon, and closing the window "
    "quits it. The quick ask still opens with 'locus --quick-ask'."
)
_NOTICE_NO_TRAY = "notices/no_tray"
_NOTICE_HIDDEN = "notices/closed_to_tray"


class Tray(QObject):
    """The tray icon and its menu, the quick-ask popup, and closing the window to the tray."""

    def __init__(
        self,
        window: QMainWindow,
        services,
        *,
        quit_app: Callable[[], None] | None = None,
        state_file: Path | None = None,
    ):
        super().__init__(window)
        self.window = window
        self.services = services
        self.quit_app = quit_app or QApplication.quit
        self.state = QSettings(
            str(state_file or Path(services.paths.data_dir) / "ui-state.ini"), QSettings.Format.IniFormat
        )
        self.quitting = False
        self.icon: QSystemTrayIcon | None = None
        self.quick_ask = QuickAsk(services)
        self.quick_ask.continueRequested.connect(self.continue_in_window)
        self.quick_ask.answered.connect(lambda _conversation: window.refresh_conversations())
        window.documents.collectionsChanged.connect(self.quick_ask.set_collections)

        self.menu = QMenu()
        self.quick_ask_action = self._action("Quick ask…", self.open_quick_ask)
        self.show_action = self._action("Show window", self.show_window)
        self.menu.addSeparator()
        self.pause_action = self._action("Pause indexing", self.toggle_indexing)
        self.model_action = self._action("Model: none loaded", None)
        self.model_action.setEnabled(False)
        self.menu.addSeparator()
        self.quit_action = self._action("Quit Locus", self.quit)

        bridge = window.bridge
        bridge.loadProgress.connect(lambda _event: self._show_model("loading…"))
        bridge.modelLoaded.connect(lambda event: self._show_model(event.info.name))
        bridge.modelLoadFailed.connect(lambda _event: self._show_model(None))
        bridge.indexEvent.connect(self._on_index_event)
        window.documents.libraryReady.connect(lambda _library: self._sync_indexing())
        info = getattr(window.model, "info", None)
        if info is not None:
            self._show_model(info.name)
        self._sync_indexing()

        self.available = QSystemTrayIcon.isSystemTrayAvailable()
        if self.available:
            self.icon = QSystemTrayIcon(QIcon(str(resource_path("icons", "locus-tray.svg"))), self)
            self.icon.setToolTip("Locus")
            self.icon.setContextMenu(self.menu)
            self.icon.activated.connect(self._activated)
            self.icon.show()
            QApplication.instance().setQuitOnLastWindowClosed(False)  # the tray keeps Locus running
        window.installEventFilter(self)

    def _action(self, text: str, slot) -> QAction:
        action = QAction(text, self.menu)
        if slot is not None:
            action.triggered.connect(slot)
        self.menu.addAction(action)
        return action

    def announce(self) -> bool:
        """Say once ever, in the status bar, that there is no tray here; True when it was said now."""
        if self.available:
            return False
        log.info("no system tray: running without a tray icon")
        if self.state.value(_NOTICE_NO_TRAY, False, bool):
            return False
        self.window.statusBar().showMessage(NO_TRAY_NOTICE, 30000)
        self.state.setValue(_NOTICE_NO_TRAY, True)
        self.state.sync()
        return True

    # Menu actions ----------------------------------------------------------------------

    def open_quick_ask(self) -> QuickAsk:
        """Show the quick-ask popup, ready to type."""
        self.quick_ask.open()
        return self.quick_ask

    def show_window(self) -> None:
        """Bring the main window up, restored and in front."""
        window = self.window
        if window.isMinimized():
            window.showNormal()
        else:
            window.show()
        window.raise_()
        window.activateWindow()

    def toggle_window(self) -> None:
        """What a left click on the icon does: hide the window if it shows, else bring it up."""
        if self.window.isVisible() and not self.window.isMinimized():
            self.window.hide()
        else:
            self.show_window()

    def continue_in_window(self, conversation_id: int) -> None:
        """Open a quick ask's conversation in the main window."""
        self.show_window()
        self.window.refresh_conversations()
        self.window.open_conversation(conversation_id)

    def toggle_indexing(self) -> None:
        """Pause indexing, or resume it (a flag the indexer's threads check: instant, safe here)."""
        library = self.window.documents.library
        if library is None:
            return
        if library.paused:
            library.resume_indexing()
        else:
            library.pause_indexing()
        self._sync_indexing()

    def quit(self) -> None:
        """End Locus: stop answers, close every window, leave the event loop (the engine closes after it)."""
        if self.quitting:
            return
        self.quitting = True
        log.info("quitting")
        self.window.removeEventFilter(self)
        self.quick_ask.stop()
        self.quick_ask.close()
        self.window.stop()
        if self.icon is not None:
            self.icon.hide()
        QApplication.closeAllWindows()
        self.quit_app()

    # State shown in the menu ----------------------------------------------------------

    def _show_model(self, name: str | None) -> None:
        self.model_action.setText(mnemonic_safe(f"Model: {name}") if name else "Model: none loaded")

    def _sync_indexing(self) -> None:
        library = self.window.documents.library
        self.pause_action.setEnabled(library is not None)
        paused = library is not None and library.paused
        self.pause_action.setText("Resume indexing" if paused else "Pause indexing")
        if self.icon is not None:
            self.icon.setToolTip("Locus — indexing paused" if paused else "Locus")

    def _on_index_event(self, event) -> None:
        if isinstance(event, IndexProgress):
            self._sync_indexing()

    # The icon and the window ------------------------------------------------------------

    def _activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason == QSystemTrayIcon.ActivationReason.Trigger:
            self.toggle_window()
        elif reason == QSystemTrayIcon.ActivationReason.DoubleClick:
            self.show_window()  # its first click hid the window: a double click always ends with it shown
        elif reason == QSystemTrayIcon.ActivationReason.MiddleClick:
            self.open_quick_ask()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is not self.window or event.type() != QEvent.Type.Close or self.quitting:
            return False
        tray_shown = self.icon is not None and self.icon.isVisible()
        # A spontaneous close is the title bar's button (or the desktop); File > Quit calls close() itself.
        if tray_shown and self.services.settings.ui.close_to_tray and event.spontaneous():
            event.ignore()
            self.window.hide()
            self._tell_still_running()
            return True
        QTimer.singleShot(0, self, self.quit)  # the window closes now; the rest of Locus follows
        return False

    def _tell_still_running(self) -> None:
        if self.state.value(_NOTICE_HIDDEN, False, bool):
            return
        self.icon.showMessage(
            "Locus is still running",
            "It stays here in the tray: click the icon to bring the window back, or choose Quit from its menu.",
            QSystemTrayIcon.MessageIcon.Information,
            8000,
        )
        self.state.setValue(_NOTICE_HIDDEN, True)
        self.state.sync()
