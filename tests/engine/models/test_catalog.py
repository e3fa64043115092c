"""The local model catalog on real GGUF files: listing with metadata, checked imports, deletes."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from engine.errors import EngineError, InvalidRequestError
from engine.models.bundled import BUNDLED_LLM_NAME
from engine.models.catalog import ImportCancelled, ModelCatalog


@pytest.fixture()
def catalog(tmp_path, model_path):
    return ModelCatalog(tmp_path / "models", Path(model_path), BUNDLED_LLM_NAME)


def test_the_bundled_model_is_listed_with_its_metadata(catalog):
    (bundled,) = catalog.models()
    assert bundled.bundled and bundled.name == BUNDLED_LLM_NAME and bundled.problem is None
    assert (bundled.architecture, bundled.quantization, bundled.n_layers) == ("llama", "Q4_1", 30)
    assert 130e6 < bundled.n_params < 140e6 and bundled.has_chat_template
    assert bundled.context_length == 8192 and bundled.size_bytes == Path(bundled.path).stat().st_size


def test_import_checks_copies_with_progress_and_delete_removes(catalog, tmp_path, model_path):
    source = tmp_path / "my-smol.gguf"
    shutil.copy(model_path, source)
    seen = []
    model = catalog.import_file(source, on_progress=lambda done, total: seen.append((done, total)))
    assert model.path == str(catalog.models_dir / "my-smol.gguf") and model.problem is None
    assert seen[-1][0] == seen[-1][1] == source.stat().st_size and len(seen) > 1
    assert [m.name for m in catalog.models()] == [BUNDLED_LLM_NAME, "my-smol"]
    with pytest.raises(InvalidRequestError, match="already in the models folder"):
        catalog.import_file(source)
    catalog.delete(model.path)
    assert [m.name for m in catalog.models()] == [BUNDLED_LLM_NAME]
    with pytest.raises(InvalidRequestError, match="models folder"):
        catalog.delete(model_path)  # the bundled model lives elsewhere and stays


def test_a_broken_file_is_refused_before_any_byte_is_copied(catalog, corrupt_model):
    with pytest.raises(EngineError) as refused:
        catalog.import_file(corrupt_model)
    assert "truncated" in refused.value.user_text().lower()
    assert not catalog.models_dir.exists() or not any(catalog.models_dir.iterdir())


def test_a_cancelled_import_leaves_nothing(catalog, tmp_path, model_path):
    with pytest.raises(InvalidRequestError, match="bundled model"):
        catalog.import_file(model_path)
    source = tmp_path / "copy.gguf"
    shutil.copy(model_path, source)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(ImportCancelled):
        catalog.import_file(source, cancel=cancel)
    assert not any(catalog.models_dir.iterdir())


def test_an_unreadable_model_in_the_folder_is_listed_with_its_problem(catalog, corrupt_model):
    catalog.models_dir.mkdir()
    shutil.copy(corrupt_model, catalog.models_dir / "broken.gguf")
    broken = catalog.models()[-1]
    assert broken.name == "broken" and "truncated" in broken.problem.lower()
