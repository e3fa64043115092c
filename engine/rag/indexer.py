"""The indexer: files in, searchable chunks out, on a thread that owns the index writer.

One job at a time runs a pipeline of three overlapping stages so the embedder
never waits for the parser:

    discover + hash  ->  parse (worker processes) + chunk  ->  embed + write
       (job thread)         (producer thread, queue)            (job thread)

Unchanged files (same size and mtime, or same content hash) are skipped; a
changed file's chunks are replaced in one commit; files gone from an indexed
folder are removed. Links that lead out of an added folder, into a hidden one
or round in a loop are not followed, and each is reported as "skipped". Every
file ends with a status: done, failed (with the reason), or cancelled.
Documents left mid-way by a crash are resumed at start.
Paused, a job waits before each file and each embedding batch; resumed, it goes
on where it stopped.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from opentelemetry.trace import INVALID_SPAN, Span

from engine.errors import EngineError
from engine.rag.chunk import Chunk, Chunker
from engine.rag.embed import EmbeddingError, TextEmbedder
from engine.rag.index_job import (
    DocumentStatus,
    IndexEvent,
    IndexFinished,
    IndexingCancelled,
    IndexJob,
    IndexProgress,
    PauseGate,
)
from engine.rag.isolation import ParsePool
from engine.rag.loaders import DocumentError, EmptyDocument, LoadedDocument, SkippedLink, discover, kind_for
from engine.rag.store import DEFAULT_COLLECTION, DocumentRecord, DocumentStore, doc_id_for
from engine.trace import spans
from engine.trace.tracing import Tracing, trace_id_of

log = logging.getLogger(__name__)

IN_PROGRESS = ("queued", "parsing", "embedding")
EMBED_BATCH = 64
_PROGRESS_INTERVAL_S = 0.2


@dataclass
class _Work:
    record: DocumentRecord
    content_hash: str
    document: LoadedDocument | None = None
    chunks: list[Chunk] = field(default_factory=list)
    error: EngineError | None = None
    span: Span = INVALID_SPAN  # its "index_file" span (set once the job starts), ended with its outcome

    @property
    def loaded(self) -> LoadedDocument:
        """The parsed document, for the stages after parsing (only parsed documents reach them)."""
        if self.document is None:
            raise RuntimeError(f"{self.record.path} was not parsed")
        return self.document


@dataclass
class _Counters:
    """A job's running totals, for its progress and its result."""

    done: int = 0
    failed: int = 0
    chunks: int = 0
    pages: int = 0
    embed_s: float = 0.0


