"""The events of one request's work (a generation, an answer from documents), read on its HTTP thread.

The work's callback only queues (it runs on the runtime's or the answer's thread, which it must never
slow down); the HTTP thread reads the queue, checking a few times a second whether the client is still
there, and cancels the work once it has gone, so the runtime is free for the next request within one
token step. Text that queued up while the reader was busy writing comes as one event: one write instead
of many.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterator
from typing import Any

POLL_S = 0.2  # how often a waiting request checks that its client is still connected


class EventPump:
    """A queue of one request's events. Subclasses set ``handle`` (what ``cancel()`` cancels), ``piece``
    (the type of event whose queued runs are joined), ``last`` (the types that end the events) and
    ``join`` (one event from a run of pieces)."""

    piece: type
    last: tuple[type, ...]
    handle: Any

    def __init__(self) -> None:
        self._events: queue.SimpleQueue = queue.SimpleQueue()

    def put(self, event: object) -> None:
        """The work's callback (any thread): only queues."""
        self._events.put(event)

    def cancel(self) -> None:
        self.handle.cancel()

    def join(self, pieces: list) -> object:
        raise NotImplementedError

    def events(self, gone: Callable[[], bool]) -> Iterator:
        """Every event up to one of ``last``; cancels the work once ``gone()`` says the client left (and
        goes on reading, so that the cancelled work's last event still comes)."""
        cancelled, checked = False, time.monotonic()
        held = None  # an event read while joining pieces, yielded next
        while True:
            if held is not None:
                event, held = held, None
            else:
                try:
                    event = self._events.get(timeout=POLL_S)
                except queue.Empty:
                    event = None
            if isinstance(event, self.piece):
                event, held = self._merge(event)
            now = time.monotonic()
            if not cancelled and (event is None or now - checked >= POLL_S):
                checked = now
                if gone():
                    self.cancel()
                    cancelled = True
            if event is None:
                continue
            yield event
            if isinstance(event, self.last):
                return

    def _merge(self, first: object) -> tuple[object, object]:
        """``first`` joined with the pieces already waiting; and the first other event found (or None)."""
        pieces = [first]
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                event = None
            if not isinstance(event, self.piece):
                break
            pieces.append(event)
        return (self.join(pieces) if len(pieces) > 1 else first), event
