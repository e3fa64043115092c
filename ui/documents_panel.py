"""The Documents panel: what is indexed, how indexing goes, and what to add or remove.

It shows plain data (DocumentRecord rows and index events) and asks the window
to act through signals; it never touches the index itself.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QItemSelectionModel, Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QMenu,
    QProgressBar,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from engine.rag.loaders import SUPPORTED_SUFFIXES
from ui.plain import literal, mnemonic_safe, plain_label

DOC_ROLE = Qt.ItemDataRole.UserRole
COLUMNS = ("Document", "Collection", "Status", "Chunks")


def status_text(status: str, reason: str = "") -> str:
    """What the status column says: 'done', 'done · OCR 3 pages', 'failed: password protected',
    'skipped: OCR is off', …"""
    if status in ("failed", "skipped") and reason:
        return f"{status}: {reason}"
    if status == "done" and reason:  # how it was read: "OCR 3 pages"
        return f"done · {reason}"
    return status


class DocumentsPanel(QWidget):
    addRequested = Signal(list, str, bool)  # paths, collection, watch
    removeRequested = Signal(list)  # doc ids
    reindexRequested = Signal(list)  # doc ids
    openRequested = Signal(dict)  # a source-like dict for the viewer
    cancelRequested = Signal()
    summarizeRequested = Signal(str, bool)  # doc id, in a new chat
    summarizeCollectionRequested = Signal(str, bool)  # collection name, in a new chat

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("documentsPanel")
        self.setAcceptDrops(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        hint = plain_label("Drop files or folders here or anywhere on the window.", self, name="dropHint", wrap=True)
        row = QHBoxLayout()
        self.collection = QComboBox(self)
        self.collection.setObjectName("addCollection")
        self.collection.setEditable(True)
        self.collection.addItem("default")
        self.collection.setToolTip("Collection new documents go into (type a new name to create one)")
        add_files = QPushButton("Add files…", self)
        add_files.clicked.connect(self._choose_files)
        add_folder = QPushButton("Add folder…", self)
        add_folder.clicked.connect(self._choose_folder)
        row.addWidget(plain_label("Into:", self))
        row.addWidget(self.collection, 1)
        row.addWidget(add_files)
        row.addWidget(add_folder)
        self.watch = QCheckBox("Watch added folders for changes", self)
        self.watch.setObjectName("watchFolders")
        self.watch.setChecked(True)
        self.progress = QProgressBar(self)
        self.progress.setObjectName("indexProgress")
        self.progress_label = plain_label("", self, name="indexRate", wrap=True)
        self.cancel = QPushButton("Cancel", self)
        self.cancel.setObjectName("cancelIndexing")
        self.cancel.clicked.connect(self.cancelRequested)
        progress_row = QHBoxLayout()
        progress_row.addWidget(self.progress, 1)
        progress_row.addWidget(self.cancel)
        self.tree = QTreeWidget(self)
        self.tree.setObjectName("documentList")
        self.tree.setHeaderLabels(list(COLUMNS))
        self.tree.setRootIsDecorated(False)
        self.tree.setSelectionMode(QTreeWidget.SelectionMode.ExtendedSelection)
        self.tree.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.tree.customContextMenuRequested.connect(self._context_menu)
        self.tree.itemDoubleClicked.connect(lambda item, _c: self._open(item))
        header = self.tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in range(1, len(COLUMNS)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.tree.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        layout.addWidget(hint)
        layout.addLayout(row)
        layout.addWidget(self.watch)
        layout.addLayout(progress_row)
        layout.addWidget(self.progress_label)
        layout.addWidget(self.tree, 1)
        self._shown: dict = {}  # doc id -> the DocumentRecord its row shows (rows equal to it are skipped)
        self.set_busy(False)

    # Content -----------------------------------------------------------------------

    def set_documents(self, records: Sequence) -> None:
        """Show these DocumentRecords (sorted as given). The list is read again whenever any Locus process
        changes the index, so rows are updated in place: only what changed is touched, and the selection,
        the current row and the scroll position stay."""
        wanted = {r.doc_id for r in records}
        for i in reversed(range(self.tree.topLevelItemCount())):
            if self.tree.topLevelItem(i).data(0, DOC_ROLE)["doc_id"] not in wanted:
                self.tree.takeTopLevelItem(i)
        rows = {
            self.tree.topLevelItem(i).data(0, DOC_ROLE)["doc_id"]: self.tree.topLevelItem(i)
            for i in range(self.tree.topLevelItemCount())
        }
        for index, record in enumerate(records):
            item = rows.get(record.doc_id)
            if item is None:
                item = QTreeWidgetItem()
                self.tree.insertTopLevelItem(index, item)
            elif self.tree.indexOfTopLevelItem(item) != index:  # moved (another collection): keep the order
                selected, current = item.isSelected(), self.tree.currentItem() is item
                self.tree.insertTopLevelItem(index, self.tree.takeTopLevelItem(self.tree.indexOfTopLevelItem(item)))
                item.setSelected(selected)
                if current:
                    self.tree.setCurrentItem(item, 0, QItemSelectionModel.SelectionFlag.NoUpdate)
            if self._shown.get(record.doc_id) != record:  # most rows are as they were: nothing to do
                self._fill(
                    item,
                    record.doc_id,
                    record.path,
                    record.collection,
                    record.status,
                    record.reason,
                    record.message,
                    record.n_chunks,
                    record.kind,
                    record.title,
                )
                self._shown[record.doc_id] = record
        self._shown = {doc_id: r for doc_id, r in self._shown.items() if doc_id in wanted}
        names = sorted({r.collection for r in records} | {"default"})
        if [self.collection.itemText(i) for i in range(self.collection.count())] != names:
            current_text = self.collection.currentText()  # what the user chose or is typing stays
            self.collection.clear()
            self.collection.addItems(names)
            self.collection.setCurrentText(current_text or "default")

    @staticmethod
    def _fill(
        item: QTreeWidgetItem, doc_id, path, collection, status, reason, message, n_chunks, kind="", title=""
    ) -> QTreeWidgetItem:
        """Make a row show this document; a value already shown is left alone (no repaint for it)."""
        name = path.rsplit("/", 1)[-1]
        texts = (name, collection, status_text(status, reason), str(n_chunks) if n_chunks else "")
        for column, text in enumerate(texts):
            if item.text(column) != text:
                item.setText(column, text)
        item.setToolTip(0, literal(path))
        item.setToolTip(2, literal(message or ""))
        data = {"doc_id": doc_id, "path": path, "kind": kind, "title": title or name}
        if item.data(0, DOC_ROLE) != data:
            item.setData(0, DOC_ROLE, data)
        return item

    def _item(self, doc_id, path, collection, status, reason, message, n_chunks, kind="", title="") -> QTreeWidgetItem:
        return self._fill(QTreeWidgetItem(), doc_id, path, collection, status, reason, message, n_chunks, kind, title)

    def update_status(self, event) -> None:
        """Apply one DocumentStatus event to its row (adding or removing rows as needed)."""
        self._shown.pop(event.doc_id, None)  # the row no longer shows the record last listed
        item = self.item_for(event.doc_id)
        if event.status == "removed":
            if item is not None:
                self.tree.takeTopLevelItem(self.tree.indexOfTopLevelItem(item))
            return
        if item is None:
            self.tree.addTopLevelItem(
                self._item(
                    event.doc_id,
                    event.path,
                    event.collection,
                    event.status,
                    event.reason,
                    event.message,
                    event.n_chunks,
                )
            )
            return
        item.setText(1, event.collection)
        item.setText(2, status_text(event.status, event.reason))
        item.setText(3, str(event.n_chunks) if event.n_chunks else "")
        item.setToolTip(2, literal(event.message or ""))

    def item_for(self, doc_id: str) -> QTreeWidgetItem | None:
        for i in range(self.tree.topLevelItemCount()):
            item = self.tree.topLevelItem(i)
            if item.data(0, DOC_ROLE)["doc_id"] == doc_id:
                return item
        return None

    def rows(self) -> list[tuple[str, str, str]]:
        """(name, collection, status) of every row, for tests and screenshots."""
        return [
            (self.tree.topLevelItem(i).text(0), self.tree.topLevelItem(i).text(1), self.tree.topLevelItem(i).text(2))
            for i in range(self.tree.topLevelItemCount())
        ]

    def set_busy(self, busy: bool) -> None:
        for widget in (self.progress, self.cancel, self.progress_label):
            widget.setVisible(busy)

    def show_progress(self, progress) -> None:
        self.set_busy(True)
        self.progress.setRange(0, max(1, progress.files_total))
        self.progress.setValue(progress.files_done)
        if getattr(progress, "paused", False):
            self.progress_label.setText(
                f"Indexing paused — {progress.files_done}/{progress.files_total} files (resume from the tray menu)"
            )
            return
        self.progress_label.setText(
            f"{progress.files_done}/{progress.files_total} files · {progress.chunks_done} chunks · "
            f"{progress.files_per_s:.1f} files/s · {progress.chunks_per_s:.1f} chunks/s"
        )

    # Actions -----------------------------------------------------------------------

    def _target_collection(self) -> str:
        return self.collection.currentText().strip() or "default"

    def _choose_files(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Add documents", "", document_filter())
        if paths:
            self.addRequested.emit(paths, self._target_collection(), False)

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder of documents")
        if folder:
            self.addRequested.emit([folder], self._target_collection(), self.watch.isChecked())

    def add_paths(self, paths: list[str]) -> None:
        """What a drop does: index into the chosen collection (folders watched if ticked)."""
        self.addRequested.emit(paths, self._target_collection(), self.watch.isChecked())

    def _selected_ids(self) -> list[str]:
        return [item.data(0, DOC_ROLE)["doc_id"] for item in self.tree.selectedItems()]

    def _open(self, item: QTreeWidgetItem) -> None:
        self._open_document(item.data(0, DOC_ROLE))

    def _open_document(self, data: dict) -> None:
        self.openRequested.emit(
            {
                "path": data["path"],
                "kind": data.get("kind"),
                "title": data.get("title"),
                "page": 1,
                "line_start": 1,
                "location": "",
            }
        )

    def _context_menu(self, pos) -> None:
        item = self.tree.itemAt(pos)
        if item is not None:
            self.menu_for(item).popup(self.tree.viewport().mapToGlobal(pos))

    def menu_for(self, item: QTreeWidgetItem) -> QMenu:
        """The context menu of a row (its actions act on the selection, or on the row itself)."""
        ids = self._selected_ids() or [item.data(0, DOC_ROLE)["doc_id"]]
        data, collection = item.data(0, DOC_ROLE), item.text(1)
        doc_id = data["doc_id"]
        menu = QMenu(self)
        # Values, not the item: the list may be read again (another process indexed) while the menu is open.
        menu.addAction("Open", lambda: self._open_document(data))
        summarize = menu.addMenu("Summarize")
        summarize.setObjectName("summarizeMenu")
        summarize.addAction("This document, in a new chat", lambda: self.summarizeRequested.emit(doc_id, True))
        summarize.addAction("This document, in the current chat", lambda: self.summarizeRequested.emit(doc_id, False))
        summarize.addAction(
            mnemonic_safe(f"Collection \u201c{collection}\u201d, in a new chat"),
            lambda: self.summarizeCollectionRequested.emit(collection, True),
        )
        menu.addAction("Re-index", lambda: self.reindexRequested.emit(ids))
        menu.addAction("Remove from index", lambda: self.removeRequested.emit(ids))
        return menu

    # Drops on the panel itself go the same way as drops on the window.

    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            self.add_paths(paths)
            event.acceptProposedAction()


def document_filter() -> str:
    """The file dialog's filters: every kind Locus reads first, then all files (one named directly that Locus
    cannot read is reported as unsupported, not dropped)."""
    patterns = " ".join(f"*{suffix}" for suffix in sorted(SUPPORTED_SUFFIXES))
    return f"Documents ({patterns});;All files (*)"
