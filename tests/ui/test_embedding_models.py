"""The model manager's Embedding models tab: choosing another local embedding model for documents."""

from __future__ import annotations

import os
import shutil

import pytest

from app.services import open_library
from engine.models.bundled import BUNDLED_EMBEDDER_NAME, bundled_embedder_path
from engine.rag.store import EmbeddingModelMismatch


def rows(tab) -> list[list[str]]:
    table = tab.table
    return [[table.item(r, c).text() for c in range(table.columnCount())] for r in range(table.rowCount())]


def copy_model(target) -> None:
    """A second real sentence-transformers folder (the bundled model's files, linked where possible)."""

    def link_or_copy(src, dst):
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(bundled_embedder_path(), target, copy_function=link_or_copy)


def test_choosing_another_local_embedding_model_saves_it_and_the_index_then_asks_for_a_rebuild(
    qtbot, window, services, tmp_path
):
    with qtbot.waitSignal(window.documents.libraryReady, timeout=60_000):
        window.documents.open()  # the index, built with the bundled model
    embeddings = services.paths.models_dir / "embeddings"
    copy_model(embeddings / "multilingual-mini")
    (embeddings / "notes").mkdir()
    (embeddings / "notes" / "README.md").write_text("not a model", encoding="utf-8")

    manager = window.model.open_manager()
    tab = manager.embedders
    manager.tabs.setCurrentWidget(tab)
    qtbot.waitUntil(lambda: tab.table.rowCount() == 3, timeout=120_000)  # after the hardware probe
    bundled, copy, broken = rows(tab)
    assert bundled[:2] == [f"{BUNDLED_EMBEDDER_NAME} (bundled)  (in use)", "384"]
    assert copy == ["multilingual-mini", "384", str(embeddings / "multilingual-mini")]
    assert broken[0] == "notes" and "no modules.json" in broken[2]
    tab.select(str(embeddings / "notes"))
    assert not tab.use_button.isEnabled()  # a folder that is not a model cannot be chosen
    tab.select(str(embeddings / "multilingual-mini"))
    assert tab.use_button.isEnabled()
    manager.grab().save(str(tmp_path / "embedding-models.png"))

    with qtbot.waitSignal(tab.chosen, timeout=30_000):
        tab.use_button.click()
    assert services.settings.documents.embedding_model == str(embeddings / "multilingual-mini")
    qtbot.waitUntil(lambda: rows(tab)[1][0] == "multilingual-mini  (in use)", timeout=30_000)
    assert "re-index" in tab.note.text()
    # When documents next open, the index built with the bundled model asks for a re-index (as after any
    # change of embedding model), and the window offers it.
    with pytest.raises(EmbeddingModelMismatch, match="multilingual-mini"):
        open_library(services.paths, services.settings)
    manager.close()
