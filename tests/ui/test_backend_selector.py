"""Choosing, per conversation, whether answers come from this computer or the model server."""

from __future__ import annotations

import pytest

from app import settings as settings_mod
from app.paths import resolve_paths
from app.secrets import Secrets
from app.services import build_services
from engine.answer import AnswerEnded
from tests.llama_server import ALIAS, API_KEY
from ui.main_window import MainWindow
from ui.ops import wait_for_background

pytestmark = pytest.mark.slow


def _ask(qtbot, window, text: str) -> AnswerEnded:
    with qtbot.waitSignal(window.answerFinished, timeout=120_000) as blocker:
        window.send(text)
    ended = blocker.args[0]
    assert isinstance(ended, AnswerEnded) and ended.complete, ended
    return ended


def test_without_a_server_there_is_nothing_to_choose(window):
    assert not window.backend.button.isVisibleTo(window)


def test_a_new_conversation_answers_on_the_server_and_another_on_this_computer(
    qtbot, llama_server, secret_service, locus_home, tmp_path
):
    secrets = Secrets(backend=secret_service)
    secrets.set("remote_api_key", API_KEY)
    settings = settings_mod.Settings().with_value("remote.url", llama_server).with_value("remote.model", ALIAS)
    settings_mod.save(settings, locus_home / "config.toml")
    services = build_services(resolve_paths(), secrets=secrets)
    window = MainWindow(services, "test")
    qtbot.addWidget(window)
    window.show()
    try:
        with qtbot.waitSignal(window.bridge.modelLoaded, timeout=120_000):
            window.start()
        selector = window.backend
        assert selector.button.isVisibleTo(window)
        assert selector.button.text() == "Answers: this computer"
        labels = [a.text() for a in selector.button.menu().actions()]
        assert labels == ["Default (this computer)", "This computer", f"Model server ({ALIAS} at {llama_server})"]

        selector.button.menu().actions()[2].trigger()  # what a click on "Model server" does
        assert selector.button.text() == "Answers: model server"
        qtbot.waitUntil(lambda: services.backends.current().available["remote"].model_info is not None, timeout=60_000)
        on_server = _ask(qtbot, window, "Say hello in three words.")
        assert on_server.stats.model == ALIAS
        first = window.conversation_id
        qtbot.waitUntil(lambda: services.history.conversation(first).backend == "remote", timeout=10_000)
        window.grab().save(str(tmp_path / "backend.png"))

        window.new_conversation()
        assert selector.button.text() == "Answers: this computer"
        local = _ask(qtbot, window, "Say hi.")
        assert "SmolLM2" in local.stats.model
        assert services.history.conversation(window.conversation_id).backend is None

        window.open_conversation(first)
        qtbot.waitUntil(lambda: selector.button.text() == "Answers: model server", timeout=10_000)
        again = _ask(qtbot, window, "Once more, please.")
        assert again.stats.model == ALIAS
    finally:
        window.stop()
        wait_for_background()
        services.close()
