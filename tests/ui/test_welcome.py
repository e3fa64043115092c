"""The first-run welcome in the real window: hardware, picks, a download that switches the model while the
bundled one answers, skipping, Help › Welcome, and an unreachable hub.

The hub cannot be reached here: a hub-shaped server on loopback serves the bundled GGUF under every
recommended repository and HfApi answers from hub-shaped JSON (tests/hub_fakes.py, the narrowest seam, as
tests/ui/test_models.py uses it); the hardware probe answers a recorded profile (an 8 GB NVIDIA card).
Everything else is real: the window, the downloader, the planner, the model load. Set LOCUS_SCREENSHOTS to a
folder (docs/screenshots) to save the welcome's screenshot.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import threading
from pathlib import Path

import pytest

from app.gui import launch
from app.paths import resolve_paths
from app.services import build_services
from engine.models.hardware import Hardware
from engine.models.hub import HubClient
from engine.models.recommend import CANDIDATES
from tests.hub_fakes import FakeApi, FakeHub, QuietServer, hub_handler
from ui.ops import wait_for_background
from ui.welcome import Welcome

PROFILES = Path(__file__).resolve().parents[1] / "data" / "hardware"


@pytest.fixture()
def nvidia_8gb(monkeypatch):
    profile = Hardware.from_json((PROFILES / "rtx4060_8gb.json").read_text())
    monkeypatch.setattr("engine.models.hardware.probe", lambda: profile)
    return profile


def serve_hub(services, data: bytes, monkeypatch):
    """Every recommended repository holds one Q4_K_M file with these bytes; the services ask this hub."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    hub = FakeHub({f"/{c.repo_id}/resolve/{commit}/model-Q4_K_M.gguf": data for c in CANDIDATES})
    server = QuietServer(("127.0.0.1", 0), hub_handler(hub))
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    sha = hashlib.sha256(data).hexdigest()
    lfs = {"size": len(data), "sha256": sha, "pointerSize": 134}
    api = FakeApi(info={"id": "org/model-GGUF", "sha": commit, "siblings": [
        {"rfilename": "model-Q4_K_M.gguf", "size": len(data), "lfs": lfs},
    ]})  # fmt: skip
    monkeypatch.setattr(services, "hub_client", lambda: HubClient(endpoint=endpoint, api=api))
    return hub, server


@pytest.fixture()
def fake_hub(services, model_path, monkeypatch):
    """The bundled GGUF under every recommended repository (so the switch loads a real model)."""
    hub, server = serve_hub(services, Path(model_path).read_bytes(), monkeypatch)
    yield hub
    server.shutdown()
    server.server_close()


def started(qtbot, services):
    """What `locus` starts: the window, the tray, the model loading, the welcome at first start."""
    desktop = launch(services, "test")
    qtbot.addWidget(desktop.window)
    qtbot.addWidget(desktop.tray.quick_ask)
    desktop.window.removeEventFilter(desktop.tray)  # the test closes the window: that is no quit
    return desktop


def welcome_rows(welcome) -> list[list[str]]:
    table = welcome.table
    return [[table.item(r, c).text() for c in range(table.columnCount())] for r in range(table.rowCount())]


def help_welcome(window):
    (action,) = [a for a in window.menuBar().actions() if a.text() == "&Help"]
    (entry,) = [a for a in action.menu().actions() if a.text() == "&Welcome…"]
    entry.trigger()
    return window.findChild(Welcome, "welcome")


def test_first_start_shows_the_machine_and_picks_and_skipping_it_is_remembered(qtbot, services, nvidia_8gb, fake_hub):
    desktop = started(qtbot, services)
    window = desktop.window
    try:
        welcome = window.findChild(Welcome, "welcome")
        assert welcome is not None and welcome.isVisible() and not welcome.isModal()
        folder = os.environ.get("LOCUS_SCREENSHOTS")
        shots = []
        welcome.recommended.connect(lambda: shots.append(welcome.grab()))  # as first seen, before the hub answers
        with qtbot.waitSignal(welcome.hubChecked, timeout=60_000) as checked:
            pass
        assert checked.args == [True]
        assert "RTX 4060" in welcome.machine.text() and "RAM 31.2 GB" in welcome.machine.text()
        assert "free on disk" in welcome.machine.text()
        rows = welcome_rows(welcome)
        assert 2 <= len(rows) <= 3
        assert rows[0][0].endswith("(recommended)") and not any(r[0].endswith("(recommended)") for r in rows[1:])
        assert welcome.selected_pick().recommendation is welcome.recommendations.picks[0]  # pre-selected
        assert all(r[2].startswith("fits") for r in rows), rows  # the planner's verdict on the file's header
        assert welcome.download_button.isEnabled() and "confirmed" in welcome.status.text()
        qtbot.waitUntil(lambda: services.settings.ui.welcome_shown, timeout=10_000)  # saved at once
        if folder and shots:
            shots[0].save(os.path.join(folder, "welcome.png"))

        welcome.close_button.click()  # "Not now"
        assert welcome.close_button.text() == "Not now" and not welcome.isVisible()
    finally:
        desktop.close()
        window.close()
    wait_for_background()

    # The next start: the setting is read from config.toml, and no welcome opens.
    again = build_services(resolve_paths())
    try:
        assert again.settings.ui.welcome_shown
        desktop = started(qtbot, again)
        assert desktop.window.findChild(Welcome, "welcome") is None
        # Help › Welcome… shows it whenever asked.
        shown = help_welcome(desktop.window)
        assert shown is not None and shown.isVisible()
        qtbot.waitUntil(lambda: shown.recommendations is not None, timeout=30_000)
        shown.close()
        desktop.close()
        desktop.window.close()
    finally:
        wait_for_background()
        again.close()


