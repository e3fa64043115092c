"""The documents feature as one object: index, list, remove, watch, retrieve, cite.

Opening it imports LanceDB (about a second) and never loads the embedding
model; the model loads on the first embedding (several seconds), off any
interactive thread. Call ``open`` from a background thread.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

from engine.errors import EngineError, InvalidRequestError, NotFoundError
from engine.rag.chunk import Chunker
from engine.rag.cite import Citation, cite
from engine.rag.embed import Embedder, declared_dim
from engine.rag.indexer import DocumentStatus, Indexer, IndexEvent, IndexJob, default_parse_workers
from engine.rag.remote_embed import RemoteEmbedder
from engine.rag.retrieve import Retrieval, _join_overlapping, retrieve
from engine.rag.store import DEFAULT_COLLECTION, DocumentRecord, DocumentStore, EmbeddingModelMismatch

log = logging.getLogger(__name__)


class DocumentLibrary:
    """Indexed documents in collections, searchable for questions."""

    def __init__(
        self,
        index_dir: str | Path,
        embedder_path: str | Path,
        embedder_name: str,
        *,
        parse_workers: int | None = None,
        parse_timeout_s: float = 60.0,
        ocr: bool | None = None,
        watch_interval_s: float = 30.0,
        on_event: Callable[[IndexEvent], None] | None = None,
        tracing=None,
        traces=None,
        remote: RemoteEmbedder | None = None,
    ):
        """``remote``: embed on that server instead of with the local model at ``embedder_path`` (its
        ``embedder_name`` and path are then unused)."""
        self.index_dir = Path(index_dir)
        # The local trace store: a removed document's passages go from it too (see _on_index_event).
        self.traces = traces
        self._on_event = on_event
        self._traces_removed: dict[str, int] = {}
        self._traces_lock = threading.Lock()
        self.embedder: Embedder | RemoteEmbedder
        if remote is not None:
            self.embedder = remote
            embedder_name, dim = remote.name, _remote_dim(self.index_dir, remote)
            remote.expected_dim = dim
        else:
            self.embedder = Embedder(embedder_path, embedder_name)
            declared = declared_dim(embedder_path)
            if declared is None:
                raise EngineError(
                    f"The embedding model at '{embedder_path}' does not say its dimension.",
                    hint="Choose a sentence-transformers model folder.",
                )
            dim = declared
        self.store = DocumentStore(self.index_dir, embedder_name, dim)
        self.chunker = Chunker(self.embedder.tokenizer_file, max_tokens=200, overlap_tokens=32)
        self.indexer = Indexer(
            self.store,
            self.embedder,
            self.chunker,
            parse_workers=parse_workers or default_parse_workers(),
            parse_timeout_s=parse_timeout_s,
            ocr=ocr,
            on_event=self._on_index_event,
            tracing=tracing,
        )
        self.watch_interval_s = watch_interval_s
        self._watch_stop = threading.Event()
        self._watcher: threading.Thread | None = None

    # Indexing ----------------------------------------------------------------------

    def index(
        self,
        paths: Iterable[str | Path],
        collection: str = DEFAULT_COLLECTION,
        on_event: Callable[[IndexEvent], None] | None = None,
    ) -> IndexJob:
        return self.indexer.index(paths, collection, on_event=on_event)

    def reindex(self, doc_ids: Iterable[str], on_event=None) -> IndexJob:
        return self.indexer.reindex(doc_ids, on_event)

    def remove(self, doc_ids: Iterable[str], on_event=None) -> IndexJob:
        return self.indexer.remove(doc_ids, on_event)

    def traces_removed(self, doc_ids: Iterable[str]) -> int:
        """How many traces went with these documents' removal (counted once: read after the job ends)."""
        with self._traces_lock:
            return sum(self._traces_removed.pop(d, 0) for d in doc_ids)

    def _on_index_event(self, event: IndexEvent) -> None:
        """Every document removed (asked for, or its file gone from a watched folder) takes with it the
        traces that quote it; then the caller's listener hears of the event."""
        if isinstance(event, DocumentStatus) and event.status == "removed" and self.traces is not None:
            try:
                self.indexer.tracing.flush()
                removed = self.traces.forget_documents([event.doc_id])
            except EngineError as exc:
                log.warning("the traces of a removed document could not be deleted: %s (%s)", exc, exc.detail)
            else:
                with self._traces_lock:
                    self._traces_removed[event.doc_id] = self._traces_removed.get(event.doc_id, 0) + removed
                event = replace(
                    event,
                    message=f"Removed {Path(event.path).name} and {removed} "
                    f"trace{'' if removed == 1 else 's'} that quoted it.",
                )
        if self._on_event is not None:
            self._on_event(event)

    def resume(self, on_event=None) -> IndexJob | None:
        return self.indexer.resume_interrupted(on_event)

    def cancel(self) -> None:
        self.indexer.cancel_current()

    @property
    def paused(self) -> bool:
        """Indexing is paused (jobs wait between files and batches until resumed)."""
        return self.indexer.paused

    def pause_indexing(self) -> None:
        """Pause indexing, watched folders included; queued work waits and nothing is dropped."""
        self.indexer.pause()

    def resume_indexing(self) -> None:
        """Go on indexing from where it was paused (``resume`` is for work a crash left)."""
        self.indexer.resume()

    def documents(self, collection: str | None = None) -> list[DocumentRecord]:
        return self.store.list_documents(collection)

    def collections(self) -> list[str]:
        return self.store.collections()

    def find(self, path_or_id: str) -> DocumentRecord | None:
        """A document by id or by (absolute or relative) path."""
        for record in self.documents():
            if record.doc_id == path_or_id or record.path == str(Path(path_or_id).expanduser().resolve()):
                return record
        return None

    def document_text(self, path_or_id: str) -> tuple[DocumentRecord, str]:
        """An indexed document's text, rebuilt from its stored chunks in order (their overlap removed)."""
        record = self.find(path_or_id)
        if record is None:
            raise NotFoundError(
                f"No indexed document is '{path_or_id}'.",
                hint="Give the path or id of a document in the index (the Documents panel "
                "lists them, as does 'locus docs list').",
            )
        rows = self.store.chunk_rows(record.doc_id)
        if not rows:
            why = f" ({record.reason or record.status})" if record.status != "done" else ""
            raise InvalidRequestError(
                f"'{record.title or record.path}' has no indexed text{why}.", hint="Index it again once it can be read."
            )
        return record, _rebuild_text(rows)

    def collection_text(self, name: str) -> list[tuple[DocumentRecord, str]]:
        """Every document of a collection that has indexed text, with its text, in path order."""
        records = self.documents(name)
        if not records:
            known = self.collections()
            raise NotFoundError(
                f"There is no document collection '{name}'.",
                hint=f"Collections: {', '.join(known)}." if known else "Nothing is indexed yet.",
            )
        out = []
        for record in records:
            try:
                out.append(self.document_text(record.doc_id))
            except InvalidRequestError:  # a failed or still queued document: summarize the others
                continue
        if not out:
            raise InvalidRequestError(f"No document of the collection '{name}' has indexed text yet.")
        return out

    # Watched folders -------------------------------------------------------------

    def _watch_file(self) -> Path:
        return self.index_dir / "watched.json"

    def watched(self) -> dict[str, str]:
        """Watched folder -> collection."""
        try:
            return json.loads(self._watch_file().read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def watch(self, folder: str | Path, collection: str = DEFAULT_COLLECTION) -> None:
        folders = self.watched()
        folders[str(Path(folder).expanduser().resolve())] = collection
        self._save_watched(folders)
        self.start_watching()

    def unwatch(self, folder: str | Path) -> None:
        folders = self.watched()
        folders.pop(str(Path(folder).expanduser().resolve()), None)
        self._save_watched(folders)

    def _save_watched(self, folders: dict[str, str]) -> None:
        tmp = self._watch_file().with_suffix(".tmp")
        tmp.write_text(json.dumps(folders, indent=1), encoding="utf-8")
        os.replace(tmp, self._watch_file())

    def start_watching(self, on_event: Callable[[IndexEvent], None] | None = None) -> None:
        """Re-index watched folders whenever their files change (checked every watch_interval_s)."""
        if self._watcher is not None and self._watcher.is_alive():
            return
        self._watcher = threading.Thread(target=self._watch_loop, args=(on_event,), name="locus-watcher", daemon=True)
        self._watcher.start()

    def _watch_loop(self, on_event) -> None:
        snapshots: dict[str, dict] = {}
        while not self._watch_stop.wait(self.watch_interval_s):
            for folder, collection in self.watched().items():
                current = _snapshot(folder)
                if snapshots.get(folder) != current:
                    if folder in snapshots or self._differs_from_index(current):
                        self.index([folder], collection, on_event=on_event).wait()
                    snapshots[folder] = current

    def _differs_from_index(self, snapshot: dict) -> bool:
        known = {r.path: (r.size, r.mtime) for r in self.documents()}
        return any(known.get(path) != stat for path, stat in snapshot.items())

    # Questions ---------------------------------------------------------------------

    def retrieve(
        self,
        query: str,
        collections: list[str] | None,
        count_tokens: Callable[[str], int],
        token_budget: int,
        **options,
    ) -> Retrieval:
        return retrieve(
            self.store,
            self.embedder,
            query,
            collections=collections,
            count_tokens=count_tokens,
            token_budget=token_budget,
            **options,
        )

    def cite(self, answer: str, retrieval: Retrieval) -> list[Citation]:
        return cite(answer, retrieval.passages, embed=self.embedder.embed_few)

    def close(self) -> None:
        self._watch_stop.set()
        self.indexer.shutdown()
        self.embedder.close()


def _remote_dim(index_dir: Path, remote: RemoteEmbedder) -> int:
    """The dimension of a server's vectors: the index's when that server's model built it, else, for a new
    index, what the server sends for one word. An index of another model asks for a re-index (as the store
    does), without asking the server anything."""
    try:
        recorded = json.loads((index_dir / "index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        recorded = None
    if not isinstance(recorded, dict):
        return remote.info.dim
    if recorded.get("embedder") != remote.name or not isinstance(recorded.get("dim"), int):
        raise EmbeddingModelMismatch(
            f"The document index was built with {recorded.get('embedder')} ({recorded.get('dim')} dimensions), "
            f"but the embedding model is now {remote.name} from the server at {remote.base_url}.",
            hint="Vectors from two models cannot be mixed: re-index (the window offers it, or run "
            "'locus docs rebuild').",
        )
    return recorded["dim"]


def _rebuild_text(rows: list[dict]) -> str:
    """A document's text from its chunk rows. Chunks of one section overlap by a few tokens; chunks of
    different sections (pages, headings, or lines that do not touch) never do, and are not searched for
    overlap, so that a header repeated on every page is not mistaken for it."""
    rows = sorted(rows, key=lambda r: r["chunk_index"])
    pieces = [rows[0]["text"]]
    for previous, row in itertools.pairwise(rows):
        if _same_section(previous, row):
            joined = _join_overlapping(previous["text"], row["text"])
            if joined != previous["text"] + "\n" + row["text"]:
                pieces.append(joined[len(previous["text"]) :])
                continue
        pieces.append("\n\n" + row["text"])
    return "".join(pieces)


def _same_section(previous: dict, row: dict) -> bool:
    if previous["page"] != row["page"] or previous["heading"] != row["heading"]:
        return False
    if previous["line_end"] is not None and row["line_start"] is not None:
        return row["line_start"] <= previous["line_end"]
    return True


def _snapshot(folder: str) -> dict:
    """path -> (size, mtime) of every indexable file under a folder."""
    from engine.rag.loaders import discover

    out = {}
    for path in discover([folder]):
        try:
            stat = path.stat()
        except OSError:
            continue
        out[str(path)] = (stat.st_size, stat.st_mtime)
    return out
