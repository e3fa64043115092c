"""The welcome: what this computer can run, two or three models that fit it, and one download that switches
Locus over when done, while the bundled model keeps answering. Never modal; Help › Welcome… opens it again."""

from __future__ import annotations

import shutil
from pathlib import Path, PurePosixPath

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QHBoxLayout,
    QProgressBar,
    QPushButton,
    QTableWidgetItem,
    QVBoxLayout,
)

from engine.models.bundled import BUNDLED_LLM_NAME
from engine.models.download_events import (
    DownloadCancelled,
    DownloadDone,
    DownloadFailed,
    DownloadPaused,
    DownloadProgress,
)
from engine.models.recommend import HubPick, Recommendations, fit_words, recommend, resolve_on_hub
from ui.errors import describe
from ui.model_lists import choice_table, show_download_progress
from ui.models.local import human_bytes
from ui.ops import run_in_background
from ui.plain import literal, plain_label

INTRO = (
    f"Locus is answering with its small bundled model ({BUNDLED_LLM_NAME.split(' (')[0]}). It works offline, "
    "but a larger model that fits this computer answers far better. Choose one to download: you can go on "
    "chatting meanwhile, and Locus switches to it when it is ready."
)
OTHER_MODEL = (
    "Locus is answering with {name}. These models fit this computer; choose one to download and Locus switches "
    "to it when it is ready, while you go on chatting."
)
COLUMNS = ("Model", "Size", "On this computer", "Good for")


class _Relay(QObject):
    """Carries download events from the download thread to the GUI thread."""

    event = Signal(object)


def machine_text(hardware, disk_free: int) -> str:
    """This computer in two lines: cores, RAM, GPU and the disk space for models."""
    gpus = "; ".join(
        f"{g.name} ({g.free_bytes / 2**30:.1f} of {g.total_bytes / 2**30:.1f} GB free)" for g in hardware.gpus
    )
    return (
        f"This computer: {hardware.cpu.cores_physical} cores ({hardware.cpu.cores_logical} threads) · "
        f"RAM {hardware.ram_total / 2**30:.1f} GB ({hardware.ram_available / 2**30:.1f} GB free)\n"
        f"GPU: {gpus or 'none found, models run on the CPU'} · {disk_free / 1e9:.0f} GB free on disk for models"
    )


