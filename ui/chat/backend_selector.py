"""Where a conversation's answers are generated: this computer or the model server.

Shown only when a model server is set up (Settings › Model server); a conversation that
chooses nothing follows the default. Choosing a backend saves it on the conversation and
makes the backend ready (loads the local model or connects to the server) in the background.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import QMainWindow, QMenu, QToolButton

from engine.runtime.backend import BACKEND_NAMES, REMOTE
from ui.errors import describe, show_error
from ui.ops import run_in_background

_SHORT = {"local": "this computer", "remote": "model server"}


class BackendSelector(QObject):
    """A tool button with a menu: Default, This computer, Model server. ``pending`` is the choice for a
    conversation not saved yet (None: the default)."""

    chosen = Signal(object)  # the backend name or None, after a person picked it
    _finished = Signal(object, bool)  # a readiness future is done (from any thread), quiet

    def __init__(self, window: QMainWindow, services, current: Callable[[], int | None]):
        super().__init__(window)
        self.window = window
        self.services = services
        self.current = current  # the conversation the window shows (None: a new one, not saved yet)
        self.value: str | None = None
        self.picked = False  # a person chose the value since the conversation was shown
        self._watched: set = set()
        self._finished.connect(self._report)
        self.button = QToolButton(window)
        self.button.setObjectName("backendSelector")
        self.button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.button.setToolTip("Where this conversation's answers are generated")
        self.button.setMenu(QMenu(self.button))
        self.refresh()

    def ask_options(self) -> dict:
        """What to pass to Assistant.ask: the backend a person picked here (saved with the question, so
        it applies even before the separate save lands), or nothing."""
        return {"backend": self.value} if self.picked else {}

    def show_for(self, conversation) -> None:
        """Show a conversation's choice (None: a new conversation, which starts on the default)."""
        self.value = conversation.backend if conversation is not None else None
        self.picked = False
        self.refresh()
        if self.value is not None and self.value in self.services.backends.current().available:
            self._make_ready(self.value, quiet=True)

    def refresh(self) -> None:
        """Rebuild the menu for the backends there are now (after the settings changed)."""
        current = self.services.backends.current()  # one read: the names and the default agree
        backends, default = current.available, current.default
        self.button.setVisible(REMOTE in backends)
        effective = self.value or default
        missing = self.value is not None and self.value not in backends
        self.button.setText(f"Answers: {_SHORT.get(effective, effective)}" + (" (not set up)" if missing else ""))
        menu = self.button.menu()
        menu.clear()
        group = QActionGroup(menu)
        options = [(None, f"Default ({_SHORT.get(default, default)})")]
        options += [(name, self.services.backend_label(name)) for name in BACKEND_NAMES if name in backends]
        for name, label in options:
            action = QAction(label, menu, checkable=True, checked=self.value == name)
            action.triggered.connect(lambda _checked=False, n=name: self.choose(n))
            group.addAction(action)
            menu.addAction(action)

    def choose(self, name: str | None) -> None:
        """What the menu does: save the choice on the conversation and make the backend ready."""
        self.value, self.picked = name, True
        self.refresh()
        conversation = self.current()
        if conversation is not None:
            run_in_background(
                lambda: self.services.history.set_options(conversation, backend=name),
                None,
                lambda exc: show_error(self.window, "Backend", exc),
                owner=self.window,
            )
        self._make_ready(name)
        self.chosen.emit(name)

    def _make_ready(self, name: str | None, quiet: bool = False) -> None:
        """Load or connect the backend (None: the default); its future reports back through a queued signal,
        so no pool thread waits on a slow server and each future has one watcher."""
        if not quiet:
            remote = (name or self.services.backends.current().default) == REMOTE
            self.window.statusBar().showMessage(
                "Connecting to the model server…" if remote else "Loading the model on this computer…"
            )
        future = self.services.ready_backend(name)
        if future in self._watched:
            return
        self._watched.add(future)
        future.add_done_callback(lambda f: self._finished.emit(f, quiet))

    def _report(self, future, quiet: bool) -> None:
        self._watched.discard(future)
        status = self.window.statusBar()
        exc = future.exception()
        if exc is None:
            if not quiet:
                status.showMessage(f"Answers in this conversation come from {future.result().name}.", 5000)
        elif quiet:  # opening a conversation: say it, but no dialog for each click
            status.showMessage(f"Backend not ready: {describe(exc)}", 15000)
        else:
            status.clearMessage()
            show_error(self.window, "Backend not ready", exc)
