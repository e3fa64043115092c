"""Wires the Documents panel to the document library: opening it, indexing, drops, viewing sources."""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDockWidget, QMainWindow

from engine.rag.indexer import DocumentStatus, IndexFinished, IndexProgress
from engine.rag.store import EmbeddingModelMismatch
from engine.tasks.summarize import join_documents
from ui.bridge import EngineBridge
from ui.documents_panel import DocumentsPanel
from ui.errors import describe, show_error
from ui.library_watch import IndexWatch
from ui.ops import run_in_background
from ui.plain import confirm
from ui.source_viewer import SourceViewer

log = logging.getLogger(__name__)


class DocumentsController(QObject):
    libraryReady = Signal(object)  # the opened DocumentLibrary
    collectionsChanged = Signal(list)  # names of the collections in the index
    indexingFinished = Signal(object)  # IndexFinished
    summaryTextReady = Signal(str, str, bool)  # title, text to summarize, in a new chat
    selectionTask = Signal(str, str)  # (task mode, text selected in a source viewer)

    def __init__(self, window: QMainWindow, services, bridge: EngineBridge):
        super().__init__(window)
        self.window = window
        self.services = services
        self.library = None
        self.open_error: str | None = None
        self._pending_adds: list[tuple[list[str], str, bool]] = []
        self.viewers: list[SourceViewer] = []
        self.watch: IndexWatch | None = None  # notices what other Locus processes change in the index
        self._refreshing = False
        self._refresh_again = False
        self.panel = DocumentsPanel(window)
        self.dock = QDockWidget("Documents", window)
        self.dock.setObjectName("documentsDock")
        self.dock.setWidget(self.panel)
        window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock)
        window.resizeDocks([self.dock], [440], Qt.Orientation.Horizontal)
        self.toggle_action: QAction = self.dock.toggleViewAction()
        self.toggle_action.setShortcut(QKeySequence("Ctrl+D"))
        self.panel.addRequested.connect(self.add)
        self.panel.removeRequested.connect(lambda ids: self._with_library(lambda lib: lib.remove(ids)))
        self.panel.reindexRequested.connect(lambda ids: self._with_library(lambda lib: lib.reindex(ids)))
        self.panel.cancelRequested.connect(lambda: self._with_library(lambda lib: lib.cancel()))
        self.panel.openRequested.connect(self.open_source)
        self.panel.summarizeRequested.connect(self.summarize_document)
        self.panel.summarizeCollectionRequested.connect(self.summarize_collection)
        bridge.indexEvent.connect(self._on_index_event)
        self.bridge = bridge

    # Opening -----------------------------------------------------------------------

    def open(self) -> None:
        """Open the index and finish interrupted work off the GUI thread, then start watching."""

        def open_and_resume(rebuild: bool = False):
            library = self.services.open_library(self.bridge.index_sink, rebuild=rebuild)
            library.resume()  # reads the index (LanceDB): not on the GUI thread
            return library

        def opened(library) -> None:
            self.library = library
            library.start_watching()
            self.watch = IndexWatch(str(library.store.directory), library.store.change_stamp, self)
            self.watch.changed.connect(lambda: self.refresh(quiet=True))
            self.libraryReady.emit(library)
            self.refresh()
            for paths, collection, watch in self._pending_adds:
                self.add(paths, collection, watch)
            self._pending_adds.clear()

        def failed(exc: BaseException) -> None:
            if isinstance(exc, EmbeddingModelMismatch) and self._confirm_rebuild(exc):
                run_in_background(lambda: open_and_resume(rebuild=True), opened, failed, owner=self.window)
                return
            self.open_error = describe(exc)
            self.panel.progress_label.setText(self.open_error)
            self.panel.progress_label.show()
            show_error(self.window, "Documents unavailable", exc)

        run_in_background(open_and_resume, opened, failed, owner=self.window)

    def _confirm_rebuild(self, exc: EmbeddingModelMismatch) -> bool:
        return confirm(
            self.window,
            "Re-index documents?",
            f"{exc.message}\n\nRe-index every document with the new model now? The old index is kept "
            "aside, and your files are not touched.",
        )

    def refresh(self, quiet: bool = False) -> None:
        """List the documents again (off the GUI thread) and show them; one listing at a time, the newest
        wins. ``quiet``: asked by the index watch, so a failure is logged rather than shown in a box."""
        if self.library is None:
            return
        if self._refreshing:
            self._refresh_again = True
            return
        self._refreshing = True
        library = self.library

        def read():
            stamp = library.store.change_stamp()  # first: a change made during the listing is noticed after
            return stamp, library.documents()

        def show(result) -> None:
            stamp, records = result
            if self.watch is not None:
                self.watch.seen = stamp
            self.panel.set_documents(records)
            self.collectionsChanged.emit(sorted({r.collection for r in records}))
            self._refreshed()

        def failed(exc: BaseException) -> None:
            if quiet:
                log.warning("the document list could not be read again: %s", describe(exc))
            else:
                show_error(self.window, "Documents", exc)
            self._refreshed()

        run_in_background(read, show, failed, owner=self.window)

    def _refreshed(self) -> None:
        self._refreshing = False
        if self._refresh_again:
            self._refresh_again = False
            self.refresh(quiet=True)

    # Actions -----------------------------------------------------------------------

    def _with_library(self, action) -> None:
        if self.library is None:
            show_error(
                self.window,
                "Documents",
                self.open_error or "The document index is still opening; try again in a moment.",
            )
            return
        run_in_background(
            lambda: action(self.library), None, lambda exc: show_error(self.window, "Documents", exc), owner=self.window
        )

    def add(self, paths: list[str], collection: str = "default", watch: bool = False) -> None:
        """Index files and folders (queued until the index is open)."""
        paths = [p for p in paths if p]
        if not paths:
            return
        if self.library is None and self.open_error is None:
            self._pending_adds.append((paths, collection, watch))
            self.panel.progress_label.setText("Opening the document index…")
            self.panel.set_busy(True)
            return
        self.dock.show()
        self.panel.collection.setCurrentText(collection)

        def start(library) -> None:
            library.index(paths, collection)
            if watch:
                for path in paths:
                    if Path(path).is_dir():
                        library.watch(path, collection)

        self._with_library(start)

    def summarize_document(self, path_or_id: str, new_chat: bool = True) -> None:
        """Read a document's text off the GUI thread, then hand it on to be summarized."""

        def read(library):
            record, text = library.document_text(path_or_id)
            return record.title or Path(record.path).name, text

        self._read_for_summary(read, new_chat)

    def summarize_collection(self, name: str, new_chat: bool = True) -> None:
        """Summarize every document of a collection together (each under its own heading)."""

        def read(library):
            documents = [(record, body) for record, body in library.collection_text(name) if body.strip()]
            text = join_documents(documents)
            count = len(documents)
            return f"collection \u201c{name}\u201d ({count} document{'s' * (count != 1)})", text

        self._read_for_summary(read, new_chat)

    def _read_for_summary(self, read, new_chat: bool) -> None:
        if self.library is None:
            show_error(
                self.window,
                "Summarize",
                self.open_error or "The document index is still opening; try again in a moment.",
            )
            return
        library = self.library
        self.window.statusBar().showMessage("Reading the document…", 3000)
        run_in_background(
            lambda: read(library),
            lambda found: self.summaryTextReady.emit(*found, new_chat),
            lambda exc: show_error(self.window, "Summarize", exc),
            owner=self.window,
        )

    def handle_drop(self, paths: list[str]) -> None:
        self.panel.add_paths(paths)

    def open_source(self, source: dict) -> SourceViewer:
        viewer = SourceViewer(source, self.window, chunks=self._indexed_chunks)
        viewer.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        viewer.selectionTask.connect(self.selectionTask)
        viewer.destroyed.connect(lambda: self.viewers.remove(viewer) if viewer in self.viewers else None)
        self.viewers.append(viewer)
        viewer.show()
        return viewer

    def _indexed_chunks(self, doc_id: str) -> list[dict]:
        """A document's chunks from the index, for the source viewer (called off the GUI thread)."""
        library = self.library
        return library.store.chunk_rows(doc_id) if library is not None else []

    def _on_index_event(self, event) -> None:
        if isinstance(event, DocumentStatus):
            self.panel.update_status(event)
            if event.status == "removed" and event.message:  # says what went with it (its traces)
                self.window.statusBar().showMessage(event.message, 8000)
        elif isinstance(event, IndexProgress):
            if event.files_total or event.paused:  # a job queued while paused has no files counted yet
                self.panel.show_progress(event)
                self.window.statusBar().showMessage(
                    f"Indexing paused: {event.files_done}/{event.files_total} files"
                    if event.paused
                    else f"Indexing: {event.files_done}/{event.files_total} files, {event.chunks_per_s:.1f} chunks/s",
                    0 if event.paused else 3000,
                )
        elif isinstance(event, IndexFinished):
            if self.window.statusBar().currentMessage().startswith("Indexing paused"):
                self.window.statusBar().clearMessage()
            self.panel.set_busy(False)
            self.refresh()
            self.indexingFinished.emit(event)
