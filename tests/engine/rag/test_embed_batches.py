"""Embedding batches: their size by device, length-sorted batching that keeps the texts' order, and the
real worker giving each text its own vector whatever batch and position it was embedded in."""

from __future__ import annotations

import numpy as np
import pytest

from engine.models.bundled import BUNDLED_EMBEDDER_NAME, bundled_embedder_path
from engine.rag.embed import Embedder
from engine.rag.embed_batches import choose_batch_size, encode_sorted, in_batches, length_order, put_back

GiB = 1024**3


def test_the_batch_size_follows_the_device_its_free_memory_and_the_models_longest_input():
    minilm = {"max_tokens": 256, "hidden_size": 384, "n_heads": 12}
    assert choose_batch_size("cpu", **minilm) == 32
    assert choose_batch_size("cpu", **minilm, free_bytes=100 * GiB) == 32  # a CPU gains nothing from more
    assert choose_batch_size("mps", **minilm) == 64
    assert choose_batch_size("cuda", **minilm, free_bytes=None) == 32  # free memory unknown
    # MiniLM in fp16: 256 × (12 × 384 + 12 × 256) × 2 bytes = 3.75 MiB a text at its longest input.
    assert choose_batch_size("cuda", **minilm, free_bytes=130 * GiB) == 512  # an H200: the ceiling
    assert choose_batch_size("cuda", **minilm, free_bytes=1 * GiB) == 128  # 0.5 GiB / 3.75 MiB = 136
    assert choose_batch_size("cuda", **minilm, free_bytes=100 << 20) == 8  # 50 MiB / 3.75 MiB = 13
    assert choose_batch_size("cuda", **minilm, free_bytes=4 << 20) == 4  # never below 4
    # bge-m3 reads 8192 tokens: 8192 × (12 × 1024 + 16 × 8192) × 2 = 2.19 GiB a text; 60 GiB free: 13 → 8.
    assert choose_batch_size("cuda", max_tokens=8192, hidden_size=1024, n_heads=16, free_bytes=60 * GiB) == 8
    # float32 takes twice the bytes: half the batch.
    assert choose_batch_size("cuda", **minilm, free_bytes=1 * GiB, dtype_bytes=4) == 64


def test_texts_are_batched_longest_first_and_their_vectors_put_back_in_order():
    texts = ["bb", "a", "dddd", "ccc", "", "eeeee", "ff"]
    order = length_order(texts)
    assert [texts[i] for i in order] == ["eeeee", "dddd", "ccc", "bb", "ff", "a", ""]  # ties keep their order
    assert in_batches(order, 3) == [order[0:3], order[3:6], order[6:]]
    rows = np.array([[float(len(texts[i]))] for i in order])
    assert put_back(order, rows)[:, 0].tolist() == [len(t) for t in texts]
    seen: list[list[str]] = []

    def run(batch: list[str]) -> np.ndarray:
        seen.append(batch)
        return np.array([[float(len(t)), float(ord(t[0]) if t else 0)] for t in batch])

    for overlap in (False, True):
        seen.clear()
        out = encode_sorted(texts, 2, lambda batch: list(batch), run, overlap=overlap)
        assert seen == [["eeeee", "dddd"], ["ccc", "bb"], ["ff", "a"], [""]]
        assert out[:, 0].tolist() == [len(t) for t in texts]
        assert out[:, 1].tolist() == [float(ord(t[0]) if t else 0) for t in texts]


@pytest.mark.parametrize("overlap", [False, True])
def test_the_worker_gives_each_text_its_own_vector_in_the_order_given(overlap):
    """Texts of very different lengths in one request, in batches of 4: each row equals that text embedded
    on its own (batching pads, so not bit for bit), whichever batch sorting put it in."""
    words = "river lantern copper meadow harbour violin orchard glacier saddle pepper quartz willow".split()
    texts = [" ".join(words[(k * 5) % 12 : (k * 5) % 12 + 1 + (k * 7) % 11] * (1 + k % 4)) for k in range(13)]
    assert len({len(t) for t in texts}) > 6
    embedder = Embedder(bundled_embedder_path(), BUNDLED_EMBEDDER_NAME, batch_size=4, overlap=overlap)
    try:
        info = embedder.info
        assert (info.device, info.batch_size, info.overlap) == ("cpu", 4, overlap)
        together = embedder.embed(texts)
        alone = np.stack([embedder.embed([t])[0] for t in texts])
        assert together.shape == (13, info.dim) and together.dtype == np.float32
        assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
        assert np.allclose(together, alone, atol=2e-5)
        # Each row is nearest its own text's vector: none was swapped with another.
        assert (together @ alone.T).argmax(axis=1).tolist() == list(range(13))
    finally:
        embedder.close()


def test_the_default_embedder_lets_the_device_choose_its_batch(embedder):
    info = embedder.info
    assert (info.device, info.batch_size, info.overlap) == ("cpu", 32, False)
    assert embedder.request_size == 32
