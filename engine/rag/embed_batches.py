"""How the embedding worker cuts a request into batches: their size by device, texts sorted by length,
and the next batch tokenized while the device runs the current one.

A GPU is kept busy only by large batches: at 32 texts a MiniLM batch is over before the next
one is ready (0.57 of in-process encoding at batch 256 on an H200). The batch size therefore
follows the device: on CUDA it is the most that half the free memory holds at the model's
longest input (attention scores and activations of one layer at a time, since nothing is kept
for a backward pass), a power of two from 4 to 512; on a CPU it stays at 32, where larger
batches gain nothing and only delay a question asked during indexing.

Texts are sorted longest first so a batch pads to similar lengths, and the vectors are put
back in the order given. Tokenizing the next batch in a thread overlaps the device's work on
a GPU (the fast tokenizers release the interpreter lock); on a CPU the forward pass already
uses every core, so there it is off and the worker calls sentence-transformers' own encode
(which sorts by length alike), keeping the CPU path exactly as it was (docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

CPU_BATCH = 32
MPS_BATCH = 64
MIN_BATCH, MAX_BATCH = 4, 512
FREE_MEMORY_SHARE = 0.5  # of the device's free memory at start: the chat model may share the GPU
ACTIVATIONS_PER_TOKEN = 12  # hidden-sized values per token alive in one layer (q, k, v, output, 4x FFN, residuals)


def choose_batch_size(
    device: str,
    *,
    max_tokens: int,
    hidden_size: int,
    n_heads: int,
    free_bytes: int | None = None,
    dtype_bytes: int = 2,
) -> int:
    """Texts per batch for a model of this shape on ``device`` ("cuda", "mps" or "cpu").

    On CUDA: a text at the model's longest input holds max_tokens × (ACTIVATIONS_PER_TOKEN ×
    hidden_size + n_heads × max_tokens) values of dtype_bytes in one layer; the batch is the
    largest power of two of such texts within FREE_MEMORY_SHARE of ``free_bytes``, clamped to
    MIN_BATCH..MAX_BATCH. Without a free-memory figure it is CPU_BATCH.
    """
    if device == "mps":
        return MPS_BATCH
    if device != "cuda" or not free_bytes or free_bytes <= 0:
        return CPU_BATCH
    per_text = max(1, max_tokens) * (ACTIVATIONS_PER_TOKEN * hidden_size + n_heads * max(1, max_tokens)) * dtype_bytes
    fits = int(free_bytes * FREE_MEMORY_SHARE) // per_text
    size = 1 << max(0, fits.bit_length() - 1) if fits > 0 else 0
    return max(MIN_BATCH, min(MAX_BATCH, size))


def length_order(texts: Sequence[str]) -> list[int]:
    """Indices of ``texts`` longest first (characters stand in for tokens), ties in their given order."""
    return sorted(range(len(texts)), key=lambda i: -len(texts[i]))


def in_batches(order: Sequence[int], size: int) -> list[list[int]]:
    """``order`` cut into runs of ``size`` (the last one shorter)."""
    return [list(order[i : i + size]) for i in range(0, len(order), size)]


def put_back(order: Sequence[int], rows_in_order: np.ndarray) -> np.ndarray:
    """Rows computed in ``order`` returned to the texts' own order: row order[k] of the result is rows_in_order[k]."""
    result = np.empty_like(rows_in_order)
    result[np.asarray(order, dtype=np.int64)] = rows_in_order
    return result


def encode_sorted(
    texts: Sequence[str],
    batch_size: int,
    tokenize: Callable[[list[str]], Any],
    run: Callable[[Any], np.ndarray],
    *,
    overlap: bool,
) -> np.ndarray:
    """Embeddings of ``texts`` in their order: sorted by length, cut into batches, each batch tokenized by
    ``tokenize`` and embedded by ``run`` (which returns float32 rows); with ``overlap`` the next batch is
    tokenized in a thread while ``run`` works on the current one."""
    order = length_order(texts)
    groups = [[texts[i] for i in group] for group in in_batches(order, batch_size)]
    if not groups:
        raise ValueError("nothing to embed")
    rows: list[np.ndarray] = []
    if not overlap or len(groups) == 1:
        for group in groups:
            rows.append(run(tokenize(group)))
    else:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenize") as pool:
            upcoming: Future = pool.submit(tokenize, groups[0])
            for k in range(len(groups)):
                features = upcoming.result()
                if k + 1 < len(groups):
                    upcoming = pool.submit(tokenize, groups[k + 1])
                rows.append(run(features))
    return put_back(order, np.concatenate(rows, axis=0))
