"""The model manager window: local models (import, delete, use) and, for each, how it runs here."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QDialog, QTabWidget, QVBoxLayout, QWidget

from ui.errors import show_error
from ui.models.embedding_tab import EmbeddingModels
from ui.models.hub_tab import HubModels
from ui.models.local import LocalModels
from ui.ops import run_in_background
from ui.plain import plain_label


def hardware_text(hw, embedding_device: tuple[str, str] | None = None) -> str:
    """One line about this machine (and where embeddings run) for the top of the window."""
    cpu = hw.cpu
    flags = ", ".join(f for f in ("avx2", "avx512f", "neon") if f in cpu.flags) or "no vector extensions found"
    gpus = (
        "; ".join(f"{g.name} ({g.free_bytes / 2**30:.1f} of {g.total_bytes / 2**30:.1f} GB free)" for g in hw.gpus)
        or "no GPU found (models run on the CPU)"
    )
    return (
        f"CPU: {cpu.cores_logical} threads ({flags}) · RAM: {hw.ram_available / 2**30:.1f} of "
        f"{hw.ram_total / 2**30:.1f} GB free · GPU: {gpus} · Embeddings: "
        + (
            f"the server at {embedding_device[1]}"
            if embedding_device and embedding_device[0] == "server"
            else f"{embedding_device[0].upper()} ({embedding_device[1]})"
            if embedding_device
            else "start with the first document"
        )
    )


class ModelManager(QDialog):
    """Models on this machine and what would fit; choosing one switches to it without a restart."""

    modelChosen = Signal(str)  # the file to use ("" for the bundled model)
    draftChosen = Signal(str)  # the file to draft with for the model in use

    def __init__(self, services, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Models")
        self.resize(1000, 520)
        self.services = services
        self.hardware_label = plain_label("Looking at this machine…", self, name="hardwareLabel", wrap=True)
        self.local = LocalModels(services, self)
        self.local.chooseRequested.connect(self.modelChosen)
        self.local.draftRequested.connect(self.draftChosen)
        self.tabs = QTabWidget(self)
        self.hub = HubModels(services, self)
        self.hub.downloaded.connect(lambda _path: self.local.refresh())
        self.tabs.addTab(self.local, "On this computer")
        self.tabs.addTab(self.hub, "Hugging Face")
        self.embedders = EmbeddingModels(services, self)
        self.tabs.addTab(self.embedders, "Embedding models")
        layout = QVBoxLayout(self)
        layout.addWidget(self.hardware_label)
        layout.addWidget(self.tabs, 1)
        # One job first, then the lists: imports of torch and the planner from two threads at once can
        # meet a package half-initialised by the other.
        run_in_background(
            lambda: (services.hardware(), services.embedding_device()),
            self._ready,
            lambda exc: show_error(self, "Hardware", exc),
            owner=self,
        )

    def _ready(self, found) -> None:
        self.hardware_label.setText(hardware_text(*found))
        self.local.refresh()
        self.embedders.refresh()
        self.hub.check_pending()
