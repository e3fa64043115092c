"""What the trace store holds and answers with: spans, trace summaries, filters, observations (plain data)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class SpanRecord:
    """One stored span, as the viewer and the CLI see it."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    kind: str
    start_ns: int
    end_ns: int
    status: str
    status_message: str
    attributes: dict
    events: list

    @property
    def duration_s(self) -> float:
        return max(0, self.end_ns - self.start_ns) / 1e9

    def to_dict(self) -> dict:
        return {
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "parent_span_id": self.parent_id,
            "name": self.name,
            "kind": self.kind,
            "start_time_unix_nano": self.start_ns,
            "end_time_unix_nano": self.end_ns,
            "duration_s": round(self.duration_s, 6),
            "status": {"code": self.status, "message": self.status_message},
            "attributes": self.attributes,
            "events": self.events,
        }


@dataclass(frozen=True)
class TraceSummary:
    """One row of the trace list."""

    trace_id: str
    name: str
    task: str
    model: str
    status: str
    start: float  # seconds since the epoch
    duration_s: float
    ttft_s: float | None
    tokens_per_s: float | None
    input_tokens: int | None
    output_tokens: int | None
    conversation_id: int | None
    summary: str
    n_spans: int


@dataclass(frozen=True)
class TraceFilter:
    """What the trace list shows: a time range, exact task/model/status, free text, newest first."""

    since: float | None = None
    until: float | None = None
    task: str | None = None
    model: str | None = None
    status: str | None = None
    text: str | None = None
    limit: int = 500


@dataclass(frozen=True)
class Observation:
    ts: float
    kind: str
    trace_id: str | None
    value: float | None
    vector: np.ndarray | None
    detail: dict = field(default_factory=dict)
