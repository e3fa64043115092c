"""TraceStore with spans recorded through Tracing: listing, filters, ids, export and retention."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from engine.errors import GenerationError, NotFoundError
from engine.trace.store import TraceFilter, TraceStore
from engine.trace.tracing import Tracing, fail, trace_id_of

DAY_S = 86400


@pytest.fixture()
def store(tmp_path):
    s = TraceStore(tmp_path / "traces.sqlite3")
    yield s
    s.close()


@pytest.fixture()
def tracing(store):
    t = Tracing(store)
    yield t
    t.shutdown()


def record(
    tracing: Tracing,
    name: str = "ask",
    *,
    task: str = "ask",
    model: str = "smollm2",
    start_s: float | None = None,
    duration_s: float = 0.5,
    error: bool = False,
    attributes: dict | None = None,
) -> str:
    """One request's trace (root -> retrieve, root -> generate -> sample) at ``start_s``; its trace id."""
    t0 = int((time.time() if start_s is None else start_s) * 1e9)
    root = tracing.start(
        name, attributes={"locus.task": task, "gen_ai.request.model": model, **(attributes or {})}, start_time_ns=t0
    )
    trace_id = trace_id_of(root)  # a span stops recording once ended, so read its id first
    retrieve = tracing.start("retrieve", root, {"locus.rag.k": 4}, start_time_ns=t0 + 1_000)
    retrieve.end(end_time=t0 + 2_000)
    generate = tracing.start("generate", root, {"locus.tokens_per_s": 30.0}, start_time_ns=t0 + 3_000)
    generate.add_event("first_token", {"locus.index": 0}, timestamp=t0 + 4_000)
    sample = tracing.start("sample", generate, start_time_ns=t0 + 5_000)
    sample.end(end_time=t0 + 6_000)
    if error:
        fail(generate, GenerationError("The model stopped answering."))
    generate.end(end_time=t0 + int(duration_s * 1e9) - 1_000)
    root.end(end_time=t0 + int(duration_s * 1e9))
    return trace_id


def test_list_and_filter(tracing, store):
    now = time.time()
    old = record(tracing, task="ask", model="smollm2", start_s=now - 3600)
    report = record(
        tracing,
        "summarize",
        task="summarize",
        model="qwen",
        start_s=now - 1800,
        duration_s=2.0,
        attributes={"locus.summary": "Summary of the quarterly report"},
    )
    broken = record(tracing, task="ask", model="qwen", start_s=now - 60, error=True)
    zebra = record(
        tracing,
        task="ask",
        model="smollm2",
        start_s=now - 10,
        attributes={"gen_ai.prompt": "Why does the zebra have 100% stripes?"},
    )
    assert tracing.flush()

    def ids(**where) -> list[str]:
        return [t.trace_id for t in store.list_traces(TraceFilter(**where))]

    assert ids() == [zebra, broken, report, old]  # newest first
    summary = store.list_traces(TraceFilter(task="summarize"))[0]
    assert (summary.trace_id, summary.name, summary.model, summary.status, summary.n_spans) == (
        report,
        "summarize",
        "qwen",
        "ok",
        4,
    )
    assert summary.duration_s == pytest.approx(2.0)
    assert summary.start == pytest.approx(now - 1800, abs=1e-3)
    assert summary.summary == "Summary of the quarterly report"

    assert ids(since=now - 2000) == [zebra, broken, report]
    assert ids(since=now - 2000, until=now - 30) == [broken, report]
    assert ids(until=now - 3000) == [old]
    assert ids(task="ask") == [zebra, broken, old]
    assert ids(model="qwen") == [broken, report]
    assert ids(task="ask", model="qwen") == [broken]
    assert ids(status="error") == [broken]
    assert ids(status="ok") == [zebra, report, old]
    assert ids(text="zebra") == [zebra]  # an attribute of the root
    assert ids(text="quarterly") == [report]  # the summary
    assert ids(text="100%") == [zebra]  # % and _ are literal, not wildcards
    assert ids(text="1_0") == []
    assert ids(text="sample") == [zebra, broken, report, old]  # a span name
    assert ids(text=broken[:12]) == [broken]  # an id
    assert ids(limit=2) == [zebra, broken]
    assert store.distinct("model") == ["qwen", "smollm2"]
    assert store.summary(broken[:10]).status == "error"


