"""Reading stored traces for people (the trace window and `locus traces`): plain functions, no widgets.

The viewer must cope with traces of any age and any capture setting, so every
lookup here tolerates missing or malformed attributes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from engine.trace.store import SpanRecord

# Where the content of a request is kept (present only when content capture was on).
PROMPT = "locus.prompt"
MESSAGES = "gen_ai.input.messages"
RESPONSE = "locus.response"
PASSAGES = "locus.retrieval.passages"


@dataclass(frozen=True)
class SpanNode:
    """A span with its children, in start order, and where it sits on the trace's timeline."""

    span: SpanRecord
    children: tuple[SpanNode, ...]
    offset: float  # start, as a fraction of the trace's duration
    width: float  # duration, as a fraction of the trace's duration
    orphan: bool = False  # its parent is not stored (yet): still running, or lost


@dataclass(frozen=True)
class TraceContent:
    """The request's prompt, answer and retrieved passages, wherever in the trace they were recorded."""

    prompt: str | None = None
    response: str | None = None
    passages: list[dict] = field(default_factory=list)
    prompt_span: str | None = None  # the span id each came from
    response_span: str | None = None
    passages_span: str | None = None


def build_tree(spans: Sequence[SpanRecord]) -> list[SpanNode]:
    """The spans as a forest: roots first in start order; a span whose parent is missing is a root too."""
    if not spans:
        return []
    start = min(s.start_ns for s in spans)
    total = max(max(s.end_ns for s in spans) - start, 1)
    by_id = {s.span_id: s for s in spans}
    children: dict[str | None, list[SpanRecord]] = {}
    for s in spans:
        parent = s.parent_id if s.parent_id in by_id else None
        children.setdefault(parent, []).append(s)

    def node(s: SpanRecord, seen: frozenset[str]) -> SpanNode:
        kids = sorted(children.get(s.span_id, []), key=lambda c: (c.start_ns, c.span_id))
        return SpanNode(
            s,
            tuple(node(c, seen | {s.span_id}) for c in kids if c.span_id not in seen),
            (s.start_ns - start) / total,
            max(0, s.end_ns - s.start_ns) / total,
            orphan=s.parent_id is not None and s.parent_id not in by_id,
        )

    roots = sorted(children.get(None, []), key=lambda s: (s.start_ns, s.span_id))
    return [node(s, frozenset()) for s in roots]


def walk(nodes: Sequence[SpanNode]):
    """Every node, depth first, parents before their children."""
    for n in nodes:
        yield n
        yield from walk(n.children)


def span_state(span: SpanRecord) -> str:
    """'error', 'cancelled' or 'ok': what colour the span is drawn in."""
    if span.status == "error":
        return "error"
    attributes = span.attributes or {}
    reasons = attributes.get("gen_ai.response.finish_reasons") or ()
    if attributes.get("locus.cancelled") or (isinstance(reasons, (list, tuple)) and "cancelled" in reasons):
        return "cancelled"
    return "ok"


def trace_content(spans: Sequence[SpanRecord], prefer: str | None = None) -> TraceContent:
    """The prompt, response and passages of a trace, taken from span ``prefer`` where it has them."""
    ordered = sorted(spans, key=lambda s: (s.span_id != prefer, s.start_ns))
    prompt = response = None
    prompt_span = response_span = passages_span = None
    passages: list[dict] = []
    for s in ordered:
        a = s.attributes or {}
        if prompt is None and (text := _prompt_text(a)):
            prompt, prompt_span = text, s.span_id
        if response is None and isinstance(a.get(RESPONSE), str):
            response, response_span = a[RESPONSE], s.span_id
        if not passages and (found := passages_of(a)):
            passages, passages_span = found, s.span_id
    return TraceContent(prompt, response, passages, prompt_span, response_span, passages_span)


