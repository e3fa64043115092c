"""The Qt <-> engine bridge: engine events (from any thread) become queued Qt signals.

The engine calls the sinks on its runtime thread; this QObject lives on the GUI
thread, so each emitted signal is delivered on the GUI thread. Signals carry the
engine's frozen dataclasses unchanged.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from engine.runtime.types import (
    GenerationEvent,
    LoadProgress,
    ModelLoaded,
    ModelLoadFailed,
    RuntimeEvent,
)


class EngineBridge(QObject):
    loadProgress = Signal(object)  # LoadProgress
    modelLoaded = Signal(object)  # ModelLoaded
    modelLoadFailed = Signal(object)  # ModelLoadFailed
    answerEvent = Signal(object)  # Retrieved | Started | Token | Cited | Done | Failed
    indexEvent = Signal(object)  # DocumentStatus | IndexProgress | IndexFinished
    taskEvent = Signal(object)  # TaskProgress | TaskText | TaskDone | TaskFailed

    def runtime_sink(self, event: RuntimeEvent) -> None:
        """Pass to Runtime.load; safe to call from any thread."""
        if isinstance(event, LoadProgress):
            self.loadProgress.emit(event)
        elif isinstance(event, ModelLoaded):
            self.modelLoaded.emit(event)
        elif isinstance(event, ModelLoadFailed):
            self.modelLoadFailed.emit(event)

    def answer_sink(self, event: GenerationEvent) -> None:
        """Pass to Assistant.ask; safe to call from any thread."""
        self.answerEvent.emit(event)

    def task_sink(self, event) -> None:
        """Pass to Assistant.run_task; safe to call from any thread (tasks run on their own)."""
        self.taskEvent.emit(event)

    def index_sink(self, event) -> None:
        """Pass to the document library; safe to call from any thread."""
        self.indexEvent.emit(event)
