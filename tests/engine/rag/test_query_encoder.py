"""A question embedded in process with numpy (engine/rag/query_encoder.py) before the embedding worker runs:
the same vector as the worker's, no worker started for it, and anything it does not cover left to the
worker."""

import json
import shutil

import numpy as np
import pytest

from engine.models.bundled import BUNDLED_EMBEDDER_NAME, bundled_embedder_path
from engine.rag.embed import Embedder, EmbeddingError
from engine.rag.query_encoder import QueryEncoder

TEXTS = [
    "What does the lease say about ending the contract early?",
    "Wie hoch ist die Kaution laut Mietvertrag?",
    "Émile's café — naïve résumé 東京 🙂",
    "",
    "token " * 600,  # longer than the model's 256 tokens: cut the way sentence-transformers cuts it
]


@pytest.fixture(scope="module")
def encoder() -> QueryEncoder:
    loaded = QueryEncoder.load(bundled_embedder_path())
    assert loaded is not None, "the bundled all-MiniLM-L6-v2 folder is one the in-process encoder covers"
    return loaded


def test_in_process_vectors_equal_the_workers(encoder, embedder):
    ours = np.stack([encoder.encode(t) for t in TEXTS])
    worker = embedder.embed(TEXTS)
    assert ours.dtype == np.float32 and ours.shape == worker.shape == (len(TEXTS), 384)
    assert np.abs(ours - worker).max() < 1e-5
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-6)


def test_a_question_before_the_worker_starts_does_not_start_it():
    embedder = Embedder(bundled_embedder_path(), BUNDLED_EMBEDDER_NAME)
    try:
        early = embedder.embed_query(TEXTS[0])
        few = embedder.embed_few(TEXTS[:3])
        assert embedder.worker_pid is None and not embedder.started
        worker = embedder.embed(TEXTS[:3])  # indexing: the worker starts
        assert embedder.started and embedder.worker_pid is not None
        assert np.abs(few - worker).max() < 1e-5 and np.abs(early - worker[0]).max() < 1e-5
        assert embedder.query_encoder() is None  # the worker embeds questions from now on; the weights go
        assert np.abs(embedder.embed_query(TEXTS[0]) - worker[0]).max() < 1e-5
    finally:
        embedder.close()


def test_many_texts_go_to_the_worker():
    embedder = Embedder(bundled_embedder_path(), BUNDLED_EMBEDDER_NAME)
    try:
        embedder.embed_few([f"passage {i}" for i in range(65)])
        assert embedder.started
    finally:
        embedder.close()


def _copy(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(bundled_embedder_path(), folder)
    return folder


def test_folders_it_does_not_cover_are_left_to_the_worker(tmp_path):
    folder = _copy(tmp_path)
    modules = json.loads((folder / "modules.json").read_text())
    (folder / "modules.json").write_text(
        json.dumps([*modules, {"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"}])
    )
    assert QueryEncoder.load(folder) is None  # a Dense head: not covered

    folder = _copy(tmp_path / "b")
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_max_tokens": True}))
    assert QueryEncoder.load(folder) is None  # max pooling: not covered

    folder = _copy(tmp_path / "c")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "num_hidden_layers": "six"}))
    assert QueryEncoder.load(folder) is None

    folder = _copy(tmp_path / "d")  # the worker would put a prompt before every text
    (folder / "config_sentence_transformers.json").write_text(
        json.dumps({"prompts": {"query": "query: "}, "default_prompt_name": "query"})
    )
    assert QueryEncoder.load(folder) is None


def test_a_model_that_lowers_its_text_is_lowered_here_too(tmp_path, embedder):
    folder = _copy(tmp_path)
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 256, "do_lower_case": True}))
    lowered = QueryEncoder.load(folder)
    assert lowered is not None and lowered.lower_case
    assert np.abs(lowered.encode("Ferry TIMES at Pier 3") - embedder.embed(["ferry times at pier 3"])[0]).max() < 1e-5


def test_broken_weights_are_refused_and_the_worker_reports_them(tmp_path):
    folder = _copy(tmp_path)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:4096])  # cut short
    assert QueryEncoder.load(folder) is None
    embedder = Embedder(folder, "cut")
    try:
        with pytest.raises(EmbeddingError, match="could not be loaded"):
            embedder.embed_query("anything")
    finally:
        embedder.close()


def test_retrieval_ranks_alike_with_either_encoder(encoder, embedder):
    passages = [
        "The tenant may end the lease with three months' notice in writing.",
        "Rent is due on the first day of each month.",
        "Pets are allowed with the landlord's written consent.",
        "The deposit is returned within thirty days after the lease ends.",
    ]
    matrix = embedder.embed(passages)
    for question in ("How do I end the lease?", "When is the rent due?", "Can I keep a cat?"):
        ours = matrix @ encoder.encode(question)
        theirs = matrix @ embedder.embed([question])[0]
        assert list(np.argsort(-ours)) == list(np.argsort(-theirs))
