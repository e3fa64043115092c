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


def an_8gb_nvidia_card(monkeypatch) -> None:
    """A recorded profile of an 8 GB NVIDIA card stands in for the GPU this machine does not have: the
    hardware probe (the seam the services call) answers it."""
    profile = Hardware.from_json((PROFILES / "rtx4060_8gb.json").read_text())
    monkeypatch.setattr("engine.models.hardware.probe", lambda: profile)


def test_manager_shows_verdicts_imports_and_switches_model(
    qtbot, loaded_window, services, tmp_path, corrupt_model, monkeypatch
):
    window = loaded_window
    an_8gb_nvidia_card(monkeypatch)
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
    shutil.copy(services.backends.resolve(None)[1].model_info.path, copy)
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


def test_hub_search_shows_verdicts_and_downloads_into_the_local_list(qtbot, window, services, model_path, monkeypatch):
    """The hub cannot be reached here: a hub-shaped server on loopback serves the files, and HfApi answers
    from hub-shaped JSON (the narrowest seam); everything else is the real window, downloader and planner."""
    import hashlib
    import threading

    from engine.models.hub import HubClient
    from tests.hub_fakes import FakeApi, FakeHub, QuietServer, hub_handler

    model = Path(model_path).read_bytes()
    commit = "0123456789abcdef0123456789abcdef01234567"
    hub = FakeHub({f"/org/smol-GGUF/resolve/{commit}/smol-Q4_1.gguf": model})
    server = QuietServer(("127.0.0.1", 0), hub_handler(hub))
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    sha = hashlib.sha256(model).hexdigest()
    siblings = [
        {
            "rfilename": "smol-Q4_1.gguf",
            "size": len(model),
            "lfs": {"size": len(model), "sha256": sha, "pointerSize": 134},
        },
        {
            "rfilename": "smol-F16.gguf",
            "size": 100 * len(model),
            "lfs": {"size": 100 * len(model), "sha256": sha, "pointerSize": 134},
        },
    ]
    api = FakeApi(
        models=[{"id": "org/smol-GGUF", "downloads": 1234, "likes": 5, "gated": False}],
        info={"id": "org/smol-GGUF", "sha": commit, "siblings": siblings},
    )
    monkeypatch.setattr(services, "hub_client", lambda: HubClient(endpoint=endpoint, api=api))
    an_8gb_nvidia_card(monkeypatch)
    try:
        manager = window.model.open_manager()
        manager.tabs.setCurrentWidget(manager.hub)
        with qtbot.waitSignal(manager.hub.searched, timeout=20_000):
            manager.hub.query.setText("smol")
            manager.hub.search()
        assert manager.hub.repo_table.item(0, 0).text() == "org/smol-GGUF"
        with qtbot.waitSignal(manager.hub.quantsShown, timeout=30_000):
            manager.hub.repo_table.selectRow(0)
        table = manager.hub.quant_table
        verdicts = {table.item(r, 0).text(): table.item(r, 3).text() for r in range(table.rowCount())}
        assert verdicts["Q4_1"].startswith("Full GPU") and verdicts["F16"].startswith("Partial"), verdicts
        folder = os.environ.get("LOCUS_SCREENSHOTS")
        if folder:
            manager.grab().save(os.path.join(folder, "models-hub.png"))

        table.selectRow([table.item(r, 0).text() for r in range(table.rowCount())].index("Q4_1"))
        with qtbot.waitSignal(manager.hub.downloaded, timeout=60_000) as arrived:
            manager.hub.download_button.click()
        assert Path(arrived.args[0]) == services.paths.models_dir / "smol-Q4_1.gguf"
        qtbot.waitUntil(lambda: manager.local.table.rowCount() == 2, timeout=20_000)
        assert rows(manager)[1][:4] == ["smol-Q4_1", "llama", "135 M", "Q4_1"]
        manager.close()
    finally:
        server.shutdown()
        server.server_close()