def test_trace_by_id_or_prefix(tracing, store):
    trace_ids = [record(tracing, start_s=time.time() - i) for i in range(17)]
    assert tracing.flush()
    target = trace_ids[0]

    spans = store.trace(target[:8])
    assert [s.name for s in spans] == ["ask", "retrieve", "generate", "sample"]  # start order
    assert {s.trace_id for s in spans} == {target}
    assert store.trace(target.upper()) == spans
    assert store.resolve(f"  {target[:10]} ") == target

    # 17 random ids over 16 hex digits: at least two share their first one.
    first = [t[0] for t in trace_ids]
    shared = next(c for c in first if first.count(c) > 1)
    with pytest.raises(NotFoundError, match="More than one trace starts with") as ambiguous:
        store.trace(shared)
    assert ambiguous.value.hint == "Give more of the id."

    with pytest.raises(NotFoundError, match="No trace has the id") as missing:
        store.trace("0" * 32)  # the invalid all-zero id: OpenTelemetry never generates it
    assert "retention" in missing.value.hint
    for bad in ("", "not-an-id"):
        with pytest.raises(NotFoundError, match="is not a trace id"):
            store.trace(bad)


def test_export_is_json_and_rebuilds_the_span_tree(tracing, store):
    trace_id = record(tracing, error=True, attributes={"locus.sources": ["a.pdf", "b.md"]})
    assert tracing.flush()

    document = json.loads(json.dumps(store.export(trace_id[:8])))
    assert (document["format"], document["trace_id"], document["status"]) == ("locus-trace/1", trace_id, "error")
    assert document["duration_s"] == pytest.approx(0.5)
    by_id = {s["span_id"]: s for s in document["spans"]}
    children: dict[str | None, list[str]] = {}
    for span in document["spans"]:
        children.setdefault(span["parent_span_id"], []).append(span["span_id"])

    def tree(span_id: str):
        return (by_id[span_id]["name"], [tree(c) for c in children.get(span_id, [])])

    (root_id,) = children[None]
    assert tree(root_id) == ("ask", [("retrieve", []), ("generate", [("sample", [])])])

    root, generate = by_id[root_id], next(s for s in document["spans"] if s["name"] == "generate")
    assert root["attributes"]["locus.sources"] == ["a.pdf", "b.md"]
    assert root["end_time_unix_nano"] - root["start_time_unix_nano"] == 500_000_000
    assert generate["status"] == {"code": "error", "message": "The model stopped answering."}
    assert generate["attributes"]["error.type"] == "generation_failed"
    assert generate["events"] == [
        {"name": "first_token", "time_ns": root["start_time_unix_nano"] + 4_000, "attributes": {"locus.index": 0}}
    ]


def test_retention_by_age_deletes_old_traces_metrics_and_observations(tracing, store):
    now = time.time()
    old = record(tracing, start_s=now - 40 * DAY_S)
    recent = record(tracing, start_s=now - 2 * DAY_S)
    fresh = record(tracing)
    assert tracing.flush()
    store.add_metrics([(now - 40 * DAY_S, "process.rss_bytes", 1e8), (now - 60, "process.rss_bytes", 2e8)])
    store.add_observation("question", ts=now - 40 * DAY_S, vector=np.ones(4, dtype=np.float32))
    store.add_observation("question", ts=now - 60, vector=np.zeros(4, dtype=np.float32), detail={"n": 1})

    assert store.apply_retention(max_age_days=30, max_bytes=None) == 1
    assert [t.trace_id for t in store.list_traces()] == [fresh, recent]
    with pytest.raises(NotFoundError):
        store.trace(old)
    assert len(store.trace(recent)) == 4
    assert store.metrics("process.rss_bytes") == [(now - 60, 2e8)]
    (kept,) = store.observations("question")
    assert kept.ts == now - 60 and kept.detail == {"n": 1} and kept.vector.tolist() == [0.0] * 4

    assert store.apply_retention(max_age_days=30, max_bytes=None) == 0  # nothing more to do


