"""The Embedding models tab of the model manager: which model embeds documents, and choosing another.

Choosing one saves documents.embedding_model (and stops using an embedding server); the index built
with the previous model is not mixed with the new one: when documents next open, Locus offers to
re-index them, as after any change of embedding model.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QPushButton,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ui.errors import show_error
from ui.model_lists import choice_table
from ui.ops import run_in_background
from ui.plain import literal, plain_label

COLUMNS = ("Embedding model", "Dimensions", "Folder")


class EmbeddingModels(QWidget):
    """Lists the local embedding models (the bundled one, <models>/embeddings/*, the configured folder)."""

    listed = Signal()  # the table was filled (tests wait on it)
    chosen = Signal(str)  # the folder now set for documents ("" for the bundled model), once saved

    def __init__(self, services, parent: QWidget | None = None):
        super().__init__(parent)
        self.services = services
        self.models: list = []
        self.table = choice_table(self, "embeddingModels", COLUMNS, self._selection_changed)
        self.add_button = QPushButton("Add folder…", self)
        self.add_button.clicked.connect(self.choose_folder)
        self.use_button = QPushButton("Use for documents", self)
        self.use_button.setObjectName("useEmbedderButton")
        self.use_button.clicked.connect(self.use_selected)
        self.note = plain_label(
            f"Sentence-transformers model folders in {Path(services.paths.models_dir) / 'embeddings'} are listed "
            "here (a multilingual model, for instance). Changing the model re-indexes your documents when they "
            "next open.",
            self,
            name="embeddingNote",
            wrap=True,
        )
        buttons = QHBoxLayout()
        buttons.addWidget(self.add_button)
        buttons.addStretch(1)
        buttons.addWidget(self.use_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.note)
        layout.addLayout(buttons)
        self._extra: str = ""  # a folder added with the button, listed until the window closes
        self._selection_changed()

    def refresh(self) -> None:
        models_dir = self.services.paths.models_dir
        configured = self.services.settings.documents.embedding_model
        extra = self._extra

        def read():  # reads model folders: off the GUI thread
            from engine.models.embedders import describe_folder, embedding_models

            found = embedding_models(models_dir, configured)
            if extra and all(m.path != extra for m in found):
                found.append(describe_folder(extra))
            return found

        run_in_background(read, self._fill, lambda exc: show_error(self, "Embedding models", exc), owner=self)

    def in_use(self, model) -> bool:
        documents = self.services.settings.documents
        if documents.embedding_server:
            return False
        configured = documents.embedding_model
        return (model.bundled and not configured) or (
            bool(configured) and not model.bundled and model.path == str(Path(configured).expanduser())
        )

    def _fill(self, models) -> None:
        self.models = models
        self.table.setRowCount(len(models))
        for row, m in enumerate(models):
            name = f"{m.name} (bundled)" if m.bundled else Path(m.path).name
            name += "  (in use)" if self.in_use(m) else ""
            cells = (name, str(m.dim) if m.dim else "", m.problem or m.path)
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(literal(m.path if column == 0 else text))
                if m.problem and column == len(COLUMNS) - 1:
                    item.setForeground(Qt.GlobalColor.red)
                self.table.setItem(row, column, item)
        for column in range(len(COLUMNS) - 1):
            self.table.resizeColumnToContents(column)
        if self.services.settings.documents.embedding_server:
            self.note.setText(
                f"Documents are embedded by the server at {self.services.settings.documents.embedding_server}. "
                "Choosing a model here embeds them on this computer instead (and re-indexes them when they "
                "next open)."
            )
        self._selection_changed()
        self.listed.emit()

    def selected(self):
        rows = self.table.selectionModel().selectedRows()
        return self.models[rows[0].row()] if rows and rows[0].row() < len(self.models) else None

    def select(self, path: str) -> None:
        for row, m in enumerate(self.models):
            if m.path == path:
                self.table.selectRow(row)

    def _selection_changed(self) -> None:
        model = self.selected()
        self.use_button.setEnabled(model is not None and model.problem is None and not self.in_use(model))

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "A sentence-transformers model folder")
        if folder:
            self.add_folder(folder)

    def add_folder(self, folder: str) -> None:
        self._extra = str(Path(folder).expanduser())
        self.refresh()

    def use_selected(self) -> None:
        """Save the selected model for documents (off the GUI thread); they re-index when they next open."""
        model = self.selected()
        if model is None or model.problem is not None:
            return
        value = "" if model.bundled else model.path
        changes = {"documents.embedding_model": value, "documents.embedding_server": ""}
        services = self.services

        def saved(_reload) -> None:
            self.note.setText(
                f"Documents will be embedded with {model.name if model.bundled else Path(model.path).name}. "
                "When they next open (restart Locus), Locus offers to re-index them with it."
            )
            self.refresh()
            self.chosen.emit(value)

        run_in_background(
            lambda: services.apply_setting_values(changes),
            saved,
            lambda exc: show_error(self, "Embedding model not changed", exc),
            owner=self,
        )
