"""Hybrid retrieval and citations on the real bundled embedder and a real LanceDB index."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.models.bundled import BUNDLED_EMBEDDER_NAME
from engine.rag.cite import cite, cited_numbers, ranked_sources
from engine.rag.evaluate import evaluate, index_corpus, load_beir, ndcg_at_k, recall_at_k
from engine.rag.retrieve import _join_overlapping, retrieve, rrf_fuse
from engine.rag.store import ChunkHit, DocumentStore

BEIR_MINI = Path(__file__).resolve().parents[2] / "data" / "beir-mini"


@pytest.fixture(scope="module")
def beir_store(embedder, tmp_path_factory):
    store = DocumentStore(tmp_path_factory.mktemp("beir"), BUNDLED_EMBEDDER_NAME, embedder.info.dim)
    index_corpus(store, embedder, load_beir(BEIR_MINI))
    return store


def hit(chunk_id, doc="d", index=0, text="t", page=None):
    return ChunkHit(chunk_id, doc, f"/{doc}", doc, "text", "default", index, text, page, None, None, None, 0.0)


def test_rrf_rewards_agreement():
    a, b, c = hit("a"), hit("b"), hit("c")
    fused = rrf_fuse([[a, b, c], [c, a]])
    assert [h.chunk_id for h, _ in fused] == ["a", "c", "b"]
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 62)


def test_overlapping_neighbours_join_without_repeating():
    assert (
        _join_overlapping("one two three four five six", "four five six seven eight")
        == "one two three four five six seven eight"
    )
    assert _join_overlapping("abc", "xyz") == "abc\nxyz"


def test_metrics():
    assert ndcg_at_k(["a", "b"], {"a": 2}) == pytest.approx(1.0)
    assert ndcg_at_k(["b", "a"], {"a": 2}) < 1.0
    assert recall_at_k(["x", "a"], {"a": 1, "b": 1}) == 0.5


def test_hybrid_retrieval_quality_on_paraphrased_questions(beir_store, embedder):
    results = evaluate(beir_store, embedder, load_beir(BEIR_MINI))
    assert results["vector"]["ndcg@10"] > 0.8
    assert results["hybrid"]["ndcg@10"] > 0.8
    assert results["hybrid"]["recall@100"] == 1.0


def test_retrieve_fits_the_budget_and_answers_with_the_right_passage(beir_store, embedder):
    r = retrieve(
        beir_store,
        embedder,
        "Which animal has three hearts?",
        count_tokens=lambda t: len(t.split()),
        token_budget=80,
        max_passages=3,
    )
    assert r.passages[0].doc_id == "d19"
    assert sum(len(p.text.split()) + 16 for p in r.passages) <= 80
    assert r.vector_hits > 0 and r.text_hits > 0 and set(r.timings) >= {"embed", "vector_search", "text_search"}
    assert [
        p.doc_id
        for p in retrieve(
            beir_store, embedder, "three hearts", collections=["nope"], count_tokens=len, token_budget=1000
        ).passages
    ] == []


def test_citations_explicit_then_inferred(beir_store, embedder):
    r = retrieve(
        beir_store,
        embedder,
        "What are Saturn's rings made of?",
        count_tokens=lambda t: len(t.split()),
        token_budget=400,
        max_passages=4,
    )
    assert cited_numbers("Ice [1]. Also [2, 9] and [1].", 4) == [1, 2]
    explicit = cite("Saturn's rings are mostly water ice [1].", r.passages, embed=embedder.embed)
    assert explicit[0].number == 1 and explicit[0].explicit and explicit[0].passage.doc_id == "d18"
    inferred = cite(
        "Saturn's rings are made mostly of chunks of water ice of many sizes.", r.passages, embed=embedder.embed
    )
    assert [c.passage.doc_id for c in inferred] == ["d18"] and not inferred[0].explicit
    assert "water ice" in inferred[0].quote
    assert cite("I like turtles and the weather today is fine.", r.passages, embed=embedder.embed) == []


def test_the_embedder_runs_out_of_process_and_recovers_from_a_crash(embedder):
    import os
    import signal
    import sys

    import numpy as np

    from engine.rag.embed import EmbeddingError

    first = embedder.embed(["The cat sat on the mat.", "A feline rested on the rug.", "Stock prices fell."])
    assert first.shape == (3, 384) and np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    assert first[0] @ first[1] > first[0] @ first[2]
    assert "torch" not in sys.modules  # the app's own process never imports torch
    os.kill(embedder.worker_pid, signal.SIGKILL)
    with pytest.raises(EmbeddingError, match="stopped unexpectedly"):
        embedder.embed(["after the crash"])
    again = embedder.embed(["The cat sat on the mat."])  # a fresh worker takes over
    assert np.allclose(again[0], first[0], atol=1e-5)


def test_ranked_sources_put_what_the_answer_rests_on_first_then_the_rest_by_rank(beir_store, embedder):
    r = retrieve(
        beir_store,
        embedder,
        "What are Saturn's rings made of?",
        count_tokens=lambda t: len(t.split()),
        token_budget=400,
        max_passages=4,
    )
    assert len(r.passages) >= 2
    last = len(r.passages)
    cited = cite(f"The rings are what source {last} says [{last}].", r.passages, embed=None)
    ranked = ranked_sources(r.passages, cited)
    # Every passage the answer was given is listed once, with the number the prompt gave it.
    assert sorted(s.number for s in ranked) == list(range(1, last + 1))
    assert [s.passage for s in ranked if s.number == last] == [r.passages[last - 1]]
    # The one it rests on first, then the others in retrieval order.
    assert ranked[0].number == last and ranked[0].supported
    assert [s.number for s in ranked[1:]] == list(range(1, last)) and not any(s.supported for s in ranked[1:])
    assert all(s.quote and s.quote in s.passage.text for s in ranked[1:])  # their opening sentence
    # An answer that rests on nothing still lists what it was given, none marked.
    bare = ranked_sources(r.passages, [])
    assert [s.number for s in bare] == list(range(1, last + 1)) and not any(s.supported for s in bare)
