"""The local span store: traces, metrics and monitoring observations in traces.sqlite3.

Spans arrive from the OpenTelemetry exporter (engine/trace/export.py) on its own
thread; the viewer and the CLI read. One connection behind a lock per process,
WAL so that another process (the CLI beside the window) can read at the same
time. A ``traces`` row summarises each trace (its root span's task, model and
timings) so that listing and filtering never parse span JSON.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from engine.errors import EngineError, NotFoundError
from engine.trace.records import Observation, SpanRecord, TraceFilter, TraceSummary

__all__ = ["Observation", "SpanRecord", "TraceFilter", "TraceStore", "TraceStoreError", "TraceSummary"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spans (
    trace_id       TEXT NOT NULL,
    span_id        TEXT NOT NULL,
    parent_id      TEXT,
    name           TEXT NOT NULL,
    kind           TEXT NOT NULL,
    start_ns       INTEGER NOT NULL,
    end_ns         INTEGER NOT NULL,
    status         TEXT NOT NULL,          -- unset, ok, error
    status_message TEXT,
    attributes     TEXT NOT NULL,          -- JSON object
    events         TEXT NOT NULL,          -- JSON list of {name, time_ns, attributes}
    size_bytes     INTEGER NOT NULL,
    PRIMARY KEY (trace_id, span_id)
);
CREATE TABLE IF NOT EXISTS traces (
    trace_id        TEXT PRIMARY KEY,
    name            TEXT,                  -- the root span's name (ask, summarize, index, ...)
    task            TEXT,
    model           TEXT,
    status          TEXT NOT NULL,         -- ok, error, cancelled, running (no root span yet)
    start_ns        INTEGER NOT NULL,
    end_ns          INTEGER NOT NULL,
    ttft_s          REAL,
    tokens_per_s    REAL,
    input_tokens    INTEGER,
    output_tokens   INTEGER,
    conversation_id INTEGER,
    summary         TEXT NOT NULL DEFAULT '',
    n_spans         INTEGER NOT NULL DEFAULT 0,
    size_bytes      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS traces_by_start ON traces(start_ns);
CREATE TABLE IF NOT EXISTS metrics (
    ts    REAL NOT NULL,                   -- seconds since the epoch
    name  TEXT NOT NULL,
    value REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS metrics_by_name ON metrics(name, ts);
CREATE TABLE IF NOT EXISTS observations (
    ts       REAL NOT NULL,
    kind     TEXT NOT NULL,                -- question, answer_support, ...
    trace_id TEXT,
    value    REAL,
    vector   BLOB,                         -- float32, for question embeddings
    detail   TEXT NOT NULL DEFAULT '{}'    -- JSON
);
CREATE INDEX IF NOT EXISTS observations_by_kind ON observations(kind, ts);
CREATE INDEX IF NOT EXISTS traces_by_conversation ON traces(conversation_id);
CREATE INDEX IF NOT EXISTS observations_by_trace ON observations(trace_id);
CREATE TABLE IF NOT EXISTS forgotten (     -- what a delete removed (ids only), so spans still on their way are
    kind TEXT NOT NULL,                    -- dropped when they arrive: 'conversation' or 'trace'
    key  TEXT NOT NULL,
    ts   REAL NOT NULL,
    PRIMARY KEY (kind, key)
);
"""
SCHEMA_VERSION = 2  # 1: before deletes (no forgotten table, no conversation index); the upgrade only adds
CONVERSATION = "gen_ai.conversation.id"
FORGOTTEN_KEEP_S = 86400.0  # a request still running a day after its conversation was deleted is not expected

# Root-span attributes copied into the traces row.
_SUMMARY_ATTRIBUTES = {
    "locus.task": "task",
    "gen_ai.request.model": "model",
    "locus.time_to_first_token_s": "ttft_s",
    "locus.tokens_per_s": "tokens_per_s",
    "gen_ai.usage.input_tokens": "input_tokens",
    "gen_ai.usage.output_tokens": "output_tokens",
    CONVERSATION: "conversation_id",
    "locus.summary": "summary",
}


