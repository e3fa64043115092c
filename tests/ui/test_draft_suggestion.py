"""The model manager offers a fitting draft model for speculative decoding (issue 20): a smaller local model of the
same vocabulary is marked, the note names it, and "Use as draft model" reloads the model drafting with it."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from pathlib import Path

from engine.models.bundled import bundled_llm_path
from engine.models.draft import fitting_drafts, why_not_draft
from engine.models.gguf import read_gguf

BENCH = Path(__file__).resolve().parents[2] / "bench" / "micro_model.py"


def make_small_model(out: Path) -> Path:
    """The bundled model cut to 2 of its 30 blocks (bench/micro_model.py): its vocabulary, a quarter of its size."""
    spec = importlib.util.spec_from_file_location("micro_model", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_micro_model(out)


def test_only_a_much_smaller_model_of_the_same_vocabulary_fits(tmp_path):
    target = read_gguf(bundled_llm_path())
    small = read_gguf(make_small_model(tmp_path / "small.gguf"))
    assert why_not_draft(target, small) is None
    assert "not much smaller" in (why_not_draft(target, target) or "")
    tokens = list(target.metadata["tokenizer.ggml.tokens"])
    tokens[100] = "something else"
    other = dataclasses.replace(small, metadata={**small.metadata, "tokenizer.ggml.tokens": tokens})
    assert "vocabulary differs" in (why_not_draft(target, other) or "")
    unlisted = dataclasses.replace(target, metadata={k: v for k, v in target.metadata.items() if "tokens" not in k})
    assert "does not list" in (why_not_draft(unlisted, small) or "")


def test_the_manager_offers_the_draft_and_the_model_reloads_drafting_with_it(qtbot, loaded_window, services):
    window = loaded_window
    small = make_small_model(services.paths.models_dir / "smol-2-blocks.gguf")
    models = services.catalog.models()
    fits = fitting_drafts(str(bundled_llm_path()), models, services.catalog.header)
    assert [f.model.path for f in fits] == [str(small)] and 0.1 < fits[0].share < 0.5

    manager = window.model.open_manager()
    qtbot.waitUntil(lambda: manager.local.table.rowCount() == 2, timeout=30_000)
    table = manager.local.table
    verdicts = {table.item(r, 0).text(): table.item(r, table.columnCount() - 1).text() for r in range(2)}
    assert "Can draft for the model in use" in verdicts["smol-2-blocks"], verdicts
    assert not any("Can draft" in v for name, v in verdicts.items() if name != "smol-2-blocks")
    assert "smol-2-blocks can draft" in manager.local.note.text()

    manager.local.select(next(m.path for m in models if m.bundled))
    assert not manager.local.draft_button.isEnabled()  # the model in use cannot draft for itself
    manager.local.select(str(small))
    assert manager.local.draft_button.isEnabled()
    with qtbot.waitSignal(window.bridge.modelLoaded, timeout=120_000):
        manager.local.draft_button.click()
    model = services.settings.model
    assert model.speculative == "draft" and model.draft_model == str(small)
    qtbot.waitUntil(lambda: "(draft)" in manager.local.table.item(1, 0).text(), timeout=30_000)
    assert manager.local.note.text().startswith("Drafting with smol-2-blocks (")
    folder = os.environ.get("LOCUS_SCREENSHOTS")
    if folder:
        manager.grab().save(os.path.join(folder, "draft-model.png"))
    manager.close()
