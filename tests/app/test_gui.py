"""The window session app.gui.launch builds: the local API starts with it when set, and stops at the end."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

import pytest
from keyring.backends import fail

from app.gui import launch
from app.paths import resolve_paths
from app.secrets import Secrets
from app.services import build_services
from ui.ops import wait_for_background


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture()
def services(locus_home):
    services = build_services(resolve_paths(), secrets=Secrets(backend=fail.Keyring()))  # no keyring here
    yield services
    wait_for_background()
    services.close()


def started(qtbot, services):
    desktop = launch(services, "test")
    qtbot.addWidget(desktop.window)
    qtbot.addWidget(desktop.tray.quick_ask)
    desktop.window.removeEventFilter(desktop.tray)  # the test closes the window: that is no quit
    return desktop


def test_the_local_api_serves_while_the_window_runs_and_stops_with_it(qtbot, services):
    port = free_port()
    services.apply_settings(services.settings.with_value("api.enabled", True).with_value("api.port", port))
    desktop = started(qtbot, services)
    try:
        qtbot.waitUntil(lambda: desktop.api is not None, timeout=30_000)
        assert desktop.api.url == f"http://127.0.0.1:{port}/v1"
        assert desktop.window.statusBar().currentMessage() == f"Local API at {desktop.api.url}"
        with urllib.request.urlopen(f"{desktop.api.url}/models", timeout=30) as reply:
            assert reply.status == 200
    finally:
        desktop.close()
    assert desktop.api is None
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=5)


def test_a_local_api_that_cannot_start_says_why_in_the_status_bar(qtbot, services):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        services.apply_settings(services.settings.with_value("api.enabled", True).with_value("api.port", port))
        desktop = started(qtbot, services)
        qtbot.waitUntil(
            lambda: desktop.window.statusBar().currentMessage().startswith("The local API did not start: "),
            timeout=30_000,
        )
        assert "already in use" in desktop.window.statusBar().currentMessage()
        assert desktop.api is None


def test_the_local_api_stays_off_unless_the_settings_turn_it_on(qtbot, services):
    desktop = started(qtbot, services)
    wait_for_background()
    qtbot.wait(100)
    assert desktop.api is None and not services.settings.api.enabled


def test_changing_the_local_api_settings_restarts_it_without_a_restart_of_locus(qtbot, services):
    first, second = free_port(), free_port()
    services.apply_settings(services.settings.with_value("api.enabled", True).with_value("api.port", first))
    desktop = started(qtbot, services)
    try:
        qtbot.waitUntil(lambda: desktop.api is not None, timeout=30_000)
        services.apply_settings(services.settings.with_value("api.port", second))
        desktop.window.settingsApplied.emit()  # what the settings dialog does once the change is saved
        qtbot.waitUntil(lambda: desktop.api is not None and desktop.api.url.endswith(f":{second}/v1"), timeout=30_000)
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(f"http://127.0.0.1:{first}/v1/models", timeout=5)
        with urllib.request.urlopen(f"{desktop.api.url}/models", timeout=30) as reply:
            assert reply.status == 200

        services.apply_settings(services.settings.with_value("api.enabled", False))
        desktop.window.settingsApplied.emit()
        qtbot.waitUntil(lambda: desktop.window.statusBar().currentMessage() == "The local API is off.", timeout=30_000)
        assert desktop.api is None
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(f"http://127.0.0.1:{second}/v1/models", timeout=5)
    finally:
        desktop.close()
