"""The composition root: changing the embedding model asks for a re-index and can do it."""

from __future__ import annotations

import pytest

from app import settings as st
from app.paths import resolve_paths
from app.services import build_services
from engine.models.bundled import bundled_embedder_path
from engine.rag.store import EmbeddingModelMismatch


def test_a_new_embedding_model_sets_the_old_index_aside_and_reindexes(locus_home, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Alpha\n\nThe alpha document talks about kites.\n", encoding="utf-8")
    (docs / "b.txt").write_text("Beta is about boats.\n", encoding="utf-8")
    services = build_services(resolve_paths())
    try:
        library = services.open_library()
        library.index([docs], "hobbies").wait(120)
        assert len(library.documents()) == 2
    finally:
        services.close()

    # The same model files under another name stand in for a different embedding model.
    st.save(
        st.Settings().with_value("documents.embedding_model", str(bundled_embedder_path())), locus_home / "config.toml"
    )
    services = build_services(resolve_paths())
    try:
        with pytest.raises(EmbeddingModelMismatch) as info:
            services.open_library()
        assert "locus docs rebuild" in info.value.user_text()
        library = services.open_library(rebuild=True)
        library.indexer.wait_idle(120)
        assert sorted((r.collection, r.status) for r in library.documents()) == [("hobbies", "done")] * 2
        assert library.store.text_search("kites", 5)
        assert [p.name for p in locus_home.glob("index.old-*")]
    finally:
        services.close()


def test_a_model_file_given_for_one_run_answers_on_this_computer_even_with_a_server_default(locus_home, model_path):
    from app import settings as settings_mod

    settings = (
        settings_mod.Settings().with_value("remote.enabled", True).with_value("remote.url", "http://127.0.0.1:9/v1")
    )  # nothing listens there: it must not be asked
    settings_mod.save(settings, locus_home / "config.toml")
    services = build_services(resolve_paths())
    try:
        assert services.backends.current().default == "remote"
        services.load_model(override_path=model_path).result(timeout=120)
        name, local = services.backends.resolve(None)
        assert name == "local" and local.kind == "local"
        done = services.assistant.ask("Say hi.").wait(120)
        assert done.complete and done.stats.model == local.model_info.name
        assert done.stats.model.lower().startswith("smollm2")  # the file's own name: given by path, not bundled
    finally:
        services.close()


def test_model_settings_set_parallel_requests_and_the_conversation_cache(locus_home, model_path):
    """Parallel requests and the conversation cache budgets go from the settings to the loaded engine;
    states pushed out of RAM are spilled under the data folder and removed when Locus closes."""
    from app import settings as settings_mod
    from engine.runtime.types import ChatMessage, Done, GenerationRequest, SamplingParams, Started

    settings = (
        settings_mod.Settings()
        .with_value("model.path", model_path)
        .with_value("model.parallel_requests", 2)
        .with_value("model.conversation_cache_mb", 0)
        .with_value("model.conversation_cache_disk_mb", 64)
    )
    settings_mod.save(settings, locus_home / "config.toml")
    paths = resolve_paths()
    services = build_services(paths)
    try:
        services.load_model().result(timeout=120)
        config = services.loaded_config
        assert (config.n_parallel, config.kv_ram_mb, config.kv_spill_mb) == (2, 0, 64)
        assert config.kv_spill_dir == str(paths.kv_cache_dir)
        local = services.backends.current().available["local"]
        inside = local.diagnostics()
        assert inside.max_active == 2 and inside.kv_spill_bytes == 64 << 20
        assert [p.parent for p in paths.kv_cache_dir.iterdir()] == [paths.kv_cache_dir]  # this engine's folder
        order: list[tuple[int, str]] = []
        handles = [
            local.submit(
                GenerationRequest(
                    (ChatMessage("user", f"Count to {n}."),), SamplingParams(temperature=0.0, max_tokens=24)
                ),
                lambda e, n=n: order.append((n, type(e).__name__)),
            )
            for n in (3, 4, 5)
        ]
        assert all(isinstance(h.wait(120), Done) for h in handles)
        # Two answer together: the second starts before the first is done, the third waits for a place.
        assert order.index((4, Started.__name__)) < order.index((3, Done.__name__))
        assert order.index((5, Started.__name__)) > min(
            order.index((3, Done.__name__)), order.index((4, Done.__name__))
        )
    finally:
        services.close()
    assert not any(paths.kv_cache_dir.iterdir())


def test_settings_that_cannot_be_applied_change_nothing_not_even_the_file(locus_home):
    """A model server address with a password in it is refused before anything is saved or swapped."""
    from app import settings as settings_mod
    from engine.errors import InvalidRequestError

    services = build_services(resolve_paths())
    try:
        before, backends = services.settings, services.backends.current()
        saved = (locus_home / "config.toml").read_bytes() if (locus_home / "config.toml").exists() else None
        with pytest.raises(InvalidRequestError, match="user name or password"):
            services.apply_settings(
                before.with_value("remote.url", "http://me:secret@gpu-box:8000/v1").with_value(
                    "sampling.temperature", 0.1
                )
            )
        assert services.settings is before and services.backends.current() is backends
        assert services.assistant.settings.sampling.temperature == before.sampling.temperature
        now = (locus_home / "config.toml").read_bytes() if (locus_home / "config.toml").exists() else None
        assert now == saved

        # Changes of different settings from two threads both land (each applied to what the other left).
        import threading

        start = threading.Barrier(2)

        def change(key, value):
            start.wait()
            services.update_settings(lambda s: s.with_value(key, value))

        threads = [
            threading.Thread(target=change, args=("sampling.top_k", 7)),
            threading.Thread(target=change, args=("ui.quick_ask_collection", "notes")),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert (services.settings.sampling.top_k, services.settings.ui.quick_ask_collection) == (7, "notes")
        assert settings_mod.load(locus_home / "config.toml")[0] == services.settings
    finally:
        services.close()