def test_retention_by_size_deletes_oldest_first(tracing, store):
    now = time.time()
    ids = [record(tracing, start_s=now - 100 + i) for i in range(5)]  # oldest first
    assert tracing.flush()
    total = store.size_bytes()
    each = total / 5

    assert store.apply_retention(max_age_days=None, max_bytes=total) == 0
    assert store.apply_retention(max_age_days=None, max_bytes=int(total - 1.5 * each)) == 2
    assert [t.trace_id for t in store.list_traces()] == ids[:1:-1]
    assert store.size_bytes() <= int(total - 1.5 * each)
    assert store.count() == 3
    for gone in ids[:2]:
        with pytest.raises(NotFoundError):
            store.trace(gone)


# Deleting what a user deleted ------------------------------------------------------------------


def raw_bytes(store: TraceStore) -> bytes:
    """The database, its write-ahead log and shared memory, as they are on disk."""
    return b"".join(p.read_bytes() for p in store.path.parent.glob(store.path.name + "*"))


def test_forgetting_a_conversation_deletes_its_traces_and_leaves_no_text_in_the_files(tracing, store):
    mine = [
        record(tracing, attributes={"gen_ai.conversation.id": 7, "locus.question": f"walrus-{n} secret plan"})
        for n in range(3)
    ]
    other = record(tracing, attributes={"gen_ai.conversation.id": 8, "locus.question": "an unrelated question"})
    store.add_observation("question", trace_id=mine[0], detail={"question": "walrus-0 secret plan"})
    assert tracing.flush()
    assert b"walrus-" in raw_bytes(store)

    assert store.forget_conversation(7) == 3
    assert [t.trace_id for t in store.list_traces()] == [other]
    assert store.observations("question") == []
    assert b"walrus-" not in raw_bytes(store)  # not in the database, its free pages nor its log
    assert store.forget_conversation(7) == 0


def test_spans_of_a_deleted_conversation_that_arrive_late_are_dropped(tracing, store):
    # An answer is still running when its conversation is deleted: its root (and the spans under it, and
    # its monitoring observation) end afterwards, and must not bring its text back.
    root = tracing.start("ask", attributes={"gen_ai.conversation.id": 9, "locus.question": "late narwhal"})
    trace_id = trace_id_of(root)
    early = tracing.start("retrieve", root, {"locus.retrieval.query": "late narwhal"})
    early.end()
    assert tracing.flush()
    assert store.list_traces()[0].conversation_id == 9  # linked by a child span: the root is not there yet

    assert store.forget_conversation(9) == 1
    generation = tracing.start("chat smollm2", root)
    assert generation.attributes["gen_ai.conversation.id"] == 9  # every span carries its conversation
    tracing.content(generation, "locus.response", "the late narwhal answer")
    generation.end()
    root.end()
    store.add_observation("answer_support", trace_id=trace_id, detail={"unsupported": ["late narwhal"]})
    # A new request of the same (deleted) conversation, whose root comes last: dropped as it arrives.
    again = tracing.start("ask", attributes={"gen_ai.conversation.id": 9, "locus.question": "narwhal again"})
    tracing.start("retrieve", again).end()
    again.end()
    other = record(tracing, attributes={"gen_ai.conversation.id": 10})
    assert tracing.flush()
    assert [t.trace_id for t in store.list_traces()] == [other]
    assert store.observations("answer_support") == []
    assert b"narwhal" not in raw_bytes(store)


