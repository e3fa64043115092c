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
from dataclasses import dataclass, field
from typing import Literal

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
