"""An indexing job, the events it sends its listeners, and the gate that pauses indexing.

Split from indexer.py, which runs the jobs; everything here is plain data or a
thread-safe flag, so the indexer's threads and its callers can share it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from opentelemetry.trace import INVALID_SPAN, Span

from engine.rag.loaders import DocumentError
from engine.rag.store import DEFAULT_COLLECTION


class IndexingCancelled(DocumentError):
    """The job was cancelled before this document was finished."""

    status = "cancelled"


@dataclass(frozen=True)
class DocumentStatus:
    """A document changed state: queued, parsing, embedding, done, failed, cancelled, removed, unchanged;
    or "skipped": a link in an added folder that was not followed (``path`` is the link, ``reason`` says why)."""

    doc_id: str
    path: str
    collection: str
    status: str
    reason: str = ""
    message: str = ""
    n_chunks: int = 0


@dataclass(frozen=True)
class IndexProgress:
    """How far the running job is; ``paused``: it waits for indexing to be resumed."""

    files_total: int
    files_done: int  # finished one way or another (done, failed, unchanged)
    files_failed: int
    chunks_done: int
    pages_done: int
    elapsed_s: float
    embed_busy_s: float  # time the embedder spent embedding (for the throughput benchmark)
    paused: bool = False

    @property
    def files_per_s(self) -> float:
        return self.files_done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def chunks_per_s(self) -> float:
        return self.chunks_done / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass(frozen=True)
class IndexFinished:
    """A job ended: how many documents were indexed, unchanged, failed and removed, and how many links
    in its folders were not followed."""

    progress: IndexProgress
    indexed: int
    unchanged: int
    failed: int
    removed: int
    cancelled: bool
    skipped: int = 0


IndexEvent = DocumentStatus | IndexProgress | IndexFinished


class IndexJob:
    """A queued or running job: index paths, re-index documents, or remove documents."""

    def __init__(
        self,
        kind: str,
        *,
        paths: Iterable[str] = (),
        collection: str = DEFAULT_COLLECTION,
        doc_ids: list[str] | None = None,
        prune: bool = True,
        force: bool = False,
        on_event: Callable[[IndexEvent], None] | None = None,
    ):
        self.kind = kind  # "index", "reindex" or "remove"
        self.paths = list(paths)
        self.collection = collection
        self.prune = prune
        self.force = force
        self.doc_ids = doc_ids
        self.on_event = on_event
        self.cancel_event = threading.Event()
        self.finished = threading.Event()
        self.result: IndexFinished | None = None
        self.error: BaseException | None = None
        self.span: Span = INVALID_SPAN  # the job's trace: one "index" span with an "index_file" child per file
        self.trace_id: str | None = None
        self.last_progress: IndexProgress | None = None  # re-sent, marked paused, when indexing pauses

    def cancel(self) -> None:
        self.cancel_event.set()

    def wait(self, timeout: float | None = None) -> IndexFinished | None:
        self.finished.wait(timeout)
        if self.error is not None:
            raise self.error
        return self.result


class PauseGate:
    """Open unless paused; the indexer's threads wait at it between files and between batches."""

    _POLL_S = 0.1  # how soon a waiting thread notices a cancel

    def __init__(self):
        self._open = threading.Event()
        self._open.set()

    @property
    def paused(self) -> bool:
        return not self._open.is_set()

    def pause(self) -> None:
        self._open.clear()

    def resume(self) -> None:
        self._open.set()

    def wait(self, cancel: threading.Event) -> bool:
        """Block while paused, unless ``cancel`` is set; True when it had to wait."""
        waited = False
        while not self._open.wait(self._POLL_S):
            waited = True
            if cancel.is_set():
                break
        return waited
