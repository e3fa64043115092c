"""The spans of an answer and of an indexing job, each stage traced by one wrapper beside the work.

An answer is one trace: ``answer`` opens its root (``ask`` for a question, the task's name for a task)
and ends it with the outcome; ``retrieving`` and ``citing`` wrap those stages. The generation's own span
is the runtime's (engine/trace/generation.py), a child of the root through ``AnswerSpan.context``.

Retrieval times its own stages (embed, vector search, text search, fuse) one after another, so its
spans are laid out from those timings once it returns: engine/rag stays free of tracing, and a failed
retrieval still gets its span.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry.context import Context
from opentelemetry.trace import Span, Status, StatusCode

from engine.answer import AnswerEnded, AnswerStats, Outcome
from engine.runtime.types import Done, Failed
from engine.tools.base import ToolResult
from engine.trace.tracing import Tracing, context_of, fail, set_attributes, trace_id_of

log = logging.getLogger(__name__)

_STAGES = (
    ("embed", "embed_query"),
    ("vector_search", "vector_search"),
    ("text_search", "text_search"),
    ("fuse", "fuse"),
)


class AnswerSpan:
    """The root span of one answer: what its stages hang from, ended once with the answer's outcome."""

    def __init__(self, tracing: Tracing, span: Span):
        self.tracing = tracing
        self.span = span
        self.trace_id: str | None = trace_id_of(span)
        # Handed to the backend: the generation becomes a child, and records no text when this answer does not.
        self.context: Context | None = context_of(span, content=tracing.capture_content)
        self.ended = False

    def flag(self, key: str, value) -> None:
        set_attributes(self.span, {key: value})

    def finish(self, ended: AnswerEnded) -> None:
        """End the root with the answer's outcome, token counts and timings (once)."""
        if self.ended:
            return
        self.ended = True
        st = ended.stats
        set_attributes(
            self.span,
            {
                "gen_ai.response.finish_reasons": [st.finish_reason]
                if st.finish_reason
                else ["cancelled"]
                if ended.cancelled
                else None,
                "gen_ai.usage.input_tokens": st.prompt_tokens,
                "gen_ai.usage.output_tokens": st.completion_tokens,
                "locus.time_to_first_token_s": st.time_to_first_token_s,
                "locus.tokens_per_s": st.tokens_per_s,
                "locus.prompt.reused_tokens": st.reused_prompt_tokens,
                "locus.generations": st.generations,
                "locus.cancelled": ended.cancelled,
            },
        )
        if ended.error is not None:
            fail(self.span, ended.error)
        elif ended.text:
            self.tracing.content(self.span, "locus.response", ended.text)
        self.span.end()

    def abandon(self, error: BaseException) -> None:
        """End the root as failed when the answer could not end normally."""
        if not self.ended:
            self.ended = True
            fail(self.span, error)
            self.span.end()


@contextmanager
def answer(
    tracing: Tracing,
    name: str,
    *,
    task: str,
    conversation_id: int | None,
    backend: str,
    model: str | None,
    summary: str,
    question: str | None = None,
    task_id: int | None = None,
) -> Iterator[AnswerSpan]:
    """The root span of one answer (``name`` "ask" for a question, else the task's name), around all of it;
    ``backend`` is the name of the one that answers ("local", "remote").

    End it with ``finish(ended)``; an exception that leaves the block fails it."""
    attributes = {
        "locus.task": task,
        "gen_ai.conversation.id": conversation_id,
        "locus.backend": backend,
        "gen_ai.request.model": model,
    }
    if question is not None:
        attributes["gen_ai.operation.name"] = "chat"
    if task_id is not None:
        attributes["locus.task_id"] = task_id
    span = tracing.start(name, attributes=attributes)
    if summary:
        tracing.content(span, "locus.summary", summary[:300])
    if question is not None:
        tracing.content(span, "locus.question", question)
    root = AnswerSpan(tracing, span)
    try:
        yield root
    except BaseException as exc:
        root.abandon(exc)
        raise
    finally:
        root.abandon(RuntimeError("the answer ended without an outcome"))


def finish_root(tracing: Tracing, span: Span, event: Done | Failed) -> None:
    """End a root span whose one generation ended with this runtime event (a local API request's root)."""
    if isinstance(event, Done):
        outcome: Outcome = "cancelled" if event.stats.finish_reason == "cancelled" else "complete"
        ended = AnswerEnded(0, outcome, event.text, AnswerStats().plus(event.stats), None)
    else:
        ended = AnswerEnded(0, "failed", "", AnswerStats(), None, event.error)
    AnswerSpan(tracing, span).finish(ended)


class Stage:
    """What a stage found: set ``result`` inside the ``with`` block; its wrapper records it on the way out."""

    result: Any = None


