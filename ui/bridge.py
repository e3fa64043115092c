"""The Qt <-> engine bridge: engine events (from any thread) become queued Qt signals.

The engine calls the sinks on its runtime thread; this QObject lives on the GUI
thread, so each emitted signal is delivered on the GUI thread. Signals carry the
engine's frozen dataclasses unchanged.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from engine.answer import AnswerEvent
from engine.runtime.types import LoadProgress, ModelLoaded, ModelLoadFailed, RuntimeEvent


class EngineBridge(QObject):
    loadProgress = Signal(object)  # LoadProgress
    modelLoaded = Signal(object)  # ModelLoaded
    modelLoadFailed = Signal(object)  # ModelLoadFailed
    answerEvent = Signal(object)  # engine.answer.AnswerEvent: every answer's events (chat, documents, tasks)
    indexEvent = Signal(object)  # DocumentStatus | IndexProgress | IndexFinished

    def runtime_sink(self, event: RuntimeEvent) -> None:
        """Pass to Runtime.load; safe to call from any thread."""
        if isinstance(event, LoadProgress):
            self.loadProgress.emit(event)
        elif isinstance(event, ModelLoaded):
            self.modelLoaded.emit(event)
        elif isinstance(event, ModelLoadFailed):
            self.modelLoadFailed.emit(event)

    def answer_sink(self, event: AnswerEvent) -> None:
        """Pass to Assistant.ask, regenerate, resend_edited or run_task; safe to call from any thread."""
        self.answerEvent.emit(event)

    def index_sink(self, event) -> None:
        """Pass to the document library; safe to call from any thread."""
        self.indexEvent.emit(event)