def test_the_chosen_model_downloads_while_the_bundled_one_answers_and_locus_switches_to_it(
    qtbot, loaded_window, services, nvidia_8gb, fake_hub, gui_guard
):
    window = loaded_window
    bundled = window.model.info.path
    with gui_guard:  # the hub, the disk and the model are asked off the GUI thread
        welcome = help_welcome(window)
        with qtbot.waitSignal(welcome.hubChecked, timeout=60_000) as checked:
            pass
    assert checked.args == [True]
    ended = []
    window.answerFinished.connect(ended.append)

    # A question is being answered by the bundled model while the download runs.
    window.send("Name three colours.")
    assert window.live is not None and welcome.isVisible()
    with gui_guard, qtbot.waitSignal(welcome.switched, timeout=180_000) as switched:
        welcome.download_button.click()
    assert gui_guard.entered == [], "blocking work on the GUI thread:\n" + "\n".join(gui_guard.entered)
    target = services.paths.models_dir / "model-Q4_K_M.gguf"
    assert switched.args == [str(target)] and target.exists()
    # The answer that was running was finished, not stopped by the switch.
    assert len(ended) == 1 and ended[0].outcome == "complete" and ended[0].text.strip()
    assert window.model.info.path == str(target) != bundled
    assert services.settings.model.path == str(target)
    assert "now answers with" in welcome.status.text() and welcome.close_button.text() == "Close"

    # And the window goes on answering, with the new model.
    with qtbot.waitSignal(window.answerFinished, timeout=120_000) as after:
        window.send("And three animals?")
    assert after.args[0].outcome == "complete" and after.args[0].text.strip()
    welcome.close()


def test_a_file_downloaded_before_is_used_without_downloading_it_again(
    qtbot, loaded_window, services, model_path, nvidia_8gb, fake_hub
):
    target = services.paths.models_dir / "model-Q4_K_M.gguf"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(model_path, target)
    window = loaded_window
    welcome = help_welcome(window)
    with qtbot.waitSignal(welcome.hubChecked, timeout=60_000):
        pass
    with qtbot.waitSignal(welcome.switched, timeout=120_000) as switched:
        welcome.download_button.click()
    assert switched.args == [str(target)] and window.model.info.path == str(target)
    whole = [path for path, headers in fake_hub.requests if "Range" not in headers]
    assert whole == []  # only the header previews (Range requests) reached the hub
    welcome.close()


def test_a_failed_download_says_why_and_keeps_the_bundled_model(qtbot, loaded_window, services, nvidia_8gb, fake_hub):
    window = loaded_window
    welcome = help_welcome(window)
    with qtbot.waitSignal(welcome.hubChecked, timeout=60_000):
        pass
    fake_hub.files.clear()  # gone from the hub between the listing and the download
    welcome.download_button.click()
    qtbot.waitUntil(lambda: "The download failed" in welcome.status.text(), timeout=60_000)
    assert "was not found on the hub" in welcome.status.text()
    assert "Locus keeps using the bundled model" in welcome.status.text()
    assert welcome.download_button.isEnabled() and welcome.handle is None  # it can be tried again
    assert services.settings.model.path == "" and window.model.info.name.startswith("SmolLM2")
    with qtbot.waitSignal(window.answerFinished, timeout=120_000) as answered:
        window.send("Still there?")
    assert answered.args[0].outcome == "complete"
    welcome.close()


