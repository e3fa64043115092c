"""Choosing a model server in the settings: answers come from it, with its key from the real keyring."""

from __future__ import annotations

import pytest

from app import settings as settings_mod
from app.paths import resolve_paths
from app.secrets import Secrets
from app.services import build_services
from engine.runtime.remote import RemoteRuntime
from engine.runtime.runtime import Runtime
from tests.llama_server import ALIAS, API_KEY

pytestmark = pytest.mark.slow


def test_the_default_backend_can_be_a_server_and_switched_back(llama_server, secret_service, locus_home):
    secrets = Secrets(backend=secret_service)
    secrets.set("remote_api_key", API_KEY)
    settings = (
        settings_mod.Settings()
        .with_value("remote.enabled", True)
        .with_value("remote.url", llama_server)
        .with_value("remote.model", ALIAS)
    )
    settings_mod.save(settings, locus_home / "config.toml")
    services = build_services(resolve_paths(), secrets=secrets)
    try:
        assert isinstance(services.backends.resolve(None)[1], RemoteRuntime)
        info = services.load_model().result(timeout=60)
        assert info.name == ALIAS and info.chat_template_source == "remote"
        answer = services.assistant.ask("Say hello in three words.")
        done = answer.wait(60)
        assert done.complete and done.text.strip()
        saved = services.history.message(answer.started.assistant_message_id)
        assert saved.status == "complete" and saved.content == done.text
        services.tracing.flush()
        spans = services.traces.trace(done.trace_id)
        generation = next(s for s in spans if s.name.startswith("chat "))
        assert generation.attributes["gen_ai.provider.name"] == "openai_compatible"
        assert API_KEY.encode() not in b"".join(p.read_bytes() for p in locus_home.glob("traces.sqlite3*"))
        assert API_KEY not in (locus_home / "config.toml").read_text()

        # Back to this computer: the next answer comes from the in-process runtime, no restart.
        assert services.apply_settings(services.settings.with_value("remote.enabled", False)) is True
        assert (
            isinstance(services.backends.resolve(None)[1], Runtime) and services.assistant.backends is services.backends
        )
        services.load_model().result(timeout=120)
        local = services.assistant.ask("Say hi.").wait(120)
        assert local.complete and "SmolLM2" in local.stats.model
    finally:
        services.close()


def test_each_conversation_answers_on_the_backend_it_chose(llama_server, secret_service, locus_home):
    from engine.errors import BackendUnavailableError

    secrets = Secrets(backend=secret_service)
    secrets.set("remote_api_key", API_KEY)
    settings = settings_mod.Settings().with_value("remote.url", llama_server).with_value("remote.model", ALIAS)
    settings_mod.save(settings, locus_home / "config.toml")
    services = build_services(resolve_paths(), secrets=secrets)
    try:
        assert services.backends.current().default == "local"
        assert set(services.backends.current().available) == {"local", "remote"}
        services.load_model().result(timeout=120)
        assert services.ready_backend("remote").result(timeout=60).name == ALIAS

        on_server = services.assistant.ask("Say hello in three words.", backend="remote")
        done = on_server.wait(180)
        assert done.complete and done.stats.model == ALIAS
        chosen = on_server.started.conversation_id
        assert services.history.conversation(chosen).backend == "remote"
        plain = services.assistant.ask("Say hi.").wait(120)
        assert plain.complete and "SmolLM2" in plain.stats.model

        # The same conversation moves to this computer: its next answer is local, its history kept.
        services.history.set_options(chosen, backend="local")
        again = services.assistant.ask("And once more?", chosen).wait(120)
        assert again.complete and "SmolLM2" in again.stats.model
        assert len(services.history.messages(chosen)) == 4

        # The server becomes the default: conversations that chose this computer stay on it.
        services.apply_settings(services.settings.with_value("remote.enabled", True))
        assert services.backends.current().default == "remote"
        assert services.ready_backend("remote").result(timeout=60).name == ALIAS
        local = services.assistant.ask("Still here?", chosen).wait(120)
        assert local.complete and "SmolLM2" in local.stats.model
        remote = services.assistant.ask("Say bye.").wait(180)
        assert remote.complete and remote.stats.model == ALIAS

        # No server any more: a conversation that chose it says so, and nothing is saved for the failed ask.
        services.history.set_options(chosen, backend="remote")
        services.apply_settings(services.settings.with_value("remote.url", "").with_value("remote.enabled", False))
        assert set(services.backends.current().available) == {"local"}
        refused = services.assistant.ask("Anyone there?", chosen).wait(60)
        assert refused.failed and isinstance(refused.error, BackendUnavailableError)
        assert "model server, which is not set up" in refused.error.user_text()
        assert len(services.history.messages(chosen)) == 6
        with pytest.raises(BackendUnavailableError):
            services.ready_backend("remote").result(timeout=5)
    finally:
        services.close()
