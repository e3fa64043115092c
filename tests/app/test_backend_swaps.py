"""Settings that change while questions are answered: each question stays on the backend it started on.

Two real backends (the in-process runtime with the bundled model, and llama-cpp-python's own server as
the model server) answer questions at the same time while another thread keeps changing Settings ›
Model server: which backend is the default, and the server's address (each change of address makes a new
backend). Every question must show one backend throughout: the backend its AnswerStarted names, the model
its root span names, the model and provider its generation span ran on, and the model its answer came
from agree, and the answer is whole (a backend replaced mid-answer finishes it, it is not cut off).
"""

from __future__ import annotations

import threading

import pytest

from app import settings as settings_mod
from app.paths import resolve_paths
from app.secrets import Secrets
from app.services import build_services
from engine.models.bundled import BUNDLED_LLM_NAME
from tests.llama_server import ALIAS, API_KEY

pytestmark = pytest.mark.slow

ROUNDS = 4
PROVIDER = {ALIAS: "openai_compatible", BUNDLED_LLM_NAME: "llama.cpp"}  # the model each backend answers with
BACKEND = {"openai_compatible": "remote", "llama.cpp": "local"}  # the backend behind each provider


def other_address(url: str) -> str:
    """The same server under its other loopback name: to Locus another address, so a new backend."""
    return url.replace("127.0.0.1", "localhost") if "127.0.0.1" in url else url.replace("localhost", "127.0.0.1")


def test_every_answer_stays_on_the_backend_it_started_on_while_settings_change(
    llama_server, secret_service, locus_home, tmp_path
):
    secrets = Secrets(backend=secret_service)
    secrets.set("remote_api_key", API_KEY)
    settings = (
        settings_mod.Settings()
        .with_value("remote.url", llama_server)
        .with_value("remote.model", ALIAS)
        .with_value("sampling.max_tokens", 12)
        .with_value("sampling.temperature", 0.0)
    )
    settings_mod.save(settings, locus_home / "config.toml")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "otters.md").write_text(
        "# Otters\n\nSea otters hold hands while they sleep so they do not drift "
        "apart. They keep a favourite stone in a pouch of skin.\n",
        encoding="utf-8",
    )
    services = build_services(resolve_paths(), secrets=secrets)
    stop = threading.Event()
    changes = [0]

    def keep_changing_settings() -> None:
        while not stop.is_set():
            changes[0] += 1
            moved = changes[0] % 6 == 0

            def change(current: settings_mod.Settings, moved: bool = moved) -> settings_mod.Settings:
                new = current.with_value("remote.enabled", not current.remote.enabled)
                return new.with_value("remote.url", other_address(current.remote.url)) if moved else new

            services.update_settings(change)
            stop.wait(0.05)  # pacing only: the questions need the CPU too

    try:
        services.ready_backend("local").result(timeout=120)
        services.ready_backend("remote").result(timeout=60)
        services.open_library().index([notes], "notes").wait(120)
        conversations = {
            "local": services.history.create_conversation("chose this computer").id,
            "remote": services.history.create_conversation("chose the model server").id,
            "default": services.history.create_conversation("follows the default, answers from documents").id,
        }
        services.history.set_options(conversations["local"], backend="local")
        services.history.set_options(conversations["remote"], backend="remote")
        services.history.set_options(conversations["default"], collections=[])

        changer = threading.Thread(target=keep_changing_settings, name="settings-changer")
        changer.start()
        answers = []
        try:
            for n in range(ROUNDS):  # three questions at once (ask returns at once), on both backends
                handles = {
                    name: services.assistant.ask(f"Question {n}: what do otters hold?", cid)
                    for name, cid in conversations.items()
                }
                answers += [(name, handle, handle.wait(180)) for name, handle in handles.items()]
        finally:
            stop.set()
            changer.join(60)
        assert changes[0] > ROUNDS  # the settings did change while the questions were answered

        services.tracing.flush()
        seen = {"local": set(), "remote": set(), "default": set()}
        for name, handle, done in answers:
            assert done.complete and done.stats.finish_reason in ("stop", "length"), (name, done)  # not cut off
            spans = services.traces.trace(done.trace_id)
            [root] = [s for s in spans if s.parent_id is None]
            [generation] = [s for s in spans if s.name.startswith("chat ")]
            answered_by = done.stats.model
            assert answered_by in PROVIDER, answered_by
            # The root names the model the question started on (nothing, when it started on a model server
            # that was still being connected); the generation ran on that model, with that backend's provider.
            assert root.attributes.get("gen_ai.request.model") in (answered_by, None), (name, root.attributes)
            assert generation.attributes["gen_ai.request.model"] == answered_by, (name, generation.attributes)
            provider = generation.attributes["gen_ai.provider.name"]
            assert provider == PROVIDER[answered_by]
            assert handle.started.backend == BACKEND[provider]  # the backend the answer said it started on
            seen[name].add(handle.started.backend)
        assert seen["local"] == {"local"} and seen["remote"] == {"remote"}
    finally:
        stop.set()
        services.close()
