"""Admission order for waiting requests: by priority, first come first served within one.

``Scheduling`` names the runtime's policies, so benchmarks can compare them honestly:

- ``batch``: priorities, continuous batching of up to n_parallel requests, and a waiting
  request may preempt running ones of lower priority (their KV state is saved, they resume later).
- ``serial``: priorities, one request at a time, no preemption (the runtime before batching).
- ``fcfs``: arrival order, one request at a time (first come, first served).
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from engine.errors import EngineError, GenerationError, ModelNotLoadedError
from engine.runtime.generator import Generator, wrap_unexpected
from engine.runtime.handles import RequestHandle

if TYPE_CHECKING:
    from engine.trace.generation import GenerationSpan
from engine.runtime.sequence import Sequence
from engine.runtime.types import Done, Failed, GenerationStats

log = logging.getLogger(__name__)

Scheduling = Literal["batch", "serial", "fcfs"]
SCHEDULING: tuple[str, ...] = ("batch", "serial", "fcfs")


@dataclass(order=True)
class _Entry:
    priority: int
    arrival: int
    item: object = field(compare=False)


class WaitQueue:
    """Requests waiting for a slot; ``peek``/``pop`` give the next to admit."""

    def __init__(self, by_priority: bool = True):
        self.by_priority = by_priority
        self._heap: list[_Entry] = []
        self._arrivals = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, item, priority: int, arrival: int | None = None) -> int:
        """Queue ``item``; returns its arrival number (pass it back when requeueing, to keep its place)."""
        arrival = next(self._arrivals) if arrival is None else arrival
        heapq.heappush(self._heap, _Entry(priority if self.by_priority else 0, arrival, item))
        return arrival

    def peek(self):
        return self._heap[0].item if self._heap else None

    def pop(self):
        return heapq.heappop(self._heap).item

    def remove_where(self, predicate) -> list:
        """Take out every waiting item for which ``predicate`` holds (cancelled ones); returns them in order."""
        gone = [e for e in self._heap if predicate(e.item)]
        if gone:
            self._heap = [e for e in self._heap if not predicate(e.item)]
            heapq.heapify(self._heap)
        return [e.item for e in sorted(gone)]

    def drain(self) -> list:
        items = [e.item for e in sorted(self._heap)]
        self._heap.clear()
        return items


@dataclass(eq=False)
class Work:
    """A submitted request on the runtime thread: waiting, running, or preempted."""

    handle: RequestHandle
    arrival: int = 0
    seq: Sequence | None = None  # built when it first reaches the head of the queue
    span: GenerationSpan | None = None  # its generation span, opened when it starts
    vetted: str | None = None  # the model its grammar was checked against

    @property
    def request_id(self) -> int:
        return self.handle.request_id

    @property
    def started(self) -> bool:
        return self.span is not None


class Scheduler:
    """Which waiting request starts next, and when one must make room for another.

    The runtime thread calls it between decode steps; ``start``, ``fail`` and ``end`` (the
    runtime's) open a request's span and tell its caller how it went. ``vet`` (the runtime's) says
    whether a request's grammar may be built for the model: True, False when it has gone to be
    checked (it comes back through ``requeue``), or raises the check's error.
    """

    def __init__(
        self,
        scheduling: Scheduling,
        *,
        start: Callable[[Work], None],
        fail: Callable[[Work, EngineError], None],
        end: Callable[[Work, Done | Failed], None],
        on_finish: Callable[[Sequence], None],
        vet: Callable[[Work, Generator], bool] | None = None,
    ):
        self.scheduling = scheduling
        self.waiting = WaitQueue(by_priority=scheduling != "fcfs")
        self.running: dict[int, Work] = {}  # started and not finished, preempted ones included
        self._start, self._fail, self._end, self._on_finish = start, fail, end, on_finish
        self._vet = vet

    def add(self, handle: RequestHandle) -> None:
        work = Work(handle)
        work.arrival = self.waiting.push(work, int(handle.request.priority))

    def requeue(self, work: Work, error: EngineError | None) -> None:
        """A request whose grammar was being checked comes back: in its old place, or failed with ``error``."""
        if error is not None:
            self._end(work, Failed(work.request_id, error))
        else:
            self.waiting.push(work, int(work.handle.request.priority), work.arrival)

    @property
    def preempted(self) -> bool:
        """Whether a started request waits to resume (its saved cache belongs to the current model)."""
        return any(w.seq is not None and w.seq.slot is None for w in self.running.values())

    def sweep_cancelled(self) -> None:
        """Requests cancelled while they wait end at once (preempted ones with what they had said)."""
        for work in self.waiting.remove_where(lambda w: w.handle.cancelled):
            if work.started:
                work.seq.finish("cancelled")
            else:
                self._end(work, Done(work.request_id, "", GenerationStats(finish_reason="cancelled")))

    def admit(self, gen: Generator | None, no_model: str, resume_only: bool = False) -> None:
        """Start waiting requests, best first, while the batch has room; the first that must wait stops it."""
        while len(self.waiting):
            work = self.waiting.peek()
            if gen is None:
                self.waiting.pop()
                self._end(
                    work, Failed(work.request_id, ModelNotLoadedError(no_model, hint="Choose a model in Settings."))
                )
                continue
            if resume_only:
                self._resume_preempted(gen)
                return
            if work.seq is None and not self._build(gen, work):
                self.waiting.pop()
                continue
            if not self._place(gen, work):
                return
            self.waiting.pop()
            self.running[work.request_id] = work  # first, so that however it ends its caller hears
            if not work.started:
                self._start(work)

    def _resume_preempted(self, gen: Generator) -> None:
        """While a new model waits to load, only preempted requests go on (best first, as room allows),
        whatever waits ahead of them: the load waits for them, so they must not wait for the load."""
        preempted = self.waiting.remove_where(lambda w: w.started)
        for i, work in enumerate(preempted):
            try:
                admitted = gen.batcher.admit(work.seq)
            except BaseException:
                for rest in preempted[i:]:  # none is lost: the failure handling finds them queued
                    self.waiting.push(rest, rest.seq.priority, rest.arrival)
                raise
            if not admitted:  # (a preempted request never left ``running``)
                self.waiting.push(work, work.seq.priority, work.arrival)

    def _build(self, gen: Generator, work: Work) -> bool:
        handle = work.handle
        try:
            if self._vet is not None and not self._vet(work, gen):
                return False  # its grammar is being checked elsewhere; requeue() brings it back
            work.seq = gen.sequence(
                handle.request, handle._cancel, handle._emit, handle.submitted_at, on_finish=self._on_finish
            )
        except BaseException as exc:  # noqa: BLE001 - a bad request (template, grammar) fails alone
            self._start(work)
            self._fail(work, wrap_unexpected(exc))
            return False
        return True

    def _place(self, gen: Generator, work: Work) -> bool:
        """Admit the work's sequence, preempting lower-priority ones when that makes room (batch mode)."""
        batcher, seq = gen.batcher, work.seq
        if seq is None:  # (_start makes it first)
            raise RuntimeError(f"request {work.request_id} has no sequence to place")
        if batcher.admit(seq):
            return True
        if self.scheduling != "batch" or gen.slots.waits_for_own_turn(seq):
            return False  # (its conversation's previous turn needs one more step: preempting would not help)
        victims = batcher.victims(seq)
        if not victims or not batcher.could_fit(seq, victims):
            return False
        for victim in victims:
            batcher.preempt(victim)
            victim_work = self.running[victim.request_id]
            self.waiting.push(victim_work, victim.priority, victim_work.arrival)
            log.info("request %s preempted for %s", victim.request_id, seq.request_id)
            if batcher.admit(seq):
                return True
        return False

    def unschedulable(self) -> None:
        """Nothing runs, yet the head of the queue could not start: it never will. (Cannot happen while
        the cache accounting holds; this keeps a bug from spinning the runtime thread forever.)"""
        work = self.waiting.peek()
        self.fail_head(
            GenerationError(
                "The request could not be scheduled.", detail=f"request {work.request_id} did not fit an empty context"
            )
        )

    def fail_head(self, error: EngineError) -> None:
        """End the request at the head of the queue with ``error``."""
        work = self.waiting.pop()
        if work.started:
            work.seq.fail(error)
        else:
            self._end(work, Failed(work.request_id, error))

    def rebuild(self) -> None:
        """A new model is loaded: prompts built for the old one are built again when their turn comes."""
        for work in self.waiting.drain():
            if work.seq is not None:
                work.seq.sampler.close()
                work.seq = None
            self.waiting.push(work, int(work.handle.request.priority), work.arrival)

    def stop(self, error: EngineError) -> None:
        """The runtime stops: preempted requests end as cancelled, waiting ones fail with ``error``."""
        for work in self.waiting.drain():
            if work.started:
                work.seq.finish("cancelled")
            else:
                self._end(work, Failed(work.request_id, error))