class TraceStoreError(EngineError):
    """The trace store could not be read or written."""

    code = "trace_store_error"


class TraceStore:
    """Spans, metrics and observations in one SQLite file; safe to share between threads.

    Deleted rows are overwritten with zeros (``secure_delete``) and a delete ends with a checkpoint that
    empties the write-ahead log, so what a delete removed does not linger in the files.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA secure_delete=ON")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise TraceStoreError(
                    f"The trace store {self.path} was written by a newer Locus "
                    f"(schema {version}); this version reads schema {SCHEMA_VERSION}.",
                    hint="Update Locus, or move the file aside to start a new one.",
                )
            self._db.executescript(_SCHEMA)  # every change so far only adds tables and indexes
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            raise TraceStoreError(f"The trace store {self.path} could not be opened.", detail=str(exc)) from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # Writing ------------------------------------------------------------------------

    def add_spans(self, spans: Sequence[SpanRecord]) -> None:
        """Store finished spans and fold them into their traces' summary rows (one transaction)."""
        if not spans:
            return
        rows = []
        for s in spans:
            attributes = json.dumps(s.attributes, ensure_ascii=False, default=str)
            events = json.dumps(s.events, ensure_ascii=False, default=str)
            rows.append(
                (
                    s.trace_id,
                    s.span_id,
                    s.parent_id,
                    s.name,
                    s.kind,
                    s.start_ns,
                    s.end_ns,
                    s.status,
                    s.status_message,
                    attributes,
                    events,
                    len(attributes) + len(events) + 200,
                )
            )
        with self._write() as db:
            dropped = self._forgotten_among(db, spans)
            kept = [(s, row) for s, row in zip(spans, rows, strict=True) if s.trace_id not in dropped]
            db.executemany("INSERT OR REPLACE INTO spans VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", [r for _, r in kept])
            for s, row in kept:
                self._fold(db, s, row[-1])
        if dropped:
            self._checkpoint()

    def _forgotten_among(self, db: sqlite3.Connection, spans: Sequence[SpanRecord]) -> set[str]:
        """Trace ids among ``spans`` that a delete removed (or whose conversation it removed): those
        spans are dropped, and what their traces had already stored goes too."""
        if db.execute("SELECT 1 FROM forgotten LIMIT 1").fetchone() is None:
            return set()
        traces = {s.trace_id for s in spans}
        conversations = {s.trace_id: c for s in spans if (c := _conversation_of(s.attributes)) is not None}
        dropped = {
            r[0]
            for r in _select_in(db, "SELECT key FROM forgotten WHERE kind = 'trace' AND key IN ({})", sorted(traces))
        }
        gone = {
            int(r[0])
            for r in _select_in(
                db,
                "SELECT key FROM forgotten WHERE kind = 'conversation' AND key IN ({})",
                sorted({str(c) for c in conversations.values()}),
            )
        }
        late = {t for t, c in conversations.items() if c in gone} - dropped
        if late:
            self._delete(db, sorted(late), observations=True)
            self._remember(db, "trace", late)
        return dropped | late

    @staticmethod
    def _fold(db: sqlite3.Connection, span: SpanRecord, size: int) -> None:
        db.execute(
            "INSERT INTO traces(trace_id, status, start_ns, end_ns, n_spans, size_bytes) VALUES (?,?,?,?,1,?) "
            "ON CONFLICT(trace_id) DO UPDATE SET start_ns = min(start_ns, excluded.start_ns), "
            "end_ns = max(end_ns, excluded.end_ns), n_spans = n_spans + 1, "
            "size_bytes = size_bytes + excluded.size_bytes",
            (span.trace_id, "running", span.start_ns, span.end_ns, size),
        )
        if span.status == "error":
            db.execute("UPDATE traces SET status = 'error' WHERE trace_id = ?", (span.trace_id,))
        conversation = _conversation_of(span.attributes)
        if conversation is not None:  # any span of a conversation links its trace (the root may never come)
            db.execute("UPDATE traces SET conversation_id = ? WHERE trace_id = ?", (conversation, span.trace_id))
        if span.parent_id is None:  # the root span ends last and carries the summary
            values = {column: span.attributes.get(key) for key, column in _SUMMARY_ATTRIBUTES.items()}
            values["conversation_id"] = conversation
            values["summary"] = str(values["summary"] or "")[:300]
            status = (
                "error" if span.status == "error" else ("cancelled" if span.attributes.get("locus.cancelled") else "ok")
            )
            db.execute(
                "UPDATE traces SET name = :name, task = :task, model = :model, ttft_s = :ttft_s, "
                "tokens_per_s = :tokens_per_s, input_tokens = :input_tokens, output_tokens = :output_tokens, "
                "conversation_id = coalesce(:conversation_id, conversation_id), summary = :summary, "
                "status = CASE WHEN status = 'error' THEN 'error' ELSE :status END WHERE trace_id = :trace_id",
                dict(values, name=span.name, status=status, trace_id=span.trace_id),
            )

    def add_metrics(self, samples: Iterable[tuple[float, str, float]]) -> None:
        """Store (timestamp, name, value) samples."""
        samples = list(samples)
        if samples:
            with self._write() as db:
                db.executemany("INSERT INTO metrics VALUES (?,?,?)", samples)

    def add_observation(
        self,
        kind: str,
        *,
        trace_id: str | None = None,
        value: float | None = None,
        vector: np.ndarray | None = None,
        detail: dict | None = None,
        ts: float | None = None,
    ) -> None:
        blob = None if vector is None else np.asarray(vector, dtype=np.float32).tobytes()
        with self._write() as db:
            if (
                trace_id is not None
                and db.execute("SELECT 1 FROM forgotten WHERE kind = 'trace' AND key = ?", (trace_id,)).fetchone()
            ):
                return  # its request was deleted while it was being answered
            db.execute(
                "INSERT INTO observations VALUES (?,?,?,?,?,?)",
                (
                    time.time() if ts is None else ts,
                    kind,
                    trace_id,
                    value,
                    blob,
                    json.dumps(detail or {}, ensure_ascii=False, default=str),
                ),
            )

    def apply_retention(self, *, max_age_days: float | None, max_bytes: int | None) -> int:
        """Delete traces older than ``max_age_days`` and then the oldest until the spans take at most
        ``max_bytes``; metrics and observations older than the oldest kept trace's age limit go too.
        Returns how many traces were deleted."""
        deleted = 0
        with self._write() as db:
            if max_age_days is not None:
                cutoff_s = time.time() - max_age_days * 86400
                ids = [r[0] for r in db.execute("SELECT trace_id FROM traces WHERE end_ns < ?", (int(cutoff_s * 1e9),))]
                deleted += self._delete(db, ids)
                db.execute("DELETE FROM metrics WHERE ts < ?", (cutoff_s,))
                db.execute("DELETE FROM observations WHERE ts < ?", (cutoff_s,))
            db.execute("DELETE FROM forgotten WHERE ts < ?", (time.time() - FORGOTTEN_KEEP_S,))
            if max_bytes is not None:
                total = db.execute("SELECT coalesce(sum(size_bytes), 0) FROM traces").fetchone()[0]
                if total > max_bytes:
                    ids, freed = [], 0
                    for trace_id, size in db.execute("SELECT trace_id, size_bytes FROM traces ORDER BY end_ns"):
                        if total - freed <= max_bytes:
                            break
                        ids.append(trace_id)
                        freed += size
                    deleted += self._delete(db, ids)
        if deleted:
            self._checkpoint()
        return deleted

    # Deleting what a user deleted ---------------------------------------------------

    def forget_conversation(self, conversation_id: int) -> int:
        """Delete every trace of a conversation (its spans, summary row and monitoring observations),
        and drop its spans that arrive later (an answer still running). Returns how many traces went."""
        with self._write() as db:
            ids = [
                r[0]
                for r in db.execute("SELECT trace_id FROM traces WHERE conversation_id = ?", (int(conversation_id),))
            ]
            self._remember(db, "conversation", [str(int(conversation_id))])
            self._remember(db, "trace", ids)
            self._delete(db, ids, observations=True)
        self._checkpoint()
        return len(ids)

    def forget_traces(self, trace_ids: Iterable[str], conversation_id: int | None = None) -> int:
        """Delete these traces (the answers of a deleted branch) with their observations, and drop their spans
        that arrive later. With ``conversation_id``, a trace stored as another conversation's is left alone
        (a copy of a conversation may name its original's traces). Returns how many of them were stored."""
        ids = [t for t in dict.fromkeys(trace_ids) if t]
        if not ids:
            return 0
        with self._write() as db:
            rows = _select_in(db, "SELECT trace_id, conversation_id FROM traces WHERE trace_id IN ({})", ids)
            if conversation_id is not None:
                others = {t for t, owner in rows if owner is not None and owner != int(conversation_id)}
                ids = [t for t in ids if t not in others]
                rows = [r for r in rows if r[0] not in others]
            self._remember(db, "trace", ids)
            self._delete(db, ids, observations=True)
        self._checkpoint()
        return len(rows)

    def forget_documents(self, doc_ids: Iterable[str]) -> int:
        """Delete what the traces hold of removed documents; returns how many traces were deleted.

        A request that retrieved a passage of one of them (its chunk ids start with the document id) is
        deleted whole: the passage's text is in its retrieval span, in the prompt and input messages of
        its generation, and may be in its answer. An indexing run keeps its other files: only the
        document's own ``index_file`` span goes.
        """
        patterns = ["%" + _like_escape(d) + "%" for d in dict.fromkeys(doc_ids) if d]
        if not patterns:
            return 0
        where = " OR ".join("s.attributes LIKE ? ESCAPE '\\'" for _ in patterns)
        with self._write() as db:
            hits = db.execute(
                f"SELECT s.trace_id, s.span_id, s.name, s.size_bytes FROM spans s WHERE {where}", patterns
            ).fetchall()
            whole = sorted({t for t, _, name, _ in hits if name != "index_file"})
            for trace_id, span_id, name, size in hits:
                if name == "index_file" and trace_id not in whole:
                    db.execute("DELETE FROM spans WHERE trace_id = ? AND span_id = ?", (trace_id, span_id))
                    db.execute(
                        "UPDATE traces SET n_spans = n_spans - 1, size_bytes = size_bytes - ? WHERE trace_id = ?",
                        (size, trace_id),
                    )
            self._remember(db, "trace", whole)
            self._delete(db, whole, observations=True)
        if hits:
            self._checkpoint()
        return len(whole)

    @staticmethod
    def _remember(db: sqlite3.Connection, kind: str, keys: Iterable[str]) -> None:
        now = time.time()
        db.executemany("INSERT OR REPLACE INTO forgotten VALUES (?,?,?)", [(kind, k, now) for k in keys])
        db.execute("DELETE FROM forgotten WHERE ts < ?", (now - FORGOTTEN_KEEP_S,))

    @staticmethod
    def _delete(db: sqlite3.Connection, trace_ids: list[str], *, observations: bool = False) -> int:
        for start in range(0, len(trace_ids), 500):
            part = trace_ids[start : start + 500]
            marks = ",".join("?" * len(part))
            db.execute(f"DELETE FROM spans WHERE trace_id IN ({marks})", part)
            db.execute(f"DELETE FROM traces WHERE trace_id IN ({marks})", part)
            if observations:
                db.execute(f"DELETE FROM observations WHERE trace_id IN ({marks})", part)
        return len(trace_ids)

    def _checkpoint(self) -> bool:
        """Copy the log into the database and empty it, so deleted text is left in neither file.

        Another process reading at this moment (the window beside the CLI) can keep the log from being
        emptied; the next delete or retention run, or closing, empties it then. False in that case.
        """
        try:
            with self._lock:
                busy = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        except sqlite3.Error as exc:
            raise TraceStoreError("The trace store could not be written.", detail=str(exc)) from exc
        return busy == 0

    # Reading ------------------------------------------------------------------------

    def list_traces(self, where: TraceFilter | None = None) -> list[TraceSummary]:
        """Traces matching the filter, newest first."""
        f = where or TraceFilter()
        clauses: list[str] = []
        params: list[object] = []
        if f.since is not None:
            clauses.append("t.end_ns >= ?")
            params.append(int(f.since * 1e9))
        if f.until is not None:
            clauses.append("t.start_ns <= ?")
            params.append(int(f.until * 1e9))
        for column, value in (("task", f.task), ("model", f.model), ("status", f.status)):
            if value:
                clauses.append(f"t.{column} = ?")
                params.append(value)
        if f.text:
            pattern = "%" + f.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            clauses.append(
                "(t.trace_id LIKE ? ESCAPE '\\' OR t.summary LIKE ? ESCAPE '\\' OR EXISTS ("
                "SELECT 1 FROM spans s WHERE s.trace_id = t.trace_id AND (s.name LIKE ? ESCAPE '\\' "
                "OR s.attributes LIKE ? ESCAPE '\\')))"
            )
            params += [pattern] * 4
        sql = (
            "SELECT trace_id, name, task, model, status, start_ns, end_ns, ttft_s, tokens_per_s, input_tokens, "
            "output_tokens, conversation_id, summary, n_spans FROM traces t"
            + (" WHERE " + " AND ".join(clauses) if clauses else "")
            + " ORDER BY t.start_ns DESC LIMIT ?"
        )
        rows = self._read(sql, [*params, f.limit])
        return [
            TraceSummary(
                r[0],
                r[1] or "",
                r[2] or "",
                r[3] or "",
                r[4],
                r[5] / 1e9,
                max(0, r[6] - r[5]) / 1e9,
                r[7],
                r[8],
                r[9],
                r[10],
                r[11],
                r[12] or "",
                r[13],
            )
            for r in rows
        ]

    def resolve(self, trace_id: str) -> str:
        """The full id of a trace from its id or a unique prefix of it (as `locus traces show` takes)."""
        prefix = trace_id.strip().lower()
        if not prefix or any(c not in "0123456789abcdef" for c in prefix):
            raise NotFoundError(
                f"'{trace_id}' is not a trace id.", hint="Trace ids are hexadecimal; 'locus traces list' shows them."
            )
        rows = self._read("SELECT trace_id FROM traces WHERE trace_id LIKE ? LIMIT 2", (prefix + "%",))
        if not rows:
            raise NotFoundError(
                f"No trace has the id '{trace_id}'.",
                hint="It may have been deleted by retention; 'locus traces list' shows what is kept.",
            )
        if len(rows) > 1:
            raise NotFoundError(f"More than one trace starts with '{trace_id}'.", hint="Give more of the id.")
        return rows[0][0]

    def trace(self, trace_id: str) -> list[SpanRecord]:
        """Every span of a trace (id or unique prefix), in start order."""
        full = self.resolve(trace_id)
        rows = self._read(
            "SELECT trace_id, span_id, parent_id, name, kind, start_ns, end_ns, status, status_message, "
            "attributes, events FROM spans WHERE trace_id = ? ORDER BY start_ns, span_id",
            (full,),
        )
        return [
            SpanRecord(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8] or "", json.loads(r[9]), json.loads(r[10]))
            for r in rows
        ]

    def summary(self, trace_id: str) -> TraceSummary:
        full = self.resolve(trace_id)
        return next(t for t in self.list_traces(TraceFilter(text=full, limit=5)) if t.trace_id == full)

    def export(self, trace_id: str) -> dict:
        """A trace as one JSON-ready document: its summary and its spans (ids in hex, times in ns)."""
        spans = self.trace(trace_id)
        summary = self.summary(spans[0].trace_id)
        return {
            "format": "locus-trace/1",
            "trace_id": summary.trace_id,
            "name": summary.name,
            "task": summary.task,
            "model": summary.model,
            "status": summary.status,
            "start": summary.start,
            "duration_s": summary.duration_s,
            "spans": [s.to_dict() for s in spans],
        }

    def distinct(self, column: str) -> list[str]:
        """The tasks, models or statuses that occur, for the viewer's filters."""
        if column not in ("task", "model", "status", "name"):
            raise ValueError(column)
        return [
            r[0]
            for r in self._read(
                f"SELECT DISTINCT {column} FROM traces WHERE {column} IS NOT NULL AND {column} != '' ORDER BY {column}",
                (),
            )
        ]

    def series(self, column: str, since: float | None = None, task: str | None = None) -> list[tuple[float, float]]:
        """(start time, value) of a per-trace figure over time: duration_s, ttft_s or tokens_per_s."""
        expr = {"duration_s": "(end_ns - start_ns) / 1e9", "ttft_s": "ttft_s", "tokens_per_s": "tokens_per_s"}[column]
        sql = f"SELECT start_ns / 1e9, {expr} FROM traces WHERE {expr} IS NOT NULL AND status != 'running'"
        params: list = []
        if since is not None:
            sql += " AND start_ns >= ?"
            params.append(int(since * 1e9))
        if task:
            sql += " AND task = ?"
            params.append(task)
        return [(r[0], r[1]) for r in self._read(sql + " ORDER BY start_ns", params)]

    def metrics(self, name: str, since: float | None = None) -> list[tuple[float, float]]:
        """(timestamp, value) samples of one metric, oldest first."""
        sql = "SELECT ts, value FROM metrics WHERE name = ?"
        params: list[object] = [name]
        if since is not None:
            sql += " AND ts >= ?"
            params.append(since)
        return [(r[0], r[1]) for r in self._read(sql + " ORDER BY ts", params)]

    def metric_names(self) -> list[str]:
        return [r[0] for r in self._read("SELECT DISTINCT name FROM metrics ORDER BY name", ())]

    def observations(self, kind: str, since: float | None = None, limit: int | None = None) -> list[Observation]:
        """Observations of one kind, oldest first (the newest ``limit`` when given)."""
        sql = "SELECT ts, kind, trace_id, value, vector, detail FROM observations WHERE kind = ?"
        params: list[object] = [kind]
        if since is not None:
            sql += " AND ts >= ?"
            params.append(since)
        if limit is not None:
            sql = f"SELECT * FROM ({sql} ORDER BY ts DESC LIMIT ?) ORDER BY ts"
            params.append(limit)
        else:
            sql += " ORDER BY ts"
        return [
            Observation(
                r[0],
                r[1],
                r[2],
                r[3],
                None if r[4] is None else np.frombuffer(r[4], dtype=np.float32),
                json.loads(r[5]),
            )
            for r in self._read(sql, params)
        ]

    def count(self) -> int:
        return self._read("SELECT count(*) FROM traces", ())[0][0]

    def size_bytes(self) -> int:
        return self._read("SELECT coalesce(sum(size_bytes), 0) FROM traces", ())[0][0]

    # ---------------------------------------------------------------------------------

    def _read(self, sql: str, params) -> list[tuple]:
        try:
            with self._lock:
                return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise TraceStoreError("The trace store could not be read.", detail=str(exc)) from exc

    def _write(self):
        return _Transaction(self)


def _conversation_of(attributes: dict) -> int | None:
    value = attributes.get(CONVERSATION)
    try:
        return int(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


def _select_in(db: sqlite3.Connection, sql: str, keys: list[str]) -> list[tuple]:
    """``sql`` with its ``IN ({})`` filled with one mark per key (nothing to select: no rows)."""
    out: list[tuple] = []
    for start in range(0, len(keys), 500):
        part = keys[start : start + 500]
        out += db.execute(sql.format(",".join("?" * len(part))), part).fetchall()
    return out


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT under the store's lock; rolled back on error."""

    def __init__(self, store: TraceStore):
        self.store = store

    def __enter__(self) -> sqlite3.Connection:
        self.store._lock.acquire()
        try:
            self.store._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self.store._lock.release()
            raise TraceStoreError("The trace store could not be written.", detail=str(exc)) from exc
        return self.store._db

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.store._db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.store._lock.release()
        if isinstance(exc, sqlite3.Error):
            raise TraceStoreError("The trace store could not be written.", detail=str(exc)) from exc