@contextmanager
def retrieving(tracing: Tracing, root: AnswerSpan, collections, *, question: str, monitor=None) -> Iterator[Stage]:
    """The ``retrieve`` span and its stages around finding a question's passages; the monitor also gets
    the question (drift, and whether any document is relevant to it)."""
    start_ns = time.time_ns()
    stage = Stage()
    try:
        yield stage
    except BaseException as exc:
        span = tracing.start("retrieve", root.span, start_time_ns=start_ns)
        fail(span, exc)
        span.end()
        raise
    _record_retrieval(tracing, root.span, stage.result, start_ns, collections)
    _observe_question(tracing, root, monitor, question, stage.result)


def _record_retrieval(tracing: Tracing, parent: Span, retrieval, start_ns: int, collections) -> None:
    """The ``retrieve`` span and its stages, placed from the retrieval's own timings."""
    span = tracing.start("retrieve", parent, start_time_ns=start_ns)
    if not span.is_recording():
        return
    passages = retrieval.passages
    set_attributes(
        span,
        {
            "locus.retrieval.collections": [str(c) for c in collections] if collections else ["(all)"],
            "locus.retrieval.vector_hits": retrieval.vector_hits,
            "locus.retrieval.text_hits": retrieval.text_hits,
            "locus.retrieval.passages_count": len(passages),
            "locus.retrieval.chunk_ids": [c for p in passages for c in p.chunk_ids],
            "locus.retrieval.sources": [", ".join(x for x in (p.title or p.path, p.location()) if x) for p in passages],
            "locus.retrieval.scores": [round(p.score, 6) for p in passages],
            "locus.retrieval.similarities": [round(p.similarity, 4) for p in passages],
            "locus.retrieval.top_similarity": retrieval.top_similarity,
        },
    )
    tracing.content(span, "locus.retrieval.query", retrieval.query)
    tracing.content(
        span,
        "locus.retrieval.passages",
        [
            {
                "number": n,
                "title": p.title,
                "path": p.path,
                "location": p.location(),
                "collection": p.collection,
                "score": p.score,
                "similarity": p.similarity,
                "chunk_ids": list(p.chunk_ids),
                "text": p.text,
            }
            for n, p in enumerate(passages, start=1)
        ],
    )
    at = start_ns
    for key, name in _STAGES:
        seconds = retrieval.timings.get(key)
        if seconds is None:
            continue
        child = tracing.start(name, span, start_time_ns=at)
        at += int(seconds * 1e9)
        child.end(end_time=at)
    span.end(end_time=max(at, time.time_ns()))


def _observe_question(tracing: Tracing, root: AnswerSpan, monitor, question: str, retrieval) -> None:
    """Give the monitor the question's embedding and nearest-chunk similarity (drift, relevance)."""
    if monitor is None or retrieval.query_vector is None:
        return
    try:
        flagged = monitor.record_question(
            question if tracing.capture_content else None,
            retrieval.query_vector,
            retrieval.top_similarity,
            root.trace_id,
        )
    except Exception:  # monitoring must never cost the user their answer
        log.exception("monitor could not record a question")
        return
    root.flag("locus.monitor.no_relevant_documents", bool(flagged))


class CiteStage(Stage):
    """What citing found: the citations (``result``) and how well the answer rests on them (``support``)."""

    support = None


@contextmanager
def citing(tracing: Tracing, root: AnswerSpan) -> Iterator[CiteStage]:
    """The ``cite`` span around working out an answer's sources (and checking its support)."""
    span = tracing.start("cite", root.span)
    stage = CiteStage()
    try:
        yield stage
    except BaseException as exc:
        fail(span, exc)
        raise
    else:
        citations = stage.result or ()
        set_attributes(
            span,
            {
                "locus.citations.numbers": [c.number for c in citations],
                "locus.citations.explicit": [c.explicit for c in citations],
                "locus.citations.sources": [c.passage.title or c.passage.path for c in citations],
            },
        )
        support = stage.support
        if support is not None:
            set_attributes(
                span,
                {
                    "locus.monitor.support": support.support,
                    "locus.monitor.unsupported_sentences": support.unsupported,
                    "locus.monitor.flagged": support.flagged,
                },
            )
            tracing.content(
                span,
                "locus.monitor.sentences",
                [
                    {"text": s.text, "similarity": round(s.similarity, 4), "supported": s.supported}
                    for s in support.sentences
                ],
            )
    finally:
        span.end()


# Tools ------------------------------------------------------------------------------------


