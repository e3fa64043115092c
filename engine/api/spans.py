"""The root span of one API request (``api``), so the trace log lists API requests beside chat ones.

The generation span the runtime makes for the request is its child (its context
is the request's ``trace_parent``); the root carries the HTTP route and status,
and the outcome's token counts and timings as a chat question's root does.
"""

from __future__ import annotations

from opentelemetry.trace import Span

from engine.answer import AnswerEnded
from engine.runtime.types import Done, Failed
from engine.trace.spans import AnswerSpan, finish_root
from engine.trace.tracing import Tracing, fail, set_attributes

TASK = "api"


def start_request(tracing: Tracing, method: str, route: str, peer: str) -> Span:
    """The root span of a request that passed the key check, on a known route."""
    return tracing.start(
        "api",
        attributes={
            "locus.task": TASK,
            "http.request.method": method,
            "http.route": route,
            "client.address": peer,
        },
    )


def describe(
    tracing: Tracing, span: Span, *, operation: str, model: str, stream: bool | None = None, summary: str = ""
) -> None:
    """What the request asks for, once its body has been read."""
    set_attributes(
        span, {"gen_ai.operation.name": operation, "gen_ai.request.model": model, "locus.api.stream": stream}
    )
    if summary:
        tracing.content(span, "locus.summary", summary[:300])


def finish_request(
    tracing: Tracing, span: Span, status: int | None, outcome=None, error: BaseException | None = None
) -> None:
    """End the root span with the HTTP status and the generation's outcome (Done/Failed) or the error."""
    set_attributes(span, {"http.response.status_code": status})
    if error is not None and not isinstance(outcome, Done):
        fail(span, error)
        span.end()
    elif isinstance(outcome, (Done, Failed)):
        finish_root(tracing, span, outcome)
    elif isinstance(outcome, AnswerEnded):
        AnswerSpan(tracing, span).finish(outcome)
    else:
        span.end()


def link_answer(span: Span, ended: AnswerEnded) -> None:
    """An answer from documents is traced as an answer of its own (retrieval, generation, citations):
    the request's root names that trace."""
    set_attributes(span, {"locus.api.answer_trace_id": ended.trace_id})