class Welcome(QDialog):
    """Hardware, recommendations (estimated at once, confirmed by the hub), download and switch."""

    recommended = Signal()  # the picks are listed (from estimates)
    hubChecked = Signal(bool)  # the hub confirmed the picks (True) or could not be reached (False)
    downloaded = Signal(str)  # the chosen file arrived, verified
    switched = Signal(str)  # Locus now answers with that file

    def __init__(self, window):
        super().__init__(window)
        self.setObjectName("welcome")
        self.setWindowTitle("Welcome to Locus")
        self.setModal(False)
        self.resize(860, 350)
        self.window_ = window
        self.services = window.services
        self.recommendations: Recommendations | None = None
        self.hub_picks: list[HubPick] = []
        self.hub_ok = False
        self.handle = None  # the running download
        self.target = ""  # the file downloaded (and switched to)
        self.in_use = False  # Locus answers with it now
        self.hub_error: str | None = None  # why the hub could not be asked
        self.current = "the bundled model"  # the model answering before the switch, in words
        self.previous = ""  # its file ("" for the bundled model), to return to when the new one fails to load
        self._checking = False

        title = plain_label("Welcome to Locus", self, name="welcomeTitle", bold=True)
        self.intro = intro = plain_label(INTRO, self, name="welcomeIntro", wrap=True)
        self.machine = plain_label("Looking at this computer…", self, name="welcomeMachine", wrap=True)
        self.table = choice_table(self, "welcomeModels", COLUMNS, self._update_buttons)
        self.status = plain_label("", self, name="welcomeStatus", wrap=True)
        self.progress = QProgressBar(self)
        self.progress.setRange(0, 1000)
        self.progress.hide()
        self.download_button = QPushButton("Download and use", self)
        self.download_button.setObjectName("welcomeDownload")
        self.download_button.setDefault(True)
        self.download_button.clicked.connect(self.download_selected)
        self.cancel_button = QPushButton("Cancel download", self)
        self.cancel_button.clicked.connect(self.cancel_download)
        self.retry_button = QPushButton("Try again", self)
        self.retry_button.clicked.connect(self.check)
        self.close_button = QPushButton("Not now", self)
        self.close_button.setObjectName("welcomeClose")
        self.close_button.clicked.connect(self.close)
        footnote = plain_label(
            "Help › Welcome… opens this again; File › Models… has every model on the hub.",
            self,
            name="welcomeFootnote",
            wrap=True,
        )
        self._relay = _Relay(self)
        self._relay.event.connect(self._on_download_event)
        window.bridge.modelLoaded.connect(self._model_loaded)
        window.bridge.modelLoadFailed.connect(self._model_failed)

        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.progress, 2)
        for button in (self.retry_button, self.cancel_button, self.close_button, self.download_button):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        for widget in (title, intro, self.machine):
            layout.addWidget(widget)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.status)
        layout.addLayout(buttons)
        layout.addWidget(footnote)
        self._update_buttons()

    # Hardware, picks and the hub ---------------------------------------------------------------------------

    def check(self) -> None:
        """Look at the machine, list the picks from estimates, then confirm them on the hub (off the GUI thread)."""
        if self._checking or self.handle is not None:
            return
        self._checking, self.hub_ok, self.hub_error = True, False, None
        chosen = self.services.settings.model.path
        self.current = "the bundled model" if not chosen else Path(chosen).stem
        self.intro.setText(INTRO if not chosen else OTHER_MODEL.format(name=Path(chosen).stem))
        self.status.setText("Looking at this computer…")
        self._update_buttons()
        services = self.services
        settings = services.settings
        models_dir = services.paths.models_dir

        def look():
            hardware = services.hardware()
            models_dir.mkdir(parents=True, exist_ok=True)
            free = shutil.disk_usage(models_dir).free
            options = {"kv_type": settings.model.kv_cache_type, "flash_attention": settings.model.flash_attention}
            return hardware, free, recommend(hardware, free, settings.model.context_size, **options)

        run_in_background(look, self._show_picks, self._check_failed, owner=self)

    def _show_picks(self, found) -> None:
        hardware, free, recommendations = found
        self.machine.setText(machine_text(hardware, free))
        self.layout().activate()  # the label's new height, before anyone looks
        self.recommendations, self.hub_picks = recommendations, []
        picks = recommendations.picks
        self.table.setRowCount(len(picks))
        for row, pick in enumerate(picks):
            self._fill_row(row, pick, None)
        for column in range(len(COLUMNS) - 1):
            self.table.resizeColumnToContents(column)
        if picks:
            self.table.selectRow(recommendations.default)
        if not picks:
            self._checking = False
            self.status.setText(recommendations.note)
            self._update_buttons()
            self.recommended.emit()
            return
        self.status.setText(
            (recommendations.note + " " if recommendations.note else "") + "Checking the Hugging Face hub…"
        )
        self.recommended.emit()
        services = self.services

        def confirm():
            client = services.hub_client()
            return resolve_on_hub(picks, client.quantizations, services.quantization_verdicts)

        run_in_background(confirm, self._hub_answered, self._hub_failed, owner=self)

    def _fill_row(self, row: int, pick, hub: HubPick | None) -> None:
        candidate = pick.candidate
        plan = hub.plan if hub is not None and hub.plan is not None else pick.plan
        size = hub.quant.size if hub is not None and hub.quant is not None and hub.quant.size else candidate.size_bytes
        default = self.recommendations is not None and row == self.recommendations.default
        fit = hub.problem if hub is not None and hub.problem else fit_words(plan)
        cells = (
            candidate.name + ("  (recommended)" if default else ""),
            human_bytes(size),
            fit + ("" if pick.comfortable or (hub is not None and hub.problem) else ", slower"),
            candidate.blurb,
        )
        for column, text in enumerate(cells):
            item = QTableWidgetItem(text)
            tip = plan.summary if column == 2 else f"{candidate.repo_id} · {candidate.filename}"
            item.setToolTip(literal(tip))
            if hub is not None and hub.problem:
                item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEnabled)
            self.table.setItem(row, column, item)

    def _hub_answered(self, picks: list[HubPick]) -> None:
        self._checking, self.hub_ok, self.hub_picks = False, True, picks
        for row, hub in enumerate(picks):
            self._fill_row(row, hub.recommendation, hub)
        chosen = self.selected_pick()
        if chosen is None or chosen.quant is None:  # the default is gone from the hub: the next one that is not
            rows = [row for row, hub in enumerate(picks) if hub.quant is not None]
            if rows:
                self.table.selectRow(rows[0])
        note = self.recommendations.note if self.recommendations else ""
        if not any(p.quant is not None for p in picks):
            self.status.setText("The hub no longer has these models; File › Models… searches it for others.")
        else:
            self.status.setText((note + " " if note else "") + "Sizes and fit confirmed on the Hugging Face hub.")
        self._update_buttons()
        self.hubChecked.emit(True)

    def _hub_failed(self, exc: BaseException) -> None:
        self._checking, self.hub_ok, self.hub_error = False, False, describe(exc)
        self.status.setText(
            f"{self.hub_error} Locus goes on with {self.current}, which works offline; "
            "try again when the network is back."
        )
        self._update_buttons()
        self.hubChecked.emit(False)

    def _check_failed(self, exc: BaseException) -> None:
        self._checking = False
        self.status.setText(f"Could not look at this computer: {describe(exc)}")
        self._update_buttons()

    # Download and switch -----------------------------------------------------------------------------------

    def selected_pick(self) -> HubPick | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows or rows[0].row() >= len(self.hub_picks):
            return None
        return self.hub_picks[rows[0].row()]

    def download_selected(self) -> None:
        pick = self.selected_pick()
        if pick is None or pick.quant is None or self.handle is not None:
            return
        quant, name = pick.quant, pick.recommendation.candidate.name
        self.download_button.setEnabled(False)
        secrets, downloader = self.services.secrets, self.services.downloader

        def start(found: tuple[str | None, str | None]) -> None:
            token, existing = found
            if existing:  # downloaded before (and verified then): use it
                self.target = existing
                self._update_buttons()
                self._switch_when_free()
                return
            try:
                self.handle = downloader.start(quant, token, self._relay.event.emit)
            except Exception as exc:  # noqa: BLE001 - e.g. not enough disk space: said before any byte
                self.status.setText(f"{describe(exc)} Locus keeps using {self.current}.")
                self._update_buttons()
                return
            self.status.setText(f"Downloading {name}; {self.current} answers meanwhile.")
            self._update_buttons()

        def look() -> tuple[str | None, str | None]:
            final = downloader.final_path(PurePosixPath(quant.filename).name)
            existing = str(final) if final.is_file() else None
            try:
                return secrets.get("hf_token"), existing
            except Exception:  # noqa: BLE001 - no keyring: a public repository needs no token
                return None, existing

        run_in_background(look, start, lambda exc: start((None, None)), owner=self)

    def cancel_download(self) -> None:
        if self.handle is not None:
            self.handle.cancel()

    def _on_download_event(self, event) -> None:
        if isinstance(event, DownloadProgress):
            total = event.total or 0
            show_download_progress(self.progress, event.done, total)
            eta = f", about {event.eta_s:.0f} s left" if event.eta_s else ""
            self.status.setText(
                f"Downloading: {human_bytes(event.done)} of {human_bytes(total) if total else '?'}{eta}. "
                f"{self.current[0].upper()}{self.current[1:]} answers meanwhile."
            )
        elif isinstance(event, DownloadPaused):
            self.status.setText("The download is paused.")
        elif isinstance(event, DownloadDone):
            self.handle = None
            self.target = str(event.path)
            self._update_buttons()
            self.downloaded.emit(self.target)
            self._switch_when_free()
        elif isinstance(event, DownloadCancelled):
            self.handle = None
            self._say(f"Download cancelled; Locus keeps using {self.current}.")
            self._update_buttons()
        elif isinstance(event, DownloadFailed):
            self.handle = None  # its partial file stays: Download continues from it (and so does File › Models…)
            self._say(f"The download failed: {describe(event.error)} Locus keeps using {self.current}.")
            self._update_buttons()

    def _switch_when_free(self) -> None:
        """Switch now, or once the answer being written has ended (a switch would stop it)."""
        window = self.window_
        if window.live is not None:
            self._say("Downloaded. Locus switches to it when the current answer is finished.")
            window.answerFinished.connect(self._answer_ended)
            return
        self._say("Downloaded; checking and loading it…")
        target, catalog = self.target, self.services.catalog

        def checked(model) -> None:
            if model.problem:  # never handed to llama.cpp: the model in use stays
                self.target = ""
                self._say(f"The downloaded file is not a model Locus can use: {model.problem} "
                          f"Locus keeps using {self.current}.")  # fmt: skip
                return
            self.previous = self.services.settings.model.path
            window.model.use(target)

        run_in_background(
            lambda: catalog.describe(Path(target)), checked, lambda exc: self._say(describe(exc)), owner=self
        )

    def _answer_ended(self, _ended) -> None:
        self.window_.answerFinished.disconnect(self._answer_ended)
        self._switch_when_free()

    def _model_loaded(self, event) -> None:
        if self.target and event.info.path == self.target:
            target, self.target = self.target, ""  # switched: later loads (File › Models…) are the user's own
            self.in_use = True
            self._say(f"Locus now answers with {event.info.name}.")
            self._update_buttons()
            self.switched.emit(target)

    def _model_failed(self, event) -> None:
        """The file switched to did not load: back to the model used before (another file's failure is not
        the welcome's to answer)."""
        if not self.target or str(event.path) != self.target or self.window_.model.info is None:
            return
        target, self.target = self.target, ""
        if self.window_.model.info.path != target:  # the model that answered before still does: keep it
            services = self.services
            previous = self.previous
            run_in_background(lambda: services.choose_model(previous), owner=self)
            self._say(f"The new model did not load ({describe(event.error)}); Locus keeps {self.current}.")

    def _say(self, text: str) -> None:
        """In the welcome, and in the window's status bar when the welcome is closed."""
        self.status.setText(text)
        if not self.isVisible():
            self.window_.statusBar().showMessage(text, 15000)

    def _update_buttons(self) -> None:
        downloading = self.handle is not None
        pick = self.selected_pick()
        self.download_button.setEnabled(
            not downloading and not self._checking and pick is not None and pick.quant is not None
        )
        self.cancel_button.setVisible(downloading)
        self.progress.setVisible(downloading)
        self.retry_button.setVisible(self.hub_error is not None and not downloading and not self._checking)
        if downloading:
            self.close_button.setText("Close (the download goes on)")
        elif self.in_use:
            self.close_button.setText("Close")
        elif self.hub_error is not None:
            self.close_button.setText(f"Continue with {self.current}")
        else:
            self.close_button.setText("Not now")


def open_welcome(window, *, first_start: bool = False) -> Welcome:
    """Show the window's welcome (one per window), checking the machine and the hub again when idle; at first
    start, remember that it was shown."""
    welcome = window.findChild(Welcome, "welcome")
    if welcome is None:
        welcome = Welcome(window)
    welcome.show()
    welcome.raise_()
    if welcome.handle is None and not welcome.target:
        welcome.check()
    if first_start:
        services = window.services
        run_in_background(lambda: services.update_settings(lambda s: s.with_value("ui.welcome_shown", True)))
    return welcome


def show_at_first_start(window) -> Welcome | None:
    """The welcome, when it was never shown and the bundled model is the one in use."""
    settings = window.services.settings
    if settings.ui.welcome_shown or settings.model.path or not window.isVisible():
        return None
    return open_welcome(window, first_start=True)
