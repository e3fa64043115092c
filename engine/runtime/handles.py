"""How a caller holds a request: its events (to a callback or an iterator), its result, its cancel flag."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from engine.runtime.types import Done, Failed, GenerationEvent, GenerationRequest

log = logging.getLogger(__name__)

E = TypeVar("E")  # the kind of event a channel carries


class EventChannel(Generic[E]):
    """Delivers a request's events to a callback, or queues them for ``events()``.

    Either way ``wait()`` returns the terminal event (Done or Failed) once it has been
    delivered. A consumer's exception is logged, never passed back to the sender.
    """

    terminal: tuple[type, ...] = (Done, Failed)  # the events that end the stream

    def __init__(
        self,
        on_event: Callable[[E], None] | None,
        tap: Callable[[E], None] | None = None,
    ):
        self._on_event = on_event
        self._tap = tap  # sees every event before the consumer (e.g. to save it)
        self._queue: queue.SimpleQueue | None = None if on_event else queue.SimpleQueue()
        self._finished = threading.Event()
        self.result: Any = None  # the terminal event, once sent

    def emit(self, event: E) -> None:
        final = isinstance(event, self.terminal)
        if final:
            self.result = event
        if self._tap is not None:
            try:
                self._tap(event)
            except Exception:  # saving failed: the consumer still gets the event
                log.exception("event tap failed on %s", type(event).__name__)
        try:
            if self._on_event is not None:
                self._on_event(event)
            elif self._queue is not None:
                self._queue.put(event)
        except Exception:  # a consumer's bug must not take the sending thread down
            log.exception("event consumer failed on %s", type(event).__name__)
        if final:
            self._finished.set()

    def wait(self, timeout: float | None = None) -> Any:
        """The terminal event once it has been delivered (None if ``timeout`` ran out first)."""
        self._finished.wait(timeout)
        return self.result

    def events(self) -> Iterator[E]:
        """Yield events until Done or Failed (only without a callback)."""
        if self._queue is None:
            raise RuntimeError("These events go to a callback, not to events().")
        while True:
            event = self._queue.get()
            yield event
            if isinstance(event, self.terminal):
                return


class ChannelHandle:
    """Work whose events go through an EventChannel: wait for it, iterate over its events, read its result."""

    channel: EventChannel

    def events(self) -> Iterator:
        """Every event up to the terminal one (only without a callback)."""
        return self.channel.events()

    def wait(self, timeout: float | None = None):
        """The terminal event once it has been delivered (None if ``timeout`` ran out first)."""
        return self.channel.wait(timeout)

    @property
    def result(self):
        return self.channel.result


class RequestHandle(ChannelHandle):
    """A submitted request: cancel it, wait for it, or iterate over its events."""

    def __init__(
        self,
        request: GenerationRequest,
        on_event: Callable[[GenerationEvent], None] | None,
        tap: Callable[[GenerationEvent], None] | None = None,
        trace_parent=None,
    ):
        self.request = request
        self.request_id = request.request_id
        self.submitted_at = time.perf_counter()
        self.submitted_ns = time.time_ns()
        self.trace_parent = trace_parent  # an OpenTelemetry context: the generation span's parent
        self._cancel = threading.Event()
        self.channel = EventChannel(on_event, tap)  # the tap (history) sees each event before the consumer

    def cancel(self) -> None:
        """Stop the request: before it starts, or within one token step while it runs."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def _emit(self, event: GenerationEvent) -> None:
        self.channel.emit(event)
