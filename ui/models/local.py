"""The Local tab of the model manager: models on this machine, their metadata and whether they fit."""

from __future__ import annotations

from PySide6.QtCore import Q_ARG, QMetaObject, Qt, Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QProgressBar,
    QPushButton,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ui.errors import show_error
from ui.model_lists import choice_table
from ui.ops import run_in_background
from ui.plain import literal, plain_label

COLUMNS = ("Model", "Architecture", "Parameters", "Quantization", "Context", "Size", "Chat template", "On this machine")


def human_params(n: int) -> str:
    return f"{n / 1e9:.1f} B" if n >= 1e9 else f"{n / 1e6:.0f} M" if n else ""


def human_bytes(n: int) -> str:
    return f"{n / 2**30:.2f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB"


class LocalModels(QWidget):
    """Lists local models; import (button or drop), delete, and make one the default."""

    chooseRequested = Signal(str)  # a model file to make the default and load ("" for the bundled one)
    draftRequested = Signal(str)  # a model file to draft with for the model in use ("" for no draft)
    listed = Signal()  # the table was filled (tests wait on it)

    def __init__(self, services, parent: QWidget | None = None):
        super().__init__(parent)
        self.services = services
        self.models = []
        self.plans: dict[str, object] = {}
        self.drafts: dict[str, object] = {}  # path -> DraftFit: the models that can draft for the one in use
        self.table = choice_table(self, "localModels", COLUMNS, self._selection_changed)
        self.import_button = QPushButton("Import GGUF…", self)
        self.import_button.clicked.connect(self.choose_file)
        self.delete_button = QPushButton("Delete", self)
        self.delete_button.clicked.connect(self.delete_selected)
        self.default_button = QPushButton("Use this model", self)
        self.default_button.setObjectName("useModelButton")
        self.default_button.clicked.connect(self.use_selected)
        self.draft_button = QPushButton("Use as draft model", self)
        self.draft_button.setObjectName("useDraftButton")
        self.draft_button.setToolTip(
            "Speculative decoding: this smaller model of the same vocabulary guesses the next tokens and the "
            "model in use checks them in one step."
        )
        self.draft_button.clicked.connect(self.draft_selected)
        self.progress = QProgressBar(self)
        self.progress.hide()
        self.note = plain_label("Drop a .gguf file here to import it.", self, name="localNote", wrap=True)
        buttons = QHBoxLayout()
        for widget in (self.import_button, self.delete_button, self.progress):
            buttons.addWidget(widget)
        buttons.addStretch(1)
        buttons.addWidget(self.draft_button)
        buttons.addWidget(self.default_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.note)
        layout.addLayout(buttons)
        self.setAcceptDrops(True)
        self._selection_changed()

    # Listing ---------------------------------------------------------------------------

    def refresh(self) -> None:
        """Read the models and their offload verdicts off the GUI thread."""
        services = self.services

        def read():
            models, plans = services.describe_local_models()
            return models, plans, services.draft_fits(models)

        run_in_background(
            read,
            self._fill,
            lambda exc: show_error(self, "Models", exc),
            owner=self,
        )

    def _fill(self, listing) -> None:
        self.models, self.plans, drafts = listing
        self.drafts = {fit.model.path: fit for fit in drafts}
        settings = self.services.settings.model
        current = settings.path
        drafting = settings.draft_model if settings.speculative == "draft" else ""
        self.table.setRowCount(len(self.models))
        for row, m in enumerate(self.models):
            plan = self.plans.get(m.path)
            active = (m.bundled and not current) or m.path == current
            fit = self.drafts.get(m.path)
            verdict = m.problem or (plan.summary if plan is not None else "")
            if fit is not None:
                verdict = f"Can draft for the model in use ({fit.share:.0%} of its size) · {verdict}"
            cells = (
                m.name + ("  (in use)" if active else "") + ("  (draft)" if drafting and m.path == drafting else ""),
                m.architecture,
                human_params(m.n_params),
                m.quantization,
                f"{m.context_length:,}" if m.context_length else "",
                human_bytes(m.size_bytes),
                "yes" if m.has_chat_template else ("no" if not m.problem else ""),
                verdict,
            )
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(literal(m.path if column == 0 else text))
                if m.problem and column == len(COLUMNS) - 1:
                    item.setForeground(Qt.GlobalColor.red)
                self.table.setItem(row, column, item)
        for column in range(len(COLUMNS) - 1):  # the verdict takes what is left
            self.table.resizeColumnToContents(column)
        if drafts and not drafting:
            self.note.setText(
                f"{drafts[0].model.name} can draft for the model in use (speculative decoding): select it and "
                "press Use as draft model."
            )
        elif drafting:
            name = next((m.name for m in self.models if m.path == drafting), drafting)
            self.note.setText(f"Drafting with {name} (speculative decoding; Settings › Model to turn it off).")
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
        self.delete_button.setEnabled(model is not None and not model.bundled)
        self.default_button.setEnabled(model is not None and model.problem is None)
        self.draft_button.setEnabled(model is not None and model.path in self.drafts)

    # Actions ---------------------------------------------------------------------------

    def use_selected(self) -> None:
        model = self.selected()
        if model is not None and model.problem is None:
            self.chooseRequested.emit("" if model.bundled else model.path)

    def draft_selected(self) -> None:
        model = self.selected()
        if model is not None and model.path in self.drafts:
            self.draftRequested.emit(model.path)

    def choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import a GGUF model", "", "GGUF models (*.gguf)")
        if path:
            self.import_file(path)

    def import_file(self, path: str) -> None:
        """Check and copy a GGUF into the models folder, with progress (a refused file says why)."""
        self.progress.setRange(0, 0)
        self.progress.show()
        self.import_button.setEnabled(False)
        relay = self.progress

        def progress(done: int, total: int) -> None:
            # Called on the worker thread: hand the value to the bar through a queued call.
            QMetaObject.invokeMethod(
                relay, "setValue", Qt.ConnectionType.QueuedConnection, Q_ARG(int, int(done * 1000 / max(total, 1)))
            )

        def imported(model) -> None:
            self._import_ended()
            self.refresh()
            self.note.setText(f"Imported {model.name}.")

        def failed(exc: BaseException) -> None:
            self._import_ended()
            show_error(self, "Model not imported", exc)

        self.progress.setRange(0, 1000)
        catalog = self.services.catalog
        run_in_background(lambda: catalog.import_file(path, on_progress=progress), imported, failed, owner=self)

    def _import_ended(self) -> None:
        self.progress.hide()
        self.import_button.setEnabled(True)

    def delete_selected(self) -> None:
        model = self.selected()
        if model is None or model.bundled:
            return
        if model.path == self.services.settings.model.path:
            show_error(self, "Model in use", "This is the model in use; choose another one first.")
            return
        catalog = self.services.catalog
        run_in_background(
            lambda: catalog.delete(model.path),
            lambda _r: self.refresh(),
            lambda exc: show_error(self, "Model not deleted", exc),
            owner=self,
        )

    def dragEnterEvent(self, event) -> None:
        if any(u.toLocalFile().lower().endswith(".gguf") for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        for url in event.mimeData().urls():
            if url.toLocalFile().lower().endswith(".gguf"):
                self.import_file(url.toLocalFile())
                event.acceptProposedAction()
                return
