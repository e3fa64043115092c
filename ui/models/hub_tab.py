"""The Hugging Face tab of the model manager: search GGUF repositories, see what fits, download."""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from engine.models.download_events import (
    DownloadCancelled,
    DownloadDone,
    DownloadFailed,
    DownloadPaused,
    DownloadProgress,
)
from engine.models.hub import HubAuthError
from ui.errors import describe, show_error
from ui.model_lists import show_download_progress
from ui.models.local import human_bytes
from ui.ops import run_in_background
from ui.plain import plain_label


class _Relay(QObject):
    """Carries download events from the download thread to the GUI thread."""

    event = Signal(object)


def _table(parent: QWidget, headers: tuple[str, ...]) -> QTableWidget:
    table = QTableWidget(0, len(headers), parent)
    table.setHorizontalHeaderLabels(headers)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.verticalHeader().hide()
    table.horizontalHeader().setSectionResizeMode(len(headers) - 1, QHeaderView.ResizeMode.Stretch)
    return table


class HubModels(QWidget):
    """Search, per-quantization verdicts for this machine, and one download at a time with pause and cancel."""

    searched = Signal()  # the repository list was filled
    quantsShown = Signal()  # the quantization list (with verdicts when known) was filled
    downloaded = Signal(str)  # a file arrived, verified, in the models folder

    def __init__(self, services, parent: QWidget | None = None):
        super().__init__(parent)
        self.services = services
        self.repos, self.quants, self.plans = [], [], {}
        self.handle = None
        self.query = QLineEdit(self)
        self.query.setPlaceholderText("Search GGUF models on Hugging Face, e.g. qwen 7b instruct")
        self.query.returnPressed.connect(self.search)
        search = QPushButton("Search", self)
        search.clicked.connect(self.search)
        self.repo_table = _table(self, ("Repository", "Downloads", "Likes", "Access"))
        self.repo_table.itemSelectionChanged.connect(self._repo_chosen)
        self.quant_table = _table(self, ("Quantization", "File", "Size", "On this machine"))
        self.download_button = QPushButton("Download", self)
        self.download_button.clicked.connect(self.download_selected)
        self.pause_button = QPushButton("Pause", self)
        self.pause_button.clicked.connect(self._pause_or_resume)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.clicked.connect(lambda: self.handle and self.handle.cancel())
        self.progress = QProgressBar(self)
        self.status = plain_label("", self, name="hubStatus", wrap=True)
        self._relay = _Relay(self)
        self._relay.event.connect(self._on_download_event)
        top = QHBoxLayout()
        top.addWidget(self.query, 1)
        top.addWidget(search)
        split = QSplitter(self)
        split.addWidget(self.repo_table)
        split.addWidget(self.quant_table)
        split.setSizes([300, 640])
        row = QHBoxLayout()
        for widget in (self.download_button, self.pause_button, self.cancel_button, self.progress):
            row.addWidget(widget)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(split, 1)
        layout.addWidget(self.status)
        layout.addLayout(row)
        self._pending = []
        self._downloading(False)

    def check_pending(self) -> None:
        """Look for downloads left unfinished by an earlier session."""
        downloader = self.services.downloader
        run_in_background(downloader.pending, self._offer_pending, lambda _exc: None, owner=self)

    def _offer_pending(self, pending) -> None:
        """Downloads left unfinished (e.g. by quitting) can be resumed where they stopped."""
        self._pending = list(pending)
        if self._pending and self.handle is None:
            p = self._pending[0]
            self.status.setText(
                f"Unfinished download: {p.filename} ({human_bytes(p.done_bytes)} of "
                f"{human_bytes(p.size) if p.size else '?'}). Resume continues it."
            )
            self.pause_button.setText("Resume")
            self.pause_button.setEnabled(True)

    # Search and verdicts ---------------------------------------------------------------

    def search(self) -> None:
        text = self.query.text().strip()
        self.status.setText(f"Searching for “{text}”…")
        services = self.services
        run_in_background(lambda: services.hub_client().search(text), self._fill_repos, self._failed, owner=self)

    def _fill_repos(self, repos) -> None:
        self.repos = repos
        self.repo_table.setRowCount(len(repos))
        for row, r in enumerate(repos):
            for column, text in enumerate(
                (r.repo_id, f"{r.downloads:,}", f"{r.likes:,}", "gated: needs a token" if r.gated else "open")
            ):
                self.repo_table.setItem(row, column, QTableWidgetItem(text))
        self.repo_table.resizeColumnsToContents()
        self.status.setText(f"{len(repos)} repositories." if repos else "No GGUF repositories found.")
        self.searched.emit()

    def _repo_chosen(self) -> None:
        rows = self.repo_table.selectionModel().selectedRows()
        if not rows:
            return
        repo = self.repos[rows[0].row()].repo_id
        self.status.setText(f"Reading {repo}…")
        services = self.services

        def look():
            quants = services.hub_client().quantizations(repo)
            try:
                plans = services.quantization_verdicts(quants)
            except Exception as exc:  # noqa: BLE001 - the list is still useful without verdicts
                return quants, {}, describe(exc)
            return quants, plans, ""

        run_in_background(look, self._fill_quants, self._failed, owner=self)

    def _fill_quants(self, found) -> None:
        self.quants, self.plans, problem = found
        self.quant_table.setRowCount(len(self.quants))
        for row, q in enumerate(self.quants):
            plan = self.plans.get(q.filename)
            verdict = plan.summary if plan is not None else (problem or "no verdict (split or unsized file)")
            for column, text in enumerate((q.quant, q.filename, human_bytes(q.size) if q.size else "?", verdict)):
                self.quant_table.setItem(row, column, QTableWidgetItem(text))
        for column in range(3):  # the verdict takes what is left
            self.quant_table.resizeColumnToContents(column)
        self.status.setText("Choose a quantization to download." if self.quants else "This repository has no GGUF.")
        self._downloading(self.handle is not None)
        self.quantsShown.emit()

    def _failed(self, exc: BaseException) -> None:
        self.status.setText(describe(exc))
        if isinstance(exc, HubAuthError) and self._ask_token():
            return
        show_error(self, "Hugging Face", exc)

    def _ask_token(self) -> bool:
        """Ask for a hub token; keep it in the keyring, or for this session when there is none."""
        token, ok = QInputDialog.getText(
            self,
            "Hugging Face token",
            "This repository needs a token with access to it (huggingface.co › Settings › Access Tokens):",
            QLineEdit.EchoMode.Password,
        )
        if not ok or not token.strip():
            return False
        secrets = self.services.secrets

        def keep() -> str:  # the keyring answers over D-Bus (and may ask to unlock): off the GUI thread
            saved, why = secrets.available()
            secrets.set("hf_token", token.strip(), session_only=not saved)
            return "Token saved in the system keyring." if saved else f"{why} The token is kept for this session only."

        run_in_background(keep, self.status.setText, lambda exc: show_error(self, "Token not kept", exc), owner=self)
        return True

    def _with_token(self, then) -> None:
        """Read the hub token from the keyring off the GUI thread, then call ``then(token)`` on it."""
        secrets = self.services.secrets
        run_in_background(
            lambda: secrets.get("hf_token"), then, lambda exc: show_error(self, "Hugging Face token", exc), owner=self
        )

    # Downloading -----------------------------------------------------------------------

    def selected_quant(self):
        rows = self.quant_table.selectionModel().selectedRows()
        return self.quants[rows[0].row()] if rows else None

    def download_selected(self) -> None:
        quant = self.selected_quant()
        if quant is None or self.handle is not None:
            return
        self.download_button.setEnabled(False)

        def start(token: str | None) -> None:
            try:
                self.handle = self.services.downloader.start(quant, token, self._relay.event.emit)
            except Exception as exc:  # noqa: BLE001 - e.g. not enough disk space: said before any byte
                self._downloading(False)
                show_error(self, "Download not started", exc)
                return
            self.status.setText(f"Downloading {quant.filename}…")
            self._downloading(True)

        self._with_token(start)

    def _pause_or_resume(self) -> None:
        if self.handle is not None and self.pause_button.text() == "Pause":
            self.handle.pause()
            return
        if self.handle is None and not self._pending:
            return
        self.pause_button.setEnabled(False)
        self._with_token(self._resume)

    def _resume(self, token: str | None) -> None:
        if self.handle is None and self._pending:
            self.handle = self.services.downloader.resume_pending(self._pending.pop(0), token, self._relay.event.emit)
        elif self.handle is not None:
            self.handle.resume(token)
        self._downloading(self.handle is not None)
        self.pause_button.setText("Pause")

    def _on_download_event(self, event) -> None:
        if isinstance(event, DownloadProgress):
            total = event.total or 0
            show_download_progress(self.progress, event.done, total)
            eta = f", {event.eta_s:.0f} s left" if event.eta_s else ""
            self.status.setText(
                f"{human_bytes(event.done)} of {human_bytes(total)} at {event.bytes_per_s / 2**20:.1f} MB/s{eta}"
            )
        elif isinstance(event, DownloadPaused):
            self.pause_button.setText("Resume")
            self.status.setText("Paused; Resume continues where it stopped (also after a restart).")
        elif isinstance(event, DownloadDone):
            self.handle = None
            self._downloading(False)
            self.status.setText(f"Downloaded and verified: {event.path}")
            self.downloaded.emit(str(event.path))
        elif isinstance(event, DownloadCancelled):
            self.handle = None
            self._downloading(False)
            self.status.setText("Download cancelled; its partial file was deleted.")
        elif isinstance(event, DownloadFailed):
            self.pause_button.setText("Resume")  # resuming retries from where it stopped
            self.status.setText(describe(event.error))

    def _downloading(self, active: bool) -> None:
        self.download_button.setEnabled(not active and bool(self.quants))
        self.pause_button.setEnabled(active)
        self.cancel_button.setEnabled(active)
        self.progress.setVisible(active)
        if not active:
            self.pause_button.setText("Pause")
