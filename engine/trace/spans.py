"""The spans of a question: its root (``ask``), retrieval and its stages, and the root's outcome.

Retrieval times its own stages (embed, vector search, text search, fuse) one
after another, so its spans are laid out from those timings once it returns:
engine/rag stays free of tracing, and a failed retrieval still gets its span.
"""

from __future__ import annotations

import time

from opentelemetry.trace import Span

from engine.runtime.types import Done, Failed
from engine.trace.tracing import Tracing, fail, set_attributes

_STAGES = (("embed", "embed_query"), ("vector_search", "vector_search"), ("text_search", "text_search"),
           ("fuse", "fuse"))


def start_ask(tracing: Tracing, question: str, conversation_id: int | None, model: str | None,
              uses_documents: bool) -> Span:
    """The root span of one question (chat or from documents)."""
    span = tracing.start("ask", attributes={
        "locus.task": "doc_qa" if uses_documents else "chat",
        "gen_ai.operation.name": "chat",
        "gen_ai.conversation.id": conversation_id,
        "gen_ai.request.model": model,
    })
    tracing.content(span, "locus.summary", question[:300])
    tracing.content(span, "locus.question", question)
    return span


def record_retrieval(tracing: Tracing, parent: Span, retrieval, start_ns: int, collections) -> Span:
    """The ``retrieve`` span and its stages, placed from the retrieval's own timings."""
    span = tracing.start("retrieve", parent, start_time_ns=start_ns)
    if not span.is_recording():
        return span
    passages = retrieval.passages
    set_attributes(span, {
        "locus.retrieval.collections": [str(c) for c in collections] if collections else ["(all)"],
        "locus.retrieval.vector_hits": retrieval.vector_hits,
        "locus.retrieval.text_hits": retrieval.text_hits,
        "locus.retrieval.passages_count": len(passages),
        "locus.retrieval.chunk_ids": [c for p in passages for c in p.chunk_ids],
        "locus.retrieval.sources": [", ".join(x for x in (p.title or p.path, p.location()) if x) for p in passages],
        "locus.retrieval.scores": [round(p.score, 6) for p in passages],
        "locus.retrieval.similarities": [round(p.similarity, 4) for p in passages],
        "locus.retrieval.top_similarity": retrieval.top_similarity,
    })
    tracing.content(span, "locus.retrieval.query", retrieval.query)
    tracing.content(span, "locus.retrieval.passages", [
        {"number": n, "title": p.title, "path": p.path, "location": p.location(), "collection": p.collection,
         "score": p.score, "similarity": p.similarity, "chunk_ids": list(p.chunk_ids), "text": p.text}
        for n, p in enumerate(passages, start=1)])
    at = start_ns
    for key, name in _STAGES:
        seconds = retrieval.timings.get(key)
        if seconds is None:
            continue
        child = tracing.start(name, span, start_time_ns=at)
        at += int(seconds * 1e9)
        child.end(end_time=at)
    span.end(end_time=max(at, time.time_ns()))
    return span


def retrieval_failed(tracing: Tracing, parent: Span, start_ns: int, error: BaseException) -> None:
    span = tracing.start("retrieve", parent, start_time_ns=start_ns)
    fail(span, error)
    span.end()


def finish_root(tracing: Tracing, span: Span, event) -> None:
    """End a question's root span with its answer's outcome (Done or Failed)."""
    if not span.is_recording():
        return
    if isinstance(event, Done):
        st = event.stats
        set_attributes(span, {
            "gen_ai.response.finish_reasons": [st.finish_reason],
            "gen_ai.usage.input_tokens": st.prompt_tokens,
            "gen_ai.usage.output_tokens": st.completion_tokens,
            "locus.time_to_first_token_s": st.time_to_first_token_s,
            "locus.tokens_per_s": st.tokens_per_s,
            "locus.prompt.reused_tokens": st.reused_prompt_tokens,
            "locus.cancelled": st.finish_reason == "cancelled",
        })
        tracing.content(span, "locus.response", event.text)
    elif isinstance(event, Failed):
        fail(span, event.error)
    span.end()


def record_citations(tracing: Tracing, span: Span, citations, support) -> None:
    """What the ``cite`` span found: the sources used and how well the answer rests on them."""
    set_attributes(span, {
        "locus.citations.numbers": [c.number for c in citations],
        "locus.citations.explicit": [c.explicit for c in citations],
        "locus.citations.sources": [c.passage.title or c.passage.path for c in citations],
    })
    if support is not None:
        set_attributes(span, {
            "locus.monitor.support": support.support,
            "locus.monitor.unsupported_sentences": support.unsupported,
            "locus.monitor.flagged": support.flagged,
        })
        tracing.content(span, "locus.monitor.sentences", [
            {"text": s.text, "similarity": round(s.similarity, 4), "supported": s.supported}
            for s in support.sentences])



# Indexing ---------------------------------------------------------------------------------

def start_index_job(tracing: Tracing, job) -> Span:
    """The root span of an indexing job (its files become ``index_file`` children)."""
    return tracing.start("index", attributes={
        "locus.task": "index", "locus.index.kind": job.kind, "locus.index.collection": job.collection,
        "locus.index.paths": job.paths[:100], "locus.summary": f"{job.kind} {', '.join(job.paths[:3])}"[:300]})


def finish_index_job(span: Span, result=None, error: BaseException | None = None) -> None:
    """End a job's span with what it did (an IndexFinished), or the error that stopped it."""
    if result is not None:
        p = result.progress
        set_attributes(span, {"locus.index.files": p.files_total, "locus.index.indexed": result.indexed,
                              "locus.index.unchanged": result.unchanged, "locus.index.failed": result.failed,
                              "locus.index.removed": result.removed, "locus.cancelled": result.cancelled,
                              "locus.index.chunks": p.chunks_done, "locus.index.pages": p.pages_done})
    if error is not None:
        fail(span, error)
    span.end()


def start_index_file(tracing: Tracing, parent: Span, record) -> Span:
    """One file's span in an indexing job, from the moment it is queued."""
    return tracing.start("index_file", parent, {
        "locus.document.path": record.path, "locus.document.id": record.doc_id,
        "locus.document.collection": record.collection, "locus.document.size_bytes": record.size})


def finish_index_file(span: Span, record, *, chunks: int = 0, pages: int = 0,
                      error: BaseException | None = None) -> None:
    """End a file's span with its final status (done, failed with the reason, or cancelled)."""
    set_attributes(span, {"locus.document.status": record.status, "locus.document.reason": record.reason or None,
                          "locus.document.kind": record.kind, "locus.document.title": record.title or None,
                          "locus.document.chunks": chunks, "locus.document.pages": pages,
                          "locus.cancelled": record.status == "cancelled"})
    if record.status == "failed" and error is not None:
        fail(span, error)
    span.end()
