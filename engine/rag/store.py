"""The document index in LanceDB: tables `documents` and `chunks`.

A document's chunks are written in one commit (new documents appended; a known
document's chunks replaced in one merge-insert keyed by chunk id: new rows in,
its old rows out), so a process killed at any moment leaves either the old
version of a document or the new one, never half, and never a duplicate. The
embedding model that built the index is recorded beside it; opening the index
with another model asks for a re-index instead of mixing vectors from two models.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import threading
import time
import warnings
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from engine.errors import EngineError

log = logging.getLogger(__name__)

COMPACT_EVERY_WRITES = 200  # commits before the first compaction of a long indexing job
COMPACT_GROWTH = 1.5  # each later compaction waits this much longer: a compaction rewrites the whole table
COMPACT_CLEANUP = timedelta(minutes=2)  # versions older than this are deleted by those compactions
ANN_MIN_ROWS = 30_000  # below this a flat scan is fast enough (see bench/search_latency.py)
ANN_NPROBES = 24  # partitions searched per query; recall@10 >= 0.95 in bench/search_latency.py
DEFAULT_COLLECTION = "default"
# Rewritten (atomically) after every change to the documents table by any process, so that a window open on
# the same data folder notices documents that `locus index` or `locus docs remove` added or removed.
CHANGES_FILE = "changes"


class EmbeddingModelMismatch(EngineError):
    """The index was built with another embedding model."""

    code = "embedding_model_mismatch"


@dataclass(frozen=True)
class DocumentRecord:
    doc_id: str
    path: str
    collection: str
    title: str
    kind: str
    status: str  # queued, parsing, embedding, done, failed, cancelled, removing
    reason: str  # short machine-ish status for failures ("password protected"), else ""
    message: str  # words for people about a failure, else ""
    content_hash: str  # hash of the version whose chunks are in the index ("" if none)
    size: int
    mtime: float
    n_chunks: int
    pages: int
    updated_at: float


@dataclass(frozen=True)
class ChunkHit:
    chunk_id: str
    doc_id: str
    path: str
    title: str
    kind: str
    collection: str
    chunk_index: int
    text: str
    page: int | None
    line_start: int | None
    line_end: int | None
    heading: str | None
    score: float  # cosine similarity for vector hits, BM25 for text hits
    vector: np.ndarray | None = None
    place: str | None = None  # a kind of place other than page or lines (see loaders.base.Section)
    place_label: str | None = None
    place_within: str | None = None


def set_aside_for_new_model(directory: str | Path) -> list[tuple[str, str]]:
    """Move an index built with another embedding model aside; returns its (path, collection) pairs
    so that the same documents can be indexed again with the new model."""
    import lancedb

    directory = Path(directory)
    documents: list[tuple[str, str]] = []
    try:
        table = lancedb.connect(str(directory)).open_table("documents")
        documents = [(r["path"], r["collection"]) for r in table.to_arrow().select(["path", "collection"]).to_pylist()]
    except Exception:  # noqa: BLE001 - an unreadable old index still gets moved aside
        log.warning("the old document index could not be read; its documents are not re-indexed")
    if directory.exists():
        os.replace(directory, directory.with_name(f"{directory.name}.old-{int(time.time())}"))
    return documents


def doc_id_for(path: str | Path) -> str:
    """A stable id for a file: its absolute path, hashed."""
    return hashlib.sha1(str(Path(path).resolve()).encode("utf-8")).hexdigest()[:20]


def sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _documents_schema() -> pa.Schema:
    return pa.schema(
        [
            ("doc_id", pa.string()),
            ("path", pa.string()),
            ("collection", pa.string()),
            ("title", pa.string()),
            ("kind", pa.string()),
            ("status", pa.string()),
            ("reason", pa.string()),
            ("message", pa.string()),
            ("content_hash", pa.string()),
            ("size", pa.int64()),
            ("mtime", pa.float64()),
            ("n_chunks", pa.int32()),
            ("pages", pa.int32()),
            ("updated_at", pa.float64()),
        ]
    )


def _chunks_schema(dim: int) -> pa.Schema:
    return pa.schema(
        [
            ("chunk_id", pa.string()),
            ("doc_id", pa.string()),
            ("collection", pa.string()),
            ("path", pa.string()),
            ("title", pa.string()),
            ("kind", pa.string()),
            ("chunk_index", pa.int32()),
            ("text", pa.string()),
            ("n_tokens", pa.int32()),
            ("page", pa.int32()),
            ("line_start", pa.int32()),
            ("line_end", pa.int32()),
            ("heading", pa.string()),
            ("vector", pa.list_(pa.float32(), dim)),
            *PLACE_COLUMNS,
        ]
    )


# Added after the first indexes were built: an index without them gets them, empty, when it is opened.
PLACE_COLUMNS = (("place", pa.string()), ("place_label", pa.string()), ("place_within", pa.string()))

# What chunk_rows reads: everything a chunk's text is shown or rebuilt with (not its vector).
TEXT_COLUMNS = (
    *("chunk_id", "doc_id", "chunk_index", "text", "page", "line_start", "line_end", "heading"),
    *(name for name, _ in PLACE_COLUMNS),
)


class DocumentStore:
    """Documents and their embedded chunks; writes come from the indexer thread only."""

    def __init__(self, directory: str | Path, embedder_name: str, dim: int):
        import lancedb

        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.embedder_name, self.dim = embedder_name, dim
        self._check_model()
        # Always read the latest committed version: the CLI may index while the window searches.
        self.db = lancedb.connect(str(self.directory), read_consistency_interval=timedelta(0))
        self._lock = threading.RLock()
        self._changes = itertools.count(1)
        self._writes = 0
        self.compact_every = COMPACT_EVERY_WRITES
        self._next_compaction = 0
        # Documents that have chunks, known while the change stamp is the last one this store wrote (no
        # other process changed the index since); otherwise read again from the table.
        self._held: set[str] | None = None
        self._own_stamp: str | None = None
        self.documents = self._open("documents", _documents_schema())
        self.chunks = self._open("chunks", _chunks_schema(dim))
        self._places_ready = False  # whether the chunks table has the place columns (an old one gets them)
        self._add_missing_columns()
        indices = self.chunks.list_indices()
        self._fts_ready = any(i.index_type == "FTS" for i in indices)
        self._doc_index_ready = any(list(i.columns) == ["doc_id"] for i in indices)

    # Setup -------------------------------------------------------------------------

    def _meta_file(self) -> Path:
        return self.directory / "index.json"

    def _check_model(self) -> None:
        meta = self._meta_file()
        if meta.exists():
            recorded = json.loads(meta.read_text(encoding="utf-8"))
            if recorded.get("embedder") != self.embedder_name or recorded.get("dim") != self.dim:
                raise EmbeddingModelMismatch(
                    f"The document index was built with {recorded.get('embedder')} "
                    f"({recorded.get('dim')} dimensions), but the embedding model is now {self.embedder_name} "
                    f"({self.dim} dimensions).",
                    hint="Vectors from two models cannot be mixed: re-index (the window offers it, or run "
                    "'locus docs rebuild').",
                )
            return
        tmp = meta.with_suffix(".tmp")
        tmp.write_text(
            json.dumps({"embedder": self.embedder_name, "dim": self.dim, "created": time.time()}), encoding="utf-8"
        )
        os.replace(tmp, meta)

    def _open(self, name: str, schema: pa.Schema):
        try:
            return self.db.open_table(name)
        except (FileNotFoundError, ValueError):
            return self.db.create_table(name, schema=schema, exist_ok=True)

    def _add_missing_columns(self) -> None:
        """Give a chunks table written before the place columns existed those columns (null in old rows),
        so that new rows can be written beside the old ones."""
        missing = [name for name, _ in PLACE_COLUMNS if name not in self.chunks.schema.names]
        self._places_ready = not missing
        if not missing:
            return
        try:
            self.chunks.add_columns({name: "CAST(NULL AS STRING)" for name in missing})
            log.info("added %s to the chunks table of %s", ", ".join(missing), self.directory)
        except Exception as exc:  # noqa: BLE001 - another process added them first, or read-only storage
            self.chunks.checkout_latest()
            still = [name for name, _ in PLACE_COLUMNS if name not in self.chunks.schema.names]
            self._places_ready = not still
            if still:
                # Searching still works (the columns read as empty); a write tries again and fails clearly.
                log.warning("could not add %s to the chunks table of %s: %s", ", ".join(still), self.directory, exc)

    def _add_columns_or_fail(self) -> None:
        """Before a write: the place columns an index opened without them (read-only then) still lacks."""
        self._add_missing_columns()
        if not self._places_ready:
            raise EngineError(
                f"The document index in {self.directory} could not be updated to this version of Locus.",
                hint="Check that its folder can be written to, then index again.",
            )

    # Documents ---------------------------------------------------------------------

    def upsert_document(self, record: DocumentRecord) -> None:
        self.upsert_documents([record])

    def upsert_documents(self, records: list[DocumentRecord]) -> None:
        """Insert or update document records, all in one commit."""
        if not records:
            return
        rows = pa.Table.from_pylist([r.__dict__ for r in records], schema=_documents_schema())
        with self._lock:
            (
                self.documents.merge_insert("doc_id")
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .execute(rows)
            )
        self._note_change()

    def document(self, doc_id: str) -> DocumentRecord | None:
        rows = self.documents.search().where(f"doc_id = {sql_str(doc_id)}").limit(1).to_list()
        return DocumentRecord(**{k: rows[0][k] for k in _documents_schema().names}) if rows else None

    def list_documents(self, collection: str | None = None) -> list[DocumentRecord]:
        rows = self.documents.to_arrow().to_pylist()
        records = [DocumentRecord(**r) for r in rows if collection is None or r["collection"] == collection]
        return sorted(records, key=lambda r: (r.collection, r.path))

    def collections(self) -> list[str]:
        return sorted({r.collection for r in self.list_documents()})

    # Chunks ------------------------------------------------------------------------

    def replace_chunks(self, doc_id: str, rows: list[dict]) -> None:
        """Make ``rows`` the document's only chunks, in one commit."""
        self.replace_chunks_many([doc_id], rows)

    def replace_chunks_many(self, doc_ids: list[str], rows: list[dict]) -> None:
        """Make ``rows`` the only chunks of these documents (a document with no rows loses its chunks):
        new documents in one commit, documents that had chunks in another; each document is in exactly
        one of them, so it is wholly its old or wholly its new version."""
        if not doc_ids:
            return
        with self._lock:
            if not self._places_ready:
                self._add_columns_or_fail()
            # Documents with no chunks yet (a first index: nearly all of a big one) are appended, which
            # costs the same at any table size; a merge with deletes reads the whole table (0.16 s a
            # commit at 100,000 chunks, 1.6 s at a million: bench/index_scale.py), so only documents
            # that have chunks to replace take that path. Either way each document is in one commit.
            held = self._with_chunks(doc_ids)
            fresh = [row for row in rows if row["doc_id"] not in held]
            if fresh:
                self.chunks.add(pa.Table.from_pylist(fresh, schema=_chunks_schema(self.dim)))
            if held:
                which = f"doc_id IN ({', '.join(sql_str(d) for d in sorted(held))})"
                replacing = [row for row in rows if row["doc_id"] in held]
                if not replacing:
                    self.chunks.delete(which)
                else:
                    (
                        self.chunks.merge_insert("chunk_id")
                        .when_matched_update_all()
                        .when_not_matched_insert_all()
                        .when_not_matched_by_source_delete(which)
                        .execute(pa.Table.from_pylist(replacing, schema=_chunks_schema(self.dim)))
                    )
            if rows:
                self.ensure_text_index()
                self._writes += 1
                self._compact_now_and_then()
            if self._held is not None:
                self._held.difference_update(doc_ids)
                self._held.update(row["doc_id"] for row in rows)

    def _compact_now_and_then(self) -> None:
        """A commit is a file: thousands of them make every scan and search slower, so a long job folds them
        together now and then (its end optimises fully). LanceDB's compaction rewrites every fragment
        under a million rows, the whole table here, so the gaps between compactions grow (200 commits,
        then 300, 450, …) and versions older than two minutes are deleted each time: compacting every 200
        commits rewrote 55 GB for a million chunks (bench/index_scale.py). The chunks are committed
        already: a compaction that fails (a full disk, another process compacting) is only logged, and the
        next one or the job's end tries again."""
        if not self._next_compaction:
            self._next_compaction = self.compact_every
        if self._writes < self._next_compaction:
            return
        self._next_compaction = self._writes + max(self.compact_every, int(self._writes * (COMPACT_GROWTH - 1)))
        try:
            self.chunks.optimize(cleanup_older_than=COMPACT_CLEANUP)
            self.documents.optimize(cleanup_older_than=COMPACT_CLEANUP)
        except Exception as exc:  # noqa: BLE001 - any failure: the write stands
            log.warning("compaction of the index in %s failed: %s", self.directory, exc)

    def _with_chunks(self, doc_ids: list[str]) -> set[str]:
        """Which of these documents have chunks in the index. Known from this store's own writes while no
        other process changed the index (its change stamp is still ours); else the doc_id column is read
        once again (about a second at a million chunks) instead of searching the table at every commit,
        which grew with every unindexed fragment of a long job."""
        if self._held is None or self.change_stamp() != self._own_stamp:
            found = self.chunks.search().select(["doc_id"]).limit(None).to_arrow()
            self._held = set(found.column("doc_id").to_pylist())
            self._own_stamp = self.change_stamp()
        return {d for d in doc_ids if d in self._held}

    def ensure_text_index(self) -> None:
        """Create the full-text index once there are chunks (rows added later are searched too,
        unindexed, until ``optimize`` folds them in)."""
        with self._lock:
            if not self._fts_ready:
                from lancedb.index import FTS

                self.chunks.create_index("text", config=FTS(), replace=True)
                self._fts_ready = True
            if not self._doc_index_ready:
                from lancedb.index import BTree

                # Finding a document's chunks (replacing, removing, neighbours) without reading the table.
                self.chunks.create_index("doc_id", config=BTree(), replace=True)
                self._doc_index_ready = True

    def remove_document(self, doc_id: str) -> None:
        """Chunks first, then the record; a crash in between leaves a 'removing' record to finish later."""
        record = self.document(doc_id)
        if record is None:
            return
        with self._lock:
            self.upsert_document(replace(record, status="removing", updated_at=time.time()))
            self.chunks.delete(f"doc_id = {sql_str(doc_id)}")
            self.documents.delete(f"doc_id = {sql_str(doc_id)}")
            if self._held is not None:
                self._held.discard(doc_id)
        self._note_change()

    # Telling other processes ----------------------------------------------------------

    def change_stamp(self) -> str:
        """Differs after every change any process made to the documents ("" before the first one). Cheap:
        one small file read, for a watcher that then lists the documents again only when it changed."""
        try:
            return (self.directory / CHANGES_FILE).read_text(encoding="ascii")
        except (OSError, ValueError):
            return ""

    def _note_change(self) -> None:
        """Write a new change stamp: a small file replaced in one step, so a watcher of this folder wakes and a
        reader never sees half of it. A stamp that cannot be written is logged: the change itself is done."""
        target = self.directory / CHANGES_FILE
        tmp = target.with_name(f".{CHANGES_FILE}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            stamp = f"{time.time_ns()} {os.getpid()} {next(self._changes)}\n"
            with os.fdopen(fd, "w", encoding="ascii") as out:
                out.write(stamp)
            previous = self.change_stamp()
            os.replace(tmp, target)
            if self._own_stamp is not None and previous == self._own_stamp:
                self._own_stamp = stamp  # nobody else wrote in between: what this store knows still holds
        except OSError as exc:
            log.warning("could not note a change of the document index for other windows: %s", exc)

    def finish_interrupted_removals(self) -> int:
        pending = [r for r in self.list_documents() if r.status == "removing"]
        for record in pending:
            self.remove_document(record.doc_id)
        return len(pending)

    def chunk_count(self, doc_id: str | None = None) -> int:
        return self.chunks.count_rows(f"doc_id = {sql_str(doc_id)}" if doc_id else None)

    def chunk_rows(self, doc_id: str) -> list[dict]:
        """A document's chunks as text and places (for the source viewer and the document's text), without
        their vectors, which would be most of the bytes read."""
        columns = [name for name in TEXT_COLUMNS if name in self.chunks.schema.names]
        query = self.chunks.search().where(f"doc_id = {sql_str(doc_id)}").select(columns)
        return query.limit(None).to_arrow().to_pylist()

    def sample_chunks(self, n: int, seed: int = 0) -> list[tuple[str, str]]:
        """(doc_id, text) of up to ``n`` chunks taken in turn from each document, the same for a seed
        (monitoring calibrates on them). Ids are read first so that only the chosen texts are loaded."""
        ids = self.chunks.search().select(["doc_id", "chunk_id"]).limit(None).to_arrow().to_pylist()
        by_doc: dict[str, list[str]] = {}
        for row in sorted(ids, key=lambda r: r["chunk_id"]):
            by_doc.setdefault(row["doc_id"], []).append(row["chunk_id"])
        rng = np.random.default_rng(seed)
        docs = sorted(by_doc)
        queues = [
            [by_doc[docs[d]][i] for i in rng.permutation(len(by_doc[docs[d]]))] for d in rng.permutation(len(docs))
        ]
        # First chunk of every document, then the second of every document, ...
        chosen = [c for _, _, c in sorted((i, d, c) for d, q in enumerate(queues) for i, c in enumerate(q))][:n]
        if not chosen:
            return []
        where = f"chunk_id IN ({', '.join(sql_str(c) for c in chosen)})"
        texts = {
            r["chunk_id"]: (r["doc_id"], r["text"])
            for r in self.chunks.search().where(where).select(["chunk_id", "doc_id", "text"]).limit(None).to_list()
        }
        return [texts[c] for c in chosen if c in texts]

    def neighbours(self, doc_id: str, indices: list[int]) -> list[ChunkHit]:
        """Chunks of one document by position (to widen or merge passages)."""
        if not indices:
            return []
        where = f"doc_id = {sql_str(doc_id)} AND chunk_index IN ({', '.join(str(int(i)) for i in indices)})"
        return [_hit(r, 0.0) for r in self.chunks.search().where(where).limit(None).to_list()]

    # Search ------------------------------------------------------------------------

    def _collection_filter(self, collections: list[str] | None) -> str | None:
        if not collections:
            return None
        return f"collection IN ({', '.join(sql_str(c) for c in collections)})"

    def vector_search(
        self, vector: np.ndarray, k: int, collections: list[str] | None = None, *, nprobes: int = ANN_NPROBES
    ) -> list[ChunkHit]:
        query = self.chunks.search(vector.astype(np.float32), vector_column_name="vector").distance_type("cosine")
        where = self._collection_filter(collections)
        if where:
            query = query.where(where, prefilter=True)
        if self.has_ann_index():
            query = query.nprobes(nprobes)
        rows = query.limit(k).to_list()
        return [_hit(r, 1.0 - float(r["_distance"])) for r in rows]

    def text_search(self, text: str, k: int, collections: list[str] | None = None) -> list[ChunkHit]:
        if not self._fts_ready or not text.strip():
            return []
        query = self.chunks.search(text, query_type="fts")
        where = self._collection_filter(collections)
        if where:
            query = query.where(where, prefilter=True)
        try:
            rows = query.limit(k).to_list()
        except (ValueError, RuntimeError) as exc:  # e.g. a query made only of stop words
            log.debug("full-text search failed for %r: %s", text, exc)
            return []
        return [_hit(r, float(r.get("_score", 0.0))) for r in rows]

    # Maintenance -------------------------------------------------------------------

    def has_ann_index(self) -> bool:
        return any("vector" in i.columns for i in self.chunks.list_indices())

    def optimize(self, *, ann_min_rows: int = ANN_MIN_ROWS) -> None:
        """Fold new rows into the indexes, compact files, and build the ANN index once it pays."""
        with self._lock:
            rows = self.chunks.count_rows()
            if rows >= ann_min_rows and not self.has_ann_index():
                self.build_ann_index()
            self.chunks.optimize(cleanup_older_than=timedelta(minutes=10))
            self.documents.optimize(cleanup_older_than=timedelta(minutes=10))

    def purge(self, *, ann_min_rows: int = ANN_MIN_ROWS) -> None:
        """Leave no byte of removed documents on disk, then optimise as ``optimize`` does.

        A LanceDB delete only marks rows deleted: their text stays in the data files (and the full-text
        index) until a compaction rewrites those files, which it skips for fragments with few deletions.
        So after a removal both tables are rewritten from their live rows (streamed, never whole in
        memory), the indexes are built again, and every older version is cleaned up at once. About 2 s
        for 20,000 chunks. A search in another process that runs at that very moment may fail once.
        """
        with self._lock:
            had_ann = self.has_ann_index()
            for name in ("documents", "chunks"):
                table = getattr(self, name)
                rows = table.search().limit(None).to_batches(2048)
                self.db.create_table(name, pa.RecordBatchReader.from_batches(table.schema, rows), mode="overwrite")
            self.documents = self.db.open_table("documents")
            self.chunks = self.db.open_table("chunks")
            self._fts_ready = self._doc_index_ready = False
            count = self.chunks.count_rows()
            if count:
                self.ensure_text_index()
            if count >= ann_min_rows or (had_ann and count):
                self.build_ann_index()
            for table in (self.chunks, self.documents):
                with warnings.catch_warnings():  # "concurrent readers of older versions may fail": see above
                    warnings.simplefilter("ignore", UserWarning)
                    table.optimize(cleanup_older_than=timedelta(0), delete_unverified=True)

    def build_ann_index(self, partitions: int | None = None) -> None:
        """An IVF index over full vectors: a query scans only the nearest partitions, exactly.

        IVF-PQ was tried and lost (recall@10 0.64 unrefined); see bench/search_latency.py.
        """
        from lancedb.index import IvfFlat

        partitions = partitions or ann_partitions(self.chunks.count_rows())
        self.chunks.create_index(
            "vector", config=IvfFlat(distance_type="cosine", num_partitions=partitions), replace=True
        )


def ann_partitions(rows: int) -> int:
    """IVF partitions for a table of ``rows`` chunks: sqrt(rows), at least 16 (see bench/index_scale.py)."""
    return max(16, int(rows**0.5))


def _hit(row: dict, score: float) -> ChunkHit:
    vector = row.get("vector")
    return ChunkHit(
        chunk_id=row["chunk_id"],
        doc_id=row["doc_id"],
        path=row["path"],
        title=row["title"],
        kind=row["kind"],
        collection=row["collection"],
        chunk_index=row["chunk_index"],
        text=row["text"],
        page=row["page"],
        line_start=row["line_start"],
        line_end=row["line_end"],
        heading=row["heading"],
        score=score,
        vector=np.asarray(vector, dtype=np.float32) if vector is not None else None,
        place=row.get("place"),
        place_label=row.get("place_label"),
        place_within=row.get("place_within"),
    )