def _prompt_text(attributes: dict) -> str | None:
    if isinstance(attributes.get(PROMPT), str):
        return attributes[PROMPT]
    messages = parse_json(attributes.get(MESSAGES))
    if isinstance(messages, list) and messages:
        parts = []
        for m in messages:
            if isinstance(m, dict):
                content = m.get("content")
                if isinstance(content, list):  # GenAI "parts": [{"type": "text", "content": ...}]
                    content = "\n".join(str(p.get("content", "")) if isinstance(p, dict) else str(p) for p in content)
                parts.append(f"[{m.get('role', '?')}]\n{content}")
            else:
                parts.append(str(m))
        return "\n\n".join(parts)
    return None


def passages_of(attributes: dict) -> list[dict]:
    """Retrieved passages: the captured JSON list, else what the id/source/score lists say."""
    parsed = parse_json(attributes.get(PASSAGES))
    if isinstance(parsed, list) and parsed:
        return [p if isinstance(p, dict) else {"text": str(p)} for p in parsed]
    sources = _as_list(attributes.get("locus.retrieval.sources"))
    scores = _as_list(attributes.get("locus.retrieval.scores"))
    chunk_ids = _as_list(attributes.get("locus.retrieval.chunk_ids"))
    n = max(len(sources), len(scores), len(chunk_ids))
    return [
        {
            "number": i + 1,
            "title": sources[i] if i < len(sources) else "",
            "score": scores[i] if i < len(scores) else None,
            "chunk_ids": [chunk_ids[i]] if i < len(chunk_ids) else [],
        }
        for i in range(n)
    ]


def _as_list(value) -> list:
    if isinstance(value, (list, tuple)):
        return list(value)
    parsed = parse_json(value)
    return parsed if isinstance(parsed, list) else []


def parse_json(value):
    """A JSON string's value, or None (never raises)."""
    if not isinstance(value, str) or value[:1] not in ("[", "{"):
        return None
    try:
        return json.loads(value)
    except ValueError:
        return None


def format_value(value, limit: int | None = None) -> str:
    """An attribute value as text: JSON strings pretty-printed, lists joined; cut at ``limit`` characters."""
    parsed = parse_json(value)
    if parsed is not None:
        text = (
            json.dumps(parsed, ensure_ascii=False, indent=2)
            if limit is None
            else json.dumps(parsed, ensure_ascii=False)
        )
    elif isinstance(value, (list, tuple)):
        text = ", ".join(str(v) for v in value)
    elif isinstance(value, float):
        text = f"{value:.4g}"
    else:
        text = str(value)
    if limit is not None:
        text = " ".join(text.split())
        if len(text) > limit:
            text = text[: limit - 1] + "…"
    return text


def format_duration(seconds: float | None) -> str:
    """'850 µs', '12.3 ms', '4.56 s', '2 min 5 s'."""
    if seconds is None:
        return ""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    if seconds < 120:
        return f"{seconds:.2f} s"
    return f"{int(seconds // 60)} min {int(seconds % 60)} s"


def downsample(points: Sequence[tuple[float, float]], most: int = 600) -> list[tuple[float, float]]:
    """At most ``most`` points: the mean of each of ``most`` equal runs (charts need no more)."""
    if len(points) <= most:
        return list(points)
    step = len(points) / most
    out = []
    for i in range(most):
        run = points[int(i * step) : max(int((i + 1) * step), int(i * step) + 1)]
        out.append((sum(p[0] for p in run) / len(run), sum(p[1] for p in run) / len(run)))
    return out


def histogram(values: Sequence[float], bins: int = 10, low: float = 0.0, high: float = 1.0) -> list[int]:
    """Counts of ``values`` in ``bins`` equal bins over [low, high] (values outside go to the end bins)."""
    counts = [0] * bins
    width = (high - low) / bins or 1.0
    for v in values:
        counts[min(bins - 1, max(0, int((v - low) / width + 1e-9)))] += 1  # 0.6 is in [0.6, 0.7)
    return counts
