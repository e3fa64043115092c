"""The model manager window: local models (import, delete, use) and, for each, how it runs here."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QDialog, QLabel, QTabWidget, QVBoxLayout, QWidget

from ui.errors import show_error
from ui.models.local import LocalModels
from ui.ops import run_in_background


def hardware_text(hw) -> str:
    """One line about this machine for the top of the window."""
    cpu = hw.cpu
    flags = ", ".join(f for f in ("avx2", "avx512f", "neon") if f in cpu.flags) or "no vector extensions found"
    gpus = "; ".join(f"{g.name} ({g.free_bytes / 2**30:.1f} of {g.total_bytes / 2**30:.1f} GB free)"
                     for g in hw.gpus) or "no GPU found (models run on the CPU)"
    return (f"CPU: {cpu.cores_logical} threads ({flags}) · RAM: {hw.ram_available / 2**30:.1f} of "
            f"{hw.ram_total / 2**30:.1f} GB free · GPU: {gpus}")


class ModelManager(QDialog):
    """Models on this machine and what would fit; choosing one switches to it without a restart."""

    modelChosen = Signal(str)  # the file to use ("" for the bundled model)

    def __init__(self, services, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Models")
        self.resize(1000, 520)
        self.services = services
        self.hardware_label = QLabel("Looking at this machine…", self)
        self.hardware_label.setObjectName("hardwareLabel")
        self.hardware_label.setWordWrap(True)
        self.local = LocalModels(services, self)
        self.local.chooseRequested.connect(self.modelChosen)
        self.tabs = QTabWidget(self)
        self.tabs.addTab(self.local, "On this computer")
        layout = QVBoxLayout(self)
        layout.addWidget(self.hardware_label)
        layout.addWidget(self.tabs, 1)
        run_in_background(services.hardware, lambda hw: self.hardware_label.setText(hardware_text(hw)),
                          lambda exc: show_error(self, "Hardware", exc), owner=self)
        self.local.refresh()
