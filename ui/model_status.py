"""The model's place in the status bar: its name once loaded, a progress bar while loading, errors."""

from __future__ import annotations

from PySide6.QtWidgets import QMainWindow, QProgressBar

from engine.runtime.backend import REMOTE
from engine.runtime.types import LoadProgress, ModelLoaded
from ui.errors import describe, show_error
from ui.ops import run_in_background
from ui.plain import literal, plain_label


class ModelStatus:
    """Makes the default backend ready through the services (loads the local model, or connects to the model
    server) and shows how that goes in the window's status bar."""

    def __init__(self, window: QMainWindow, services, bridge):
        self.window = window
        self.services = services
        self.bridge = bridge
        self.info = None  # the loaded model's ModelInfo
        self.backend: str | None = None  # the name of the backend loaded last (LOCAL or REMOTE)
        self.error: str | None = None  # why the last load failed, for people
        self.label = plain_label("No model", window, name="modelLabel")
        self.bar = QProgressBar(window)
        self.bar.setObjectName("loadProgress")
        self.bar.setRange(0, 100)
        self.bar.setMaximumWidth(180)
        self.bar.hide()
        self.manager = None  # the model manager window, once opened
        window.statusBar().addWidget(self.label)
        window.statusBar().addWidget(self.bar)
        bridge.loadProgress.connect(self._progress)
        bridge.modelLoaded.connect(self._loaded)
        bridge.modelLoadFailed.connect(lambda event: self._failed(event.error))

    def load(self) -> None:
        """Start making the default backend ready (off the GUI thread)."""
        self.error = None
        self.label.setText("Loading model…")
        self.bar.setValue(0)
        self.bar.show()
        self.backend = self.services.backends.current().default
        future = self.services.ready_backend(self.backend, self.bridge.runtime_sink)
        if future.done() and future.exception() is not None:  # refused before reaching the runtime
            self._failed(future.exception())

    def _progress(self, event: LoadProgress) -> None:
        self.bar.show()
        self.bar.setValue(int(event.fraction * 100))

    def _loaded(self, event: ModelLoaded) -> None:
        self.info = event.info
        self.bar.hide()
        info = event.info
        where = f"on {info.path}" if self.backend == REMOTE else f"{info.n_threads} threads"
        self.label.setText(f"{info.name} · {info.n_ctx} ctx · {where}")
        self.label.setToolTip(literal(event.info.path))

    def _failed(self, error: BaseException) -> None:
        self.bar.hide()
        self.error = describe(error)
        current = f" Still using {self.info.name}." if self.info else ""
        self.label.setText("Model failed to load" if not self.info else self.info.name)
        show_error(self.window, "Model not loaded", self.error + current)

    def open_manager(self):
        """Show the model manager (one per window)."""
        from ui.models.manager import ModelManager

        if self.manager is None:
            self.manager = ModelManager(self.services, self.window)
            self.manager.modelChosen.connect(self.use)
            self.manager.draftChosen.connect(self.use_draft)
        self.manager.show()
        self.manager.raise_()
        return self.manager

    def use_draft(self, path: str) -> None:
        """Draft with ``path`` for the model in use (speculative decoding); the model reloads with it."""
        self._change_model(lambda: self.services.choose_draft(path), "Draft model not set")

    def use(self, path: str) -> None:
        """Make ``path`` the default model and switch to it now; a running answer is stopped and kept."""
        self._change_model(lambda: self.services.choose_model(path), "Model not changed")

    def _change_model(self, change, failure_title: str) -> None:
        """Run a settings ``change`` off the GUI thread; reload the model when it says so."""

        def changed(needs_reload: bool) -> None:
            if needs_reload:
                self.window.stop()
                self.load()
            if self.manager is not None:
                self.manager.local.refresh()

        run_in_background(change, changed, lambda exc: show_error(self.window, failure_title, exc), owner=self.window)
