"""Saving answers as they grow, on a thread of its own.

The text of an answer arrives on the thread that generates it (the runtime's, for every sequence of the
batch at once); that thread only hands each piece over here (a queue put) and never waits on SQLite. The
writer keeps the pieces of each answer and saves its text so far at most every ``save_interval_s`` (a
process killed mid-answer keeps what was saved), then its final state when the answer ends.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass

from engine.answer import Outcome
from engine.history.store import HistoryStore

log = logging.getLogger(__name__)


def answer_is_kept(outcome: str, text: str) -> bool:
    """Whether an ended answer stays in the conversation: all but one stopped before it said anything."""
    return not (outcome == "cancelled" and not text.strip())


@dataclass(frozen=True)
class _Grow:
    message_id: int
    text: str


@dataclass(frozen=True)
class _Finish:
    message_id: int
    outcome: Outcome
    text: str
    stats: dict | None
    error: str | None
    sources: list[dict] | None
    done: Future
    answered_by: dict | None = None  # who answered (engine/assistants.py)


class HistoryWriter:
    """Saves growing answers for any number of threads; ``grow`` never blocks, ``finish`` says when it is saved."""

    def __init__(self, history: HistoryStore, *, save_interval_s: float = 0.5):
        self.history = history
        self.save_interval_s = save_interval_s
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        # Writer-thread state: each growing answer's pieces and when its text was last saved.
        self._parts: dict[int, list[str]] = {}
        self._saved_at: dict[int, float] = {}
        self._dirty: set[int] = set()

    def grow(self, message_id: int, text: str) -> None:
        """More text of an answer (any thread; a queue put)."""
        if text:
            self._put(_Grow(message_id, text))

    def finish(
        self,
        message_id: int,
        outcome: Outcome,
        text: str,
        *,
        stats: dict | None = None,
        error: str | None = None,
        sources: list[dict] | None = None,
        answered_by: dict | None = None,
    ) -> Future:
        """Save an answer's final state (after any text still waiting); resolves once it is written.

        An answer stopped before it said anything is removed (its question stays)."""
        done: Future = Future()
        self._put(_Finish(message_id, outcome, text, stats, error, sources, done, answered_by))
        return done

    def close(self, timeout: float = 10.0) -> None:
        """Write what is waiting, then stop the thread."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._inbox.put(None)
            thread.join(timeout)

    def _put(self, item) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the history writer is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="locus-history-writer", daemon=True)
                self._thread.start()
        self._inbox.put(item)

    # The writer thread ----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            batch = [self._next(self._wait_s())]
            while True:  # take everything already waiting first, so that a backlog is saved once
                try:
                    batch.append(self._inbox.get_nowait())
                except queue.Empty:
                    break
            stop = None in batch
            for item in batch:
                if item is not None:
                    self._take(item)
            self._save_due(everything=stop)
            if stop:
                return

    def _next(self, wait_s: float | None):
        try:
            return self._inbox.get(timeout=wait_s) if wait_s is not None else self._inbox.get()
        except queue.Empty:
            return _Tick

    def _wait_s(self) -> float | None:
        """Until the next answer's save is due (None: nothing to save, wait for the next piece)."""
        if not self._dirty:
            return None
        due = min(self._saved_at[m] for m in self._dirty) + self.save_interval_s
        return max(0.0, due - time.monotonic())

    def _take(self, item) -> None:
        if item is _Tick:
            return
        if isinstance(item, _Grow):
            if item.message_id not in self._parts:
                self._parts[item.message_id] = []
                self._saved_at[item.message_id] = time.monotonic()
            self._parts[item.message_id].append(item.text)
            self._dirty.add(item.message_id)
        elif isinstance(item, _Finish):
            self._parts.pop(item.message_id, None)
            self._saved_at.pop(item.message_id, None)
            self._dirty.discard(item.message_id)
            self._write_final(item)

    def _save_due(self, everything: bool = False) -> None:
        now = time.monotonic()
        for message_id in list(self._dirty):
            if everything or now - self._saved_at[message_id] >= self.save_interval_s:
                self._dirty.discard(message_id)
                self._saved_at[message_id] = now
                try:
                    self.history.update_message(message_id, content="".join(self._parts[message_id]))
                except Exception:
                    log.exception("could not save the growing answer %s", message_id)

    def _write_final(self, item: _Finish) -> None:
        try:
            if not answer_is_kept(item.outcome, item.text):
                self.history.delete_message(item.message_id)
            else:
                self.history.update_message(
                    item.message_id,
                    content=item.text,
                    status=item.outcome,
                    stats=item.stats,
                    error=item.error,
                    sources=item.sources,
                    answered_by=item.answered_by,
                )
        except BaseException as exc:  # noqa: BLE001 - the answer's thread hears of it
            item.done.set_exception(exc)
        else:
            item.done.set_result(None)


_Tick = object()  # the wait for a due save ran out
