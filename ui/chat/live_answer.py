"""One answer as it arrives, for whichever view shows it (the window's chat, the quick ask).

``LiveAnswer`` follows one answer's events (engine/answer.py) from the bridge: it keeps the text so far
(repainted at most 20 times a second), says in words what the answer is doing, keeps its progress, its
sources, its tool calls (and the approvals they wait for) and its trace, and tells when it ended. A view
only paints what its signals say. The engine's ``ask`` returns at once and ``AnswerStarted`` names the
conversation and messages, so nothing here waits for a handle or guesses what came first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from PySide6.QtCore import QObject, QTimer, Signal

from engine.answer import (
    AnswerEnded,
    AnswerStarted,
    ApprovalNeeded,
    Cited,
    Generating,
    Progress,
    Retrieved,
    TextDelta,
    ToolCallEnded,
    ToolCallStarted,
)
from engine.answering import AnswerHandle
from ui.bridge import EngineBridge
from ui.chat.tool_calls import CallState, short_name

RENDER_INTERVAL_MS = 50  # streamed text is painted at most 20 times a second


def waiting_words(model_info) -> str:
    """What an answer says before anything has happened: the model may still be loading."""
    return "Waiting for the model to load…" if model_info is None else "Thinking…"


def progress_words(event: Progress) -> str:
    """'Summarizing part 3 of 12' (events come at a step's start: the step under way is done + 1)."""
    step = min(event.done + 1, event.total)
    return f"{event.stage} {step} of {event.total}" if event.total > 1 else event.stage


class LiveAnswer(QObject):
    """One answer being written: its text, what it is doing, its progress, sources, trace and end."""

    answerStarted = Signal(object)  # AnswerStarted: the conversation and messages are known
    textChanged = Signal(str)  # all of the text so far
    statusChanged = Signal(str)  # what the answer is doing, in words
    progressed = Signal(object)  # Progress of a task with steps
    answerEnded = Signal(object)  # AnswerEnded, once, after the last textChanged
    toolCallStarted = Signal(object)  # ToolCallStarted: the model asked for a call
    approvalNeeded = Signal(object)  # ApprovalNeeded: the call waits for the user (answer with ``approve``)
    toolCallEnded = Signal(object)  # ToolCallEnded: the call ran, failed, was denied or stopped

    def __init__(self, bridge: EngineBridge, status: str, parent: QObject | None = None):
        super().__init__(parent)
        self.bridge = bridge
        self.handle: AnswerHandle | None = None
        self.started: AnswerStarted | None = None
        self.result: AnswerEnded | None = None
        self.text = ""
        self.status = status
        self.progress: Progress | None = None
        self.citations: tuple = ()
        self.calls: list[CallState] = []  # the tool calls so far, as their rows show them
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(RENDER_INTERVAL_MS)
        self._timer.timeout.connect(lambda: self.textChanged.emit(self.text))

    def start(self, ask: Callable[[Callable[[object], None]], AnswerHandle]) -> AnswerHandle:
        """Start the answer: ``ask(sink)`` calls the Assistant (which returns at once) with the bridge's sink.
        Raises what the Assistant refuses at once (an empty question)."""
        # Connected first: the answer's thread may send before ``ask`` returns; its events wait in the
        # GUI thread's queue (the bridge lives there) until this slot is done and the handle is known.
        self.bridge.answerEvent.connect(self._on_event)
        try:
            self.handle = ask(self.bridge.answer_sink)
        except BaseException:
            self.bridge.answerEvent.disconnect(self._on_event)
            raise
        return self.handle

    @property
    def trace_id(self) -> str | None:
        source = self.result or self.started
        return source.trace_id if source is not None else None

    @property
    def conversation_id(self) -> int | None:
        return self.started.conversation_id if self.started is not None else None

    @property
    def finished(self) -> bool:
        return self.result is not None

    def cancel(self) -> None:
        """Stop the answer (what it said so far is kept); works before it has started too."""
        if self.handle is not None:
            self.handle.cancel()

    def approve(self, call_id: str, approval: str) -> bool:
        """The user's answer to a call's approval prompt (only the prompt's buttons call this); False when
        no call of that id waits any more."""
        if self.handle is None or self.finished:
            return False
        given = self.handle.approve(call_id, approval)
        if given:
            self._update_call(call_id, status="running", approval=approval)
        return given

    def _update_call(self, call_id: str, **changes) -> None:
        for index in range(len(self.calls) - 1, -1, -1):
            if self.calls[index].id == call_id and not self.calls[index].finished:
                self.calls[index] = replace(self.calls[index], **changes)
                return

    def _set_status(self, text: str) -> None:
        self.status = text
        self.statusChanged.emit(text)

    def _on_event(self, event) -> None:
        if self.handle is None or getattr(event, "answer_id", None) != self.handle.answer_id or self.finished:
            return
        if isinstance(event, TextDelta):
            self.text += event.text
            if not self._timer.isActive():
                self._timer.start()
        elif isinstance(event, AnswerStarted):
            self.started = event
            self.answerStarted.emit(event)
        elif isinstance(event, Retrieved):
            found = len(event.passages)
            self._set_status(
                f"Answering from {found} passage{'s' * (found != 1)}…"
                if found
                else "No passage in the documents matched; answering anyway…"
            )
        elif isinstance(event, Generating):
            if self.progress is None:  # a task's steps say more than this
                self._set_status("Answering…")
        elif isinstance(event, Progress):
            self.progress = event
            self.progressed.emit(event)
            self._set_status(progress_words(event))
        elif isinstance(event, ToolCallStarted):
            self.calls.append(CallState.started(event.call, event.step))
            self.toolCallStarted.emit(event)
            self._set_status(f"Calling {short_name(event.call.name)}…")
        elif isinstance(event, ApprovalNeeded):
            self._update_call(event.call.id, status="waiting")
            self.approvalNeeded.emit(event)
            self._set_status(f"Waiting for you to allow {short_name(event.call.name)}…")
        elif isinstance(event, ToolCallEnded):
            for index in range(len(self.calls) - 1, -1, -1):
                if self.calls[index].id == event.result.call_id and not self.calls[index].finished:
                    self.calls[index] = self.calls[index].ended(event.result)
                    break
            self.toolCallEnded.emit(event)
            self._set_status("Reading the results…" if event.result.status == "ok" else "Answering…")
        elif isinstance(event, Cited):
            self.citations = event.citations
        elif isinstance(event, AnswerEnded):
            self._timer.stop()
            self.bridge.answerEvent.disconnect(self._on_event)
            self.result, self.text = event, event.text
            self.textChanged.emit(self.text)
            self.answerEnded.emit(event)