def test_forgetting_documents_deletes_the_requests_that_quoted_them(tracing, store):
    gone, kept = "a1b2c3d4e5f6a7b8c9d0", "ffffeeeeddddccccbbbb"
    quoted = record(tracing, attributes={"gen_ai.conversation.id": 3})
    # A request that retrieved a chunk of the removed document: its passage text is in several spans.
    root = tracing.start("ask", attributes={"gen_ai.conversation.id": 4, "locus.question": "the kiwi?"})
    asked = trace_id_of(root)
    retrieve = tracing.start("retrieve", root, {"locus.retrieval.chunk_ids": [f"{gone}-0a1b2c3d4e-0"]})
    tracing.content(retrieve, "locus.retrieval.passages", [{"text": "the kiwi orchard ledger", "number": 1}])
    retrieve.end()
    root.end()
    unrelated = record(tracing, attributes={"locus.retrieval.chunk_ids": [f"{kept}-0a1b2c3d4e-0"]})
    # An indexing run of both documents: only the removed one's file span goes.
    index = tracing.start("index", attributes={"locus.task": "index", "locus.index.paths": ["/docs"]})
    indexed = trace_id_of(index)
    for doc in (gone, kept):
        tracing.start(
            "index_file",
            index,
            {
                "locus.document.id": doc,
                "locus.document.path": f"/docs/{doc}.md",
                "locus.document.title": "kiwi orchard" if doc == gone else "x",
            },
        ).end()
    index.end()
    assert tracing.flush()
    assert b"kiwi orchard" in raw_bytes(store)

    assert store.forget_documents([gone]) == 1
    assert {t.trace_id for t in store.list_traces()} == {quoted, unrelated, indexed}
    files = [s for s in store.trace(indexed) if s.name == "index_file"]
    assert [s.attributes["locus.document.id"] for s in files] == [kept]
    assert next(t for t in store.list_traces() if t.trace_id == indexed).n_spans == 2
    assert asked not in {t.trace_id for t in store.list_traces()}
    assert b"kiwi orchard" not in raw_bytes(store)


def test_a_store_from_before_deletes_opens_with_everything_kept(tmp_path):
    """The upgrade adds the tables and indexes deletes need; every trace, span and observation stays."""
    import sqlite3

    path = tmp_path / "traces.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(OLD_SCHEMA)
    db.execute(
        "INSERT INTO spans VALUES ('00c1','51',NULL,'ask','internal',1,2,'ok','',?,'[]',10)",
        (json.dumps({"gen_ai.conversation.id": 5, "locus.question": "old question"}),),
    )
    db.execute(
        "INSERT INTO traces(trace_id, name, status, start_ns, end_ns, conversation_id, n_spans) "
        "VALUES ('00c1','ask','ok',1,2,5,1)"
    )
    db.execute("INSERT INTO observations VALUES (1.0,'question','00c1',0.5,NULL,'{}')")
    db.commit()
    db.close()

    store = TraceStore(path)
    try:
        assert [t.trace_id for t in store.list_traces()] == ["00c1"]
        assert store.trace("00c1")[0].attributes["locus.question"] == "old question"
        assert len(store.observations("question")) == 1
        assert store.forget_conversation(5) == 1 and store.count() == 0
    finally:
        store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 2
    db.close()


# The schema as it was before deletes reached the trace store (user_version 0).
OLD_SCHEMA = """
CREATE TABLE spans (trace_id TEXT NOT NULL, span_id TEXT NOT NULL, parent_id TEXT, name TEXT NOT NULL,
    kind TEXT NOT NULL, start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL, status TEXT NOT NULL,
    status_message TEXT, attributes TEXT NOT NULL, events TEXT NOT NULL, size_bytes INTEGER NOT NULL,
    PRIMARY KEY (trace_id, span_id));
CREATE TABLE traces (trace_id TEXT PRIMARY KEY, name TEXT, task TEXT, model TEXT, status TEXT NOT NULL,
    start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL, ttft_s REAL, tokens_per_s REAL, input_tokens INTEGER,
    output_tokens INTEGER, conversation_id INTEGER, summary TEXT NOT NULL DEFAULT '',
    n_spans INTEGER NOT NULL DEFAULT 0, size_bytes INTEGER NOT NULL DEFAULT 0);
CREATE INDEX traces_by_start ON traces(start_ns);
CREATE TABLE metrics (ts REAL NOT NULL, name TEXT NOT NULL, value REAL NOT NULL);
CREATE INDEX metrics_by_name ON metrics(name, ts);
CREATE TABLE observations (ts REAL NOT NULL, kind TEXT NOT NULL, trace_id TEXT, value REAL, vector BLOB,
    detail TEXT NOT NULL DEFAULT '{}');
CREATE INDEX observations_by_kind ON observations(kind, ts);
"""