def test_a_downloaded_file_that_is_no_model_is_not_switched_to(
    qtbot, loaded_window, services, nvidia_8gb, corrupt_model, monkeypatch
):
    """The hub serves a truncated GGUF (its checksum matches what the hub lists): checked before any load."""
    _hub, server = serve_hub(services, corrupt_model.read_bytes(), monkeypatch)
    try:
        window = loaded_window
        welcome = help_welcome(window)
        with qtbot.waitSignal(welcome.hubChecked, timeout=60_000):
            pass
        with qtbot.waitSignal(welcome.downloaded, timeout=60_000):
            welcome.download_button.click()
        qtbot.waitUntil(lambda: "not a model Locus can use" in welcome.status.text(), timeout=60_000)
        assert "truncated" in welcome.status.text().lower()
        assert "Locus keeps using the bundled model" in welcome.status.text()
        assert services.settings.model.path == "" and window.model.info.name.startswith("SmolLM2")
        welcome.close()
    finally:
        server.shutdown()
        server.server_close()


def test_an_unreachable_hub_is_said_and_locus_goes_on_with_the_bundled_model(
    qtbot, loaded_window, services, nvidia_8gb, monkeypatch
):
    """The real HfApi, pointed at a closed port on loopback: the connection is refused."""
    from huggingface_hub import HfApi

    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)  # the tests' default is offline
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{probe.getsockname()[1]}"
    monkeypatch.setattr(services, "hub_client", lambda: HubClient(endpoint=endpoint, api=HfApi(endpoint=endpoint)))
    window = loaded_window
    welcome = help_welcome(window)
    with qtbot.waitSignal(welcome.hubChecked, timeout=60_000) as checked:
        pass
    assert checked.args == [False]
    assert "Cannot reach the Hugging Face hub" in welcome.status.text()
    assert "Locus goes on with the bundled model" in welcome.status.text()
    assert welcome.table.rowCount() >= 2  # the picks stay listed, from estimates
    assert not welcome.download_button.isEnabled() and welcome.retry_button.isVisible()
    assert welcome.close_button.text() == "Continue with the bundled model"
    welcome.close_button.click()
    assert not welcome.isVisible() and window.model.info.name.startswith("SmolLM2")
    assert services.settings.model.path == ""


def test_a_hub_that_never_answers_is_given_up_and_said(qtbot, loaded_window, services, nvidia_8gb, monkeypatch):
    """The real HfApi, pointed at a server that takes connections and never answers: the welcome gives up at
    the check's deadline (shortened here) and says so; the window answers meanwhile."""
    from huggingface_hub import HfApi

    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setattr("engine.models.recommend.HUB_DEADLINE_S", 3.0)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # queued by the kernel, never accepted or answered
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        monkeypatch.setattr(services, "hub_client", lambda: HubClient(endpoint=endpoint, api=HfApi(endpoint=endpoint)))
        window = loaded_window
        welcome = help_welcome(window)
        checked = []
        welcome.hubChecked.connect(checked.append)
        with qtbot.waitSignal(window.answerFinished, timeout=120_000) as answered:
            window.send("Hello?")
        assert answered.args[0].outcome == "complete"
        qtbot.waitUntil(lambda: bool(checked), timeout=60_000)
    assert checked == [False]
    assert "did not answer within 3 seconds" in welcome.status.text()
    assert welcome.close_button.text() == "Continue with the bundled model"
    welcome.close()


def test_after_the_switch_a_later_failed_load_of_another_model_is_not_undone_by_the_welcome(
    qtbot, loaded_window, services, model_path, nvidia_8gb, fake_hub
):
    target = services.paths.models_dir / "model-Q4_K_M.gguf"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(model_path, target)
    window = loaded_window
    welcome = help_welcome(window)
    with qtbot.waitSignal(welcome.hubChecked, timeout=60_000):
        pass
    with qtbot.waitSignal(welcome.switched, timeout=120_000):
        welcome.download_button.click()
    said = welcome.status.text()
    # The user then picks another model (File › Models…), which loads...
    other = services.paths.models_dir / "other.gguf"
    shutil.copy(model_path, other)
    with qtbot.waitSignal(window.bridge.modelLoaded, timeout=120_000):
        window.model.use(str(other))
    assert window.model.info.path == str(other)
    # ...and later one that fails to load: the choice is the user's, the welcome leaves it.
    broken = services.paths.models_dir / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    services.update_settings(lambda s: s.with_value("model.path", str(broken)))
    with qtbot.waitSignal(window.bridge.modelLoadFailed, timeout=60_000) as failed:
        window.model.load()
    assert failed.args[0].path == str(broken)
    wait_for_background()
    assert services.settings.model.path == str(broken)  # not reset to the model used before the welcome's switch
    assert welcome.status.text() == said  # and the welcome said nothing about a load it did not start
    welcome.close()
