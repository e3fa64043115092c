"""How an answer is held and sent: the handle a caller gets back at once, and the stream its producer
writes to (engine/answer.py says what flows through it).

``AnswerHandle`` is the caller's side: cancel at any point, read the events (``events()`` or a callback),
answer a tool call's ``ApprovalNeeded`` (``approve``: nothing else can), wait for the end. ``AnswerStream``
is the producer's side: it keeps the protocol's order (AnswerStarted first, exactly one AnswerEnded last,
nothing after it) and the text said so far, whichever thread emits.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from engine.answer import AnswerEnded, AnswerEvent, AnswerStarted, TextDelta
from engine.errors import InvalidRequestError
from engine.runtime.handles import EventChannel
from engine.tools.base import Approval

APPROVALS: tuple[Approval, ...] = ("once", "conversation", "deny")

if TYPE_CHECKING:
    from engine.rag.retrieve import Retrieval

_answer_ids = itertools.count(1)


class Cancellation:
    """A stop request that reaches whatever the answer waits on now: a generation, or nothing yet (then the
    answer stops at its next step)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._current = None  # the running generation's RequestHandle

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def cancel(self) -> None:
        with self._lock:
            self._event.set()
            current = self._current
        if current is not None:
            current.cancel()

    def attach(self, request) -> None:
        """The generation now running (cancelled at once when a stop came first)."""
        with self._lock:
            self._current = request
            stopped = self._event.is_set()
        if stopped:
            request.cancel()

    def detach(self) -> None:
        with self._lock:
            self._current = None


class _Approvals:
    """The tool calls of one answer waiting for the user, and the answers given (only ``approve`` gives one)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._waiting: dict[str, Approval | None] = {}
        self._woken = False

    def give(self, call_id: str, approval: Approval) -> bool:
        with self._cond:
            if call_id not in self._waiting or self._waiting[call_id] is not None:
                return False
            self._waiting[call_id] = approval
            self._cond.notify_all()
            return True

    def expect(self, call_id: str) -> None:
        with self._cond:
            self._waiting[call_id] = None

    def wait(self, call_id: str, cancellation: Cancellation) -> Approval | None:
        """The user's answer for a call (None when the answer was cancelled first)."""
        cancellation.attach(self)  # a stop wakes the wait
        try:
            with self._cond:
                while self._waiting.get(call_id) is None and not cancellation.cancelled:
                    self._cond.wait()
                return None if cancellation.cancelled else self._waiting[call_id]
        finally:
            cancellation.detach()
            with self._cond:
                self._waiting.pop(call_id, None)

    def cancel(self) -> None:  # Cancellation's hook: wake every wait
        with self._cond:
            self._cond.notify_all()

    @property
    def pending(self) -> tuple[str, ...]:
        with self._cond:
            return tuple(k for k, v in self._waiting.items() if v is None)


class _AnswerChannel(EventChannel[AnswerEvent]):
    terminal = (AnswerEnded,)


class AnswerHandle:
    """One answer on its way. Returned at once; everything else arrives as events.

    ``started`` is the AnswerStarted once it was sent (which conversation, which messages, which trace);
    ``retrieval`` the passages found for a question from documents (None otherwise); ``result`` the
    AnswerEnded once it was sent.
    """

    def __init__(self, on_event: Callable[[AnswerEvent], None] | None = None):
        self.answer_id = next(_answer_ids)
        self.started: AnswerStarted | None = None
        self.retrieval: Retrieval | None = None
        self.cancellation = Cancellation()
        self.channel = _AnswerChannel(on_event)
        self.approvals = _Approvals()

    def cancel(self) -> None:
        """Stop the answer, whatever it is doing: what was said so far is kept (nothing, if nothing was)."""
        self.cancellation.cancel()

    def approve(self, call_id: str, approval: Approval) -> bool:
        """Answer a tool call's ApprovalNeeded: "once" (this call), "conversation" (this tool, for the rest of
        the conversation) or "deny". False when no call of that id waits (it ended, or the answer did)."""
        if approval not in APPROVALS:
            raise InvalidRequestError(f"An approval is one of {', '.join(APPROVALS)}, not {approval!r}.")
        return self.approvals.give(call_id, approval)

    @property
    def waiting_for_approval(self) -> tuple[str, ...]:
        """The ids of the tool calls that wait for the user now."""
        return self.approvals.pending

    def events(self) -> Iterator[AnswerEvent]:
        """Every event up to AnswerEnded (only when no callback was given)."""
        return self.channel.events()

    def wait(self, timeout: float | None = None) -> AnswerEnded | None:
        """The AnswerEnded once it was sent (None when ``timeout`` ran out first)."""
        return self.channel.wait(timeout)

    @property
    def result(self) -> AnswerEnded | None:
        return self.channel.result


class AnswerStream:
    """The producer's side of one answer: sends its events in the protocol's order.

    ``on_text`` sees each piece of text before the consumer does (the history writer's hand-over: a queue
    put, so the thread that emits text, often the runtime's, never waits on it).
    """

    def __init__(self, handle: AnswerHandle, on_text: Callable[[str], None] | None = None):
        self.handle = handle
        self.answer_id = handle.answer_id
        self.on_text = on_text
        self._parts: list[str] = []
        self._lock = threading.Lock()
        self._ended = False

    @property
    def started(self) -> bool:
        return self.handle.started is not None

    @property
    def ended(self) -> bool:
        return self._ended

    @property
    def said(self) -> str:
        """All the text sent so far."""
        return "".join(self._parts)

    def start(self, started: AnswerStarted) -> None:
        """Send AnswerStarted (once, and first)."""
        with self._lock:
            if self.handle.started is not None or self._ended:
                raise RuntimeError("an answer starts once, before anything else")
            self.handle.started = started
        self.handle.channel.emit(started)

    def emit(self, event: AnswerEvent) -> None:
        """Send an event between the start and the end (dropped once the answer has ended)."""
        if self._ended:
            return
        if self.handle.started is None:
            raise RuntimeError(f"{type(event).__name__} before AnswerStarted")
        self.handle.channel.emit(event)

    def text(self, piece: str) -> None:
        """More of the answer's text."""
        if not piece or self._ended:
            return
        self._parts.append(piece)
        if self.on_text is not None:
            self.on_text(piece)
        self.emit(TextDelta(self.answer_id, piece))

    def end(self, ended: AnswerEnded) -> AnswerEnded:
        """Send AnswerEnded (exactly once: a second one is dropped, and the first returned)."""
        with self._lock:
            if self._ended:
                return self.handle.result or ended  # (None while the first is still being sent)
            self._ended = True
        self.handle.channel.emit(ended)
        return ended