def _tool_type(name: str, source: str) -> str:
    """GenAI's gen_ai.tool.type: "datastore" for document search, "extension" for an MCP server's tools
    (they call out of the agent), "function" for the rest."""
    if name == "search_documents":
        return "datastore"
    return "extension" if source.startswith("mcp") else "function"


class ToolStage(Stage):
    """What a tool call came to: its ToolResult (``result``), how it was approved (``approval``: "trusted",
    "read_only", "conversation" remembered, or the user's "once" / "conversation" / "deny")."""

    result: ToolResult | None = None
    approval: str | None = None


@contextmanager
def executing_tool(tracing: Tracing, root: Span | None, call, spec, step: int) -> Iterator[ToolStage]:
    """The ``execute_tool`` span of one tool call (OpenTelemetry GenAI conventions), under the answer's root:
    from the model's asking to the result, approval included. Arguments and result only with content
    capture; a call that did not end "ok" is an error span (error.type its status)."""
    span = tracing.start(
        f"execute_tool {call.name}",
        root,
        {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": call.name,
            "gen_ai.tool.call.id": call.id,
            "gen_ai.tool.type": _tool_type(call.name, spec.source if spec is not None else ""),
            "gen_ai.tool.description": spec.description[:300] if spec is not None and spec.description else None,
            "locus.tool.source": spec.source if spec is not None else None,
            "locus.tool.read_only": spec.read_only if spec is not None else None,
            "locus.agent.step": step,
        },
    )
    tracing.content(span, "gen_ai.tool.call.arguments", call.arguments if call.arguments or not call.raw else call.raw)
    stage = ToolStage()
    began = time.perf_counter()
    try:
        yield stage
    except BaseException as exc:
        fail(span, exc)
        span.end()
        raise
    result = stage.result
    set_attributes(
        span,
        {
            "locus.tool.status": result.status if result else None,
            "locus.tool.approval": stage.approval,
            "locus.tool.duration_s": round(result.duration_s, 6) if result else None,
            "locus.tool.elapsed_s": round(time.perf_counter() - began, 6),
            "locus.tool.truncated": result.truncated if result else None,
            "locus.tool.result_chars": len(result.text) if result else None,
            "locus.cancelled": bool(result and result.status == "cancelled"),
        },
    )
    if result is not None:
        tracing.content(span, "gen_ai.tool.call.result", result.text)
        if result.status != "ok":
            # The error's words may quote the tool's output: kept only where content is.
            words = result.text[:300] if tracing.capture_content else f"the call ended: {result.status}"
            span.set_status(Status(StatusCode.ERROR, words))
            span.set_attribute("error.type", result.status)
    span.end()


# Indexing ---------------------------------------------------------------------------------


def start_index_job(tracing: Tracing, job) -> Span:
    """The root span of an indexing job (its files become ``index_file`` children)."""
    return tracing.start(
        "index",
        attributes={
            "locus.task": "index",
            "locus.index.kind": job.kind,
            "locus.index.collection": job.collection,
            "locus.index.paths": job.paths[:100],
            "locus.summary": f"{job.kind} {', '.join(job.paths[:3])}"[:300],
        },
    )


def finish_index_job(span: Span, result=None, error: BaseException | None = None) -> None:
    """End a job's span with what it did (an IndexFinished), or the error that stopped it."""
    if result is not None:
        p = result.progress
        set_attributes(
            span,
            {
                "locus.index.files": p.files_total,
                "locus.index.indexed": result.indexed,
                "locus.index.unchanged": result.unchanged,
                "locus.index.failed": result.failed,
                "locus.index.removed": result.removed,
                "locus.cancelled": result.cancelled,
                "locus.index.chunks": p.chunks_done,
                "locus.index.pages": p.pages_done,
            },
        )
    if error is not None:
        fail(span, error)
    span.end()


def start_index_file(tracing: Tracing, parent: Span, record) -> Span:
    """One file's span in an indexing job, from the moment it is queued."""
    return tracing.start(
        "index_file",
        parent,
        {
            "locus.document.path": record.path,
            "locus.document.id": record.doc_id,
            "locus.document.collection": record.collection,
            "locus.document.size_bytes": record.size,
        },
    )


def finish_index_file(
    span: Span, record, *, chunks: int = 0, pages: int = 0, error: BaseException | None = None
) -> None:
    """End a file's span with its final status (done, failed with the reason, or cancelled)."""
    set_attributes(
        span,
        {
            "locus.document.status": record.status,
            "locus.document.reason": record.reason or None,
            "locus.document.kind": record.kind,
            "locus.document.title": record.title or None,
            "locus.document.chunks": chunks,
            "locus.document.pages": pages,
            "locus.cancelled": record.status == "cancelled",
        },
    )
    if record.status == "failed" and error is not None:
        fail(span, error)
    span.end()
