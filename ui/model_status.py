"""The model's place in the status bar: its name once loaded, a progress bar while loading, errors."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QMainWindow, QProgressBar

from engine.runtime.types import LoadProgress, ModelLoaded
from ui.errors import describe, show_error


class ModelStatus:
    """Loads the configured model through the services and shows how that goes in the window's status bar."""

    def __init__(self, window: QMainWindow, services, bridge):
        self.window = window
        self.services = services
        self.bridge = bridge
        self.info = None  # the loaded model's ModelInfo
        self.error: str | None = None  # why the last load failed, for people
        self.label = QLabel("No model", window)
        self.label.setObjectName("modelLabel")
        self.bar = QProgressBar(window)
        self.bar.setObjectName("loadProgress")
        self.bar.setRange(0, 100)
        self.bar.setMaximumWidth(180)
        self.bar.hide()
        window.statusBar().addWidget(self.label)
        window.statusBar().addWidget(self.bar)
        bridge.loadProgress.connect(self._progress)
        bridge.modelLoaded.connect(self._loaded)
        bridge.modelLoadFailed.connect(lambda event: self._failed(event.error))

    def load(self) -> None:
        """Start loading the configured model (off the GUI thread)."""
        self.error = None
        self.label.setText("Loading model…")
        self.bar.setValue(0)
        self.bar.show()
        future = self.services.load_model(self.bridge.runtime_sink)
        if future.done() and future.exception() is not None:  # refused before reaching the runtime
            self._failed(future.exception())

    def _progress(self, event: LoadProgress) -> None:
        self.bar.show()
        self.bar.setValue(int(event.fraction * 100))

    def _loaded(self, event: ModelLoaded) -> None:
        self.info = event.info
        self.bar.hide()
        self.label.setText(f"{event.info.name} · {event.info.n_ctx} ctx · {event.info.n_threads} threads")
        self.label.setToolTip(event.info.path)

    def _failed(self, error: BaseException) -> None:
        self.bar.hide()
        self.error = describe(error)
        current = f" Still using {self.info.name}." if self.info else ""
        self.label.setText("Model failed to load" if not self.info else self.info.name)
        show_error(self.window, "Model not loaded", self.error + current)
