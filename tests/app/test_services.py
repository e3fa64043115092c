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
    st.save(st.Settings().with_value("documents.embedding_model", str(bundled_embedder_path())),
            locus_home / "config.toml")
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


def test_a_model_file_given_for_one_run_answers_on_this_computer_even_with_a_server_default(locus_home,
                                                                                             model_path):
    from app import settings as settings_mod
    from engine.runtime.types import Done

    settings = settings_mod.Settings().with_value("remote.enabled", True) \
        .with_value("remote.url", "http://127.0.0.1:9/v1")  # nothing listens there: it must not be asked
    settings_mod.save(settings, locus_home / "config.toml")
    services = build_services(resolve_paths())
    try:
        assert services.default_backend == "server"
        services.load_model(override_path=model_path).result(timeout=120)
        assert services.runtime is services.local_runtime is services.assistant.runtime
        done = services.assistant.ask("Say hi.").wait(120)
        assert isinstance(done, Done) and done.stats.model == services.local_runtime.model_info.name
        assert done.stats.model.lower().startswith("smollm2")  # the file's own name: given by path, not bundled
    finally:
        services.close()