def file_hash(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Indexer:
    """Runs indexing jobs one at a time on its own thread; the only writer of the store."""

    def __init__(
        self,
        store: DocumentStore,
        embedder: TextEmbedder,
        chunker: Chunker,
        *,
        parse_workers: int = 1,
        parse_timeout_s: float = 60.0,
        ocr: bool | None = None,
        on_event: Callable[[IndexEvent], None] | None = None,
        tracing: Tracing | None = None,
    ):
        self.tracing = tracing or Tracing.disabled()
        self.store = store
        self.embedder = embedder
        self.chunker = chunker
        self.parse_workers = parse_workers
        self.parse_timeout_s = parse_timeout_s
        self.ocr = ocr  # scanned pages and images: read by OCR, skipped (False) or not asked (None); per job
        self.on_event = on_event
        self._jobs: queue.Queue[IndexJob | None] = queue.Queue()
        self._current: IndexJob | None = None
        self.gate = PauseGate()
        self._thread = threading.Thread(target=self._serve, name="locus-indexer", daemon=True)
        self._thread.start()

    # Public API ------------------------------------------------------------------

    def index(
        self,
        paths: Iterable[str | Path],
        collection: str = DEFAULT_COLLECTION,
        *,
        prune: bool = True,
        on_event: Callable[[IndexEvent], None] | None = None,
    ) -> IndexJob:
        """Queue files and folders for indexing into a collection."""
        job = IndexJob(
            "index",
            paths=[str(Path(p).expanduser().resolve()) for p in paths],
            collection=collection or DEFAULT_COLLECTION,
            prune=prune,
            on_event=on_event,
        )
        self._jobs.put(job)
        return job

    def reindex(self, doc_ids: Iterable[str], on_event=None, *, force: bool = True) -> IndexJob:
        """Index these documents again (``force``: even if their files did not change)."""
        job = IndexJob("reindex", doc_ids=list(doc_ids), prune=False, force=force, on_event=on_event)
        self._jobs.put(job)
        return job

    def remove(self, doc_ids: Iterable[str], on_event=None) -> IndexJob:
        """Take documents out of the index (their files are left alone)."""
        job = IndexJob("remove", doc_ids=list(doc_ids), on_event=on_event)
        self._jobs.put(job)
        return job

    def resume_interrupted(self, on_event=None) -> IndexJob | None:
        """Finish what a killed process left: removals first, then documents left mid-way."""
        self.store.finish_interrupted_removals()
        pending = [r.doc_id for r in self.store.list_documents() if r.status in IN_PROGRESS]
        return self.reindex(pending, on_event, force=True) if pending else None

    def cancel_current(self) -> None:
        job = self._current
        if job is not None:
            job.cancel()

    @property
    def paused(self) -> bool:
        return self.gate.paused

    def pause(self) -> None:
        """Hold indexing before the next file and batch; the running job waits, nothing is dropped."""
        self.gate.pause()
        self._announce_pause(True)

    def resume(self) -> None:
        """Let indexing go on from where it was paused."""
        self.gate.resume()
        self._announce_pause(False)

    def _announce_pause(self, paused: bool) -> None:
        job = self._current
        if job is not None and job.last_progress is not None:
            self._emit(job, replace(job.last_progress, paused=paused))

    def busy(self) -> bool:
        """A job is queued or running."""
        return self._jobs.unfinished_tasks > 0

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no job is queued or running; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.busy():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def shutdown(self, timeout: float = 30.0) -> None:
        """Cancel the running job and every queued one (they end as cancelled), then stop the thread."""
        with self._jobs.mutex:
            for job in self._jobs.queue:
                if job is not None:
                    job.cancel()
        self.cancel_current()
        self._jobs.put(None)
        self._thread.join(timeout)

    # The indexer thread ----------------------------------------------------------

    def _emit(self, job: IndexJob, event: IndexEvent) -> None:
        for sink in (job.on_event, self.on_event):
            if sink is None:
                continue
            try:
                sink(event)
            except Exception:
                log.exception("index event consumer failed")

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                self._jobs.task_done()
                return
            self._current = job
            job.span = spans.start_index_job(self.tracing, job)
            job.trace_id = trace_id_of(job.span)
            try:
                job.result = self._run_removal(job) if job.kind == "remove" else self._run(job)
                spans.finish_index_job(job.span, job.result)
                self._emit(job, job.result)
            except BaseException as exc:
                log.exception("indexing job failed")
                spans.finish_index_job(job.span, error=exc)
                job.error = exc
            finally:
                self._current = None
                job.finished.set()
                self._jobs.task_done()

    def _run_removal(self, job: IndexJob) -> IndexFinished:
        start, removed = time.perf_counter(), 0
        for doc_id in job.doc_ids or []:
            record = self.store.document(doc_id)
            if record is None:
                continue
            self.store.remove_document(doc_id)
            removed += 1
            self._emit(job, DocumentStatus(doc_id, record.path, record.collection, "removed"))
        if removed:
            self._maintain(purge=True)
        progress = IndexProgress(0, 0, 0, 0, 0, time.perf_counter() - start, 0.0)
        return IndexFinished(progress, 0, 0, 0, removed, False)

    def _status(
        self, job: IndexJob, record: DocumentRecord, status: str, *, persist: bool = True, **changes
    ) -> DocumentRecord:
        """Tell listeners a document's new state (and record it, unless it is a passing one)."""
        record = replace(record, status=status, updated_at=time.time(), **changes)
        if persist:
            self.store.upsert_document(record)
        self._announce(job, record)
        return record

    def _announce(self, job: IndexJob, record: DocumentRecord) -> None:
        self._emit(
            job,
            DocumentStatus(
                record.doc_id,
                record.path,
                record.collection,
                record.status,
                record.reason,
                record.message,
                record.n_chunks,
            ),
        )

    def _plan(self, job: IndexJob, skipped: list[SkippedLink]) -> tuple[list[_Work], list[DocumentRecord], int]:
        """What to (re)index, what to remove, and how many files are unchanged; links not followed go
        into ``skipped``."""
        existing = {r.doc_id: r for r in self.store.list_documents()}
        if job.doc_ids is not None:
            files = [Path(existing[d].path) for d in job.doc_ids if d in existing]
            collections = {str(p): existing[doc_id_for(p)].collection for p in files}
        else:
            files = list(discover(job.paths, on_skip=skipped.append))
            collections = {str(p): job.collection for p in files}
        work, unchanged, seen = [], 0, set()
        for path in files:
            doc_id = doc_id_for(path)
            seen.add(doc_id)
            old = existing.get(doc_id)
            collection = collections[str(path)]
            try:
                stat = path.stat()
            except OSError:
                if old is not None:
                    work.append(_Work(old, ""))  # vanished since: removed below via prune or fails
                continue
            force = job.force
            if (
                not force
                and old is not None
                and old.status == "done"
                and old.collection == collection
                and old.size == stat.st_size
                and old.mtime == stat.st_mtime
            ):
                unchanged += 1
                continue
            try:
                content_hash = file_hash(path)
            except OSError as exc:
                content_hash = ""
                log.info("cannot read %s: %s", path, exc)
            if (
                not force
                and old is not None
                and old.status == "done"
                and old.content_hash == content_hash
                and old.collection == collection
            ):
                self.store.upsert_document(replace(old, size=stat.st_size, mtime=stat.st_mtime))
                unchanged += 1
                continue
            record = old or DocumentRecord(
                doc_id,
                str(path),
                collection,
                path.name,
                kind_for(path) or "unknown",
                "queued",
                "",
                "",
                "",
                0,
                0.0,
                0,
                0,
                time.time(),
            )
            record = replace(record, collection=collection, size=stat.st_size, mtime=stat.st_mtime)
            work.append(_Work(record, content_hash))
        removals = []
        if job.prune and job.doc_ids is None:
            roots = [Path(p) for p in job.paths if Path(p).is_dir()]
            for record in existing.values():
                if record.doc_id not in seen and any(Path(record.path).is_relative_to(r) for r in roots):
                    removals.append(record)
        return work, removals, unchanged

    def _hold(self, job: IndexJob, progress: Callable[..., object]) -> None:
        """While indexing is paused, say so and wait here (a cancel ends the wait)."""
        if self.gate.paused:
            progress(force=True)
            self.gate.wait(job.cancel_event)

    def _run(self, job: IndexJob) -> IndexFinished:
        start = time.perf_counter()
        job.last_progress = before = IndexProgress(0, 0, 0, 0, 0, 0.0, 0.0)
        self._hold(job, lambda force: self._emit(job, replace(before, paused=self.gate.paused)))
        skipped: list[SkippedLink] = []
        work, removals, unchanged = self._plan(job, skipped)
        for record in removals:
            self.store.remove_document(record.doc_id)
            self._emit(job, DocumentStatus(record.doc_id, record.path, record.collection, "removed"))
        for link in skipped:
            # Not a document: an id of the link's own (its target may be a document elsewhere).
            link_id = hashlib.sha1(f"link:{link.path}".encode()).hexdigest()[:20]
            self._emit(
                job, DocumentStatus(link_id, str(link.path), job.collection, "skipped", link.reason, link.message)
            )
        # Every write is a new version of a LanceDB table, so states are written in batches: all
        # "queued" now, "done" and "failed" per embedding batch. Passing states (parsing, embedding)
        # are only announced; after a crash "queued" is what is left to resume.
        for item in work:
            item.record = replace(item.record, status="queued", reason="", message="", updated_at=time.time())
        self.store.upsert_documents([item.record for item in work])
        for item in work:
            item.span = spans.start_index_file(self.tracing, job.span, item.record)
            self._announce(job, item.record)
        failures: list[_Work] = []
        counters = _Counters()
        total = len(work) + unchanged
        last_progress = [0.0]

        def progress(force: bool = False) -> IndexProgress:
            now = time.perf_counter()
            p = IndexProgress(
                total,
                counters.done + counters.failed + unchanged,
                counters.failed,
                counters.chunks,
                counters.pages,
                now - start,
                counters.embed_s,
                self.gate.paused,
            )
            job.last_progress = p
            if force or now - last_progress[0] >= _PROGRESS_INTERVAL_S:
                last_progress[0] = now
                self._emit(job, p)
            return p

        ready: queue.Queue[_Work | None] = queue.Queue(maxsize=8)
        producer = threading.Thread(
            target=self._produce, args=(job, work, ready), name="locus-index-parse", daemon=True
        )
        producer.start()
        pending: list[_Work] = []
        finished_producing = False
        embed_failed: EmbeddingError | None = None  # an embedder that cannot go on (server gone): the rest fail
        while not finished_producing or pending:
            # Gather whatever is ready (without waiting once something is in hand) so the
            # embedder gets full batches across small documents.
            while not finished_producing:
                try:
                    parsed = ready.get(timeout=0.05) if not (pending or failures) else ready.get_nowait()
                except queue.Empty:
                    if pending or failures:
                        break
                    continue
                if parsed is None:
                    finished_producing = True
                elif parsed.error is not None:
                    failures.append(parsed)
                else:
                    pending.append(parsed)
                    if sum(len(w.chunks) for w in pending) >= max(EMBED_BATCH, self._embed_request_size()):
                        break
            if pending:
                batch, pending = pending, []
                self._hold(job, progress)
                if job.cancel_event.is_set() or embed_failed is not None:
                    cancelled = IndexingCancelled("Indexing was cancelled before this file was finished.")
                    for item in batch:
                        item.error = embed_failed or cancelled
                    failures.extend(batch)
                else:
                    try:
                        self._embed_and_write(job, batch, counters)
                    except EmbeddingError as exc:  # the batch fails with the reason; its documents can be retried
                        for item in batch:
                            item.error = exc
                        failures.extend(batch)
                        embed_failed = exc if getattr(exc, "ends_job", False) else None
            if failures:
                counters.failed += self._record_failures(job, failures)
                failures = []
            progress()
        producer.join()
        if counters.done or removals:
            self._maintain(purge=bool(removals))
        final = progress(force=True)
        return IndexFinished(
            final,
            counters.done,
            unchanged,
            counters.failed,
            len(removals),
            job.cancel_event.is_set(),
            len(skipped),
        )

    def _maintain(self, *, purge: bool = False) -> None:
        """After a job that wrote: fold new rows into the indexes, compact, build the ANN index once it pays;
        after one that removed documents, also rewrite the tables so nothing of them stays on disk."""
        try:
            self.store.purge() if purge else self.store.optimize()
        except Exception:
            log.exception("optimising the document index failed")

    def _produce(self, job: IndexJob, work: list[_Work], ready: queue.Queue) -> None:
        """Parse (in worker processes) and chunk, handing documents to the embedder as they finish."""
        by_path = {w.record.path: w for w in work}
        try:

            def started(path: str) -> None:
                self.gate.wait(job.cancel_event)  # paused: the next file waits (a parser thread blocks here)
                item = by_path.get(path)
                if item is not None:
                    item.span.add_event("parsing")
                    item.record = self._status(job, item.record, "parsing", persist=False)

            with ParsePool(workers=self.parse_workers, timeout_s=self.parse_timeout_s, ocr=self.ocr) as pool:
                for outcome in pool.parse_many(list(by_path), cancel=job.cancel_event, on_start=started):
                    item = by_path.pop(outcome.path)
                    if outcome.error is not None:
                        item.error = outcome.error
                    else:
                        item.document = outcome.document
                        try:
                            item.chunks = self.chunker.chunk(item.loaded)
                        except Exception as exc:  # noqa: BLE001 - one bad document must not stop the rest
                            item.error = DocumentError(
                                f"'{Path(item.record.path).name}' could not be split into passages.", detail=repr(exc)
                            )
                        if not item.chunks and item.error is None:
                            item.error = EmptyDocument(f"'{Path(item.record.path).name}' has no text to index.")
                    item.span.add_event("parsed", {"chunks": len(item.chunks)})
                    ready.put(item)
        except BaseException as exc:
            log.exception("parse stage failed")
            for item in by_path.values():
                item.error = DocumentError("The document parser could not run.", detail=repr(exc))
                ready.put(item)
            by_path.clear()
        finally:
            for item in by_path.values():  # cancelled before it was parsed
                item.error = IndexingCancelled("Indexing was cancelled before this file was read.")
                ready.put(item)
            ready.put(None)

    def _record_failures(self, job: IndexJob, items: list[_Work]) -> int:
        """Record failed and cancelled documents (two writes for all of them); returns how many failed."""
        records, stale = [], []
        for item in items:
            error = item.error
            if isinstance(error, IndexingCancelled):
                records.append(
                    replace(
                        item.record,
                        status="cancelled",
                        reason="cancelled",
                        message=error.message,
                        updated_at=time.time(),
                    )
                )
                continue
            keep = isinstance(error, EmbeddingError)  # the embedder failed, not the file: its indexed version stays
            if item.record.content_hash and not keep:
                stale.append(item.record.doc_id)  # a changed file that now fails has no valid chunks
            records.append(
                replace(
                    item.record,
                    # "skipped": a scan while OCR is off (ocr.OcrOff); indexed again once OCR is on, it is read
                    status=getattr(error, "index_status", "failed"),
                    reason=getattr(error, "status", "") or "failed",
                    message=error.user_text() if error is not None else "",
                    content_hash=item.record.content_hash if keep else "",
                    n_chunks=item.record.n_chunks if keep else 0,
                    updated_at=time.time(),
                )
            )
        self.store.replace_chunks_many(stale, [])
        self.store.upsert_documents(records)
        for item, record in zip(items, records, strict=True):
            self._announce(job, record)
            spans.finish_index_file(item.span, record, error=item.error)
        return sum(1 for r in records if r.status in ("failed", "skipped"))

    def _embed_request_size(self) -> int:
        """Chunks the embedder takes at once to fill its device (a GPU's batch is larger); 0 when unknown."""
        return int(getattr(self.embedder, "request_size", 0) or 0)

    def _embed_and_write(self, job: IndexJob, batch: list[_Work], counters: _Counters) -> None:
        """Embed a batch of documents' chunks, then write them (one commit for all their chunks, one
        for their records): each document is then wholly old or wholly new, never half."""
        for item in batch:
            item.span.add_event("embedding")
            item.record = self._status(job, item.record, "embedding", persist=False)
        texts = [embedding_text(item.loaded.title, chunk) for item in batch for chunk in item.chunks]
        t = time.perf_counter()
        vectors = self.embedder.embed(texts)
        counters.embed_s += time.perf_counter() - t
        rows, offset = [], 0
        for item in batch:
            for chunk in item.chunks:
                rows.append(_row(item, item.loaded, chunk, vectors[offset]))
                offset += 1
        self.store.replace_chunks_many([item.record.doc_id for item in batch], rows)
        for item in batch:
            doc = item.loaded
            item.record = replace(
                item.record,
                status="done",
                title=doc.title or Path(doc.path).name,
                kind=doc.kind,
                content_hash=item.content_hash,
                n_chunks=len(item.chunks),
                pages=doc.pages or 0,
                reason=ocr_reason(doc),
                message=ocr_message(doc),
                updated_at=time.time(),
            )
        self.store.upsert_documents([item.record for item in batch])
        for item in batch:
            self._announce(job, item.record)
            spans.finish_index_file(item.span, item.record, chunks=len(item.chunks), pages=item.loaded.pages or 0)
            counters.done += 1
            counters.chunks += len(item.chunks)
            counters.pages += item.loaded.pages or 0


def ocr_reason(doc: LoadedDocument) -> str:
    """A done document's reason: "OCR 3 pages" when OCR read some of it, else ""."""
    if not doc.ocr_pages:
        return ""
    return f"OCR {doc.ocr_pages} page{'s' if doc.ocr_pages != 1 else ''}"


def ocr_message(doc: LoadedDocument) -> str:
    if not doc.ocr_pages:
        return ""
    if doc.kind == "image" and (doc.pages or 1) == 1:
        return "The image's text was read by OCR."
    read = f"{doc.ocr_pages} of {doc.pages or doc.ocr_pages} pages had no text layer and were read by OCR."
    if doc.ocr_left_out:
        from engine.rag.ocr import MAX_OCR_PAGES

        read += (
            f" {doc.ocr_left_out} more pages without a text layer were not read: OCR reads at most"
            f" {MAX_OCR_PAGES} pages of one document."
        )
    return read


def embedding_text(title: str, chunk: Chunk) -> str:
    """What is embedded: the passage with its document title and heading for context."""
    context = " — ".join(x for x in (title, chunk.heading) if x)
    return f"{context}\n{chunk.text}" if context else chunk.text


def _row(item: _Work, doc: LoadedDocument, chunk: Chunk, vector) -> dict:
    record = item.record
    return {
        "chunk_id": f"{record.doc_id}-{item.content_hash[:10]}-{chunk.index}",
        "doc_id": record.doc_id,
        "collection": record.collection,
        "path": record.path,
        "title": doc.title or Path(doc.path).name,
        "kind": doc.kind,
        "chunk_index": chunk.index,
        "text": chunk.text,
        "n_tokens": chunk.n_tokens,
        "page": chunk.page,
        "line_start": chunk.line_start,
        "line_end": chunk.line_end,
        "heading": chunk.heading,
        "place": chunk.place,
        "place_label": chunk.label,
        "place_within": chunk.within,
        "vector": vector.tolist(),
    }


def default_parse_workers() -> int:
    """Leave cores for the embedder: one parser per four cores, at least one."""
    return max(1, (os.cpu_count() or 2) // 4)
