"""The model manager in the real window: verdicts for this machine, import, switching without a restart.

Set LOCUS_SCREENSHOTS to a folder (docs/screenshots) to save the manager's screenshot while these run.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from PySide6.QtWidgets import QMessageBox

from engine.models.hardware import Hardware

PROFILES = Path(__file__).resolve().parents[1] / "data" / "hardware"


def rows(manager) -> list[list[str]]:
    table = manager.local.table
    return [[table.item(r, c).text() for c in range(table.columnCount())] for r in range(table.rowCount())]


def test_manager_shows_verdicts_imports_and_switches_model(qtbot, loaded_window, services, tmp_path, corrupt_model):
    window = loaded_window
    # A recorded profile of an 8 GB NVIDIA card stands in for the GPU this machine does not have.
    services._hardware = Hardware.from_json((PROFILES / "rtx4060_8gb.json").read_text())
    manager = window.model.open_manager()
    qtbot.waitUntil(lambda: manager.local.table.rowCount() == 1, timeout=20_000)
    (bundled,) = rows(manager)
    assert bundled[0].endswith("(in use)") and bundled[1:4] == ["llama", "135 M", "Q4_1"]
    assert bundled[6] == "yes" and "full" in bundled[7].lower(), bundled
    qtbot.waitUntil(lambda: "RTX 4060" in manager.hardware_label.text(), timeout=10_000)

    # A broken file is refused with the reason; nothing is added.
    manager.local.import_file(str(corrupt_model))
    qtbot.waitUntil(lambda: window.findChild(QMessageBox, "errorBox") is not None, timeout=20_000)
    box = [b for b in window.findChildren(QMessageBox, "errorBox") if b.isVisible()][-1]
    assert "truncated" in box.text().lower()
    box.close()

    copy = tmp_path / "smol-copy.gguf"
    shutil.copy(services.runtime.model_info.path, copy)
    with qtbot.waitSignal(manager.local.listed, timeout=60_000):
        manager.local.import_file(str(copy))
    qtbot.waitUntil(lambda: manager.local.table.rowCount() == 2, timeout=20_000)
    imported = services.paths.models_dir / "smol-copy.gguf"
    assert imported.exists() and rows(manager)[1][0] == "smol-copy"

    manager.local.select(str(imported))
    with qtbot.waitSignal(window.bridge.modelLoaded, timeout=120_000) as loaded:
        manager.local.default_button.click()
    assert loaded.args[0].info.path == str(imported) and services.settings.model.path == str(imported)
    assert services.settings.model.gpu_layers == 31  # the plan: all 30 layers and the output layer on the card
    qtbot.waitUntil(lambda: rows(manager)[1][0] == "smol-copy  (in use)", timeout=20_000)
    assert "ctx" in window.model_label.text()

    folder = os.environ.get("LOCUS_SCREENSHOTS")
    if folder:
        manager.local.table.selectRow(1)
        qtbot.wait(200)
        manager.grab().save(os.path.join(folder, "models.png"))
    manager.close()
