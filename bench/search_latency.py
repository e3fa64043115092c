"""Search latency of the document index: flat scan vs ANN index, with ANN recall@10.

Fills a temporary index (the real DocumentStore on LanceDB) with N chunks whose
vectors are drawn from a mixture of Gaussian clusters on the unit sphere (real
sentence embeddings are clustered by topic; uniform random vectors would make
any ANN index look worse than it is), then times `vector_search` for held-out
queries, first as a flat scan, then after building the ANN (IVF) index, and
reports p50/p95 latency and recall@10 of the ANN results against the exact ones.

    .venv/bin/python bench/search_latency.py [--sizes 10000 100000] [--queries 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.rag.store import PLACE_COLUMNS, DocumentStore, _chunks_schema

DIM = 384


def clustered_vectors(n: int, rng: np.random.Generator, centers: np.ndarray, spread: float) -> np.ndarray:
    labels = rng.integers(0, len(centers), n)
    vectors = centers[labels] + rng.normal(scale=spread, size=(n, DIM)).astype(np.float32)
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def fill(store: DocumentStore, vectors: np.ndarray, batch: int = 20_000) -> None:
    for start in range(0, len(vectors), batch):
        part = vectors[start : start + batch]
        rows = {
            "chunk_id": [f"c{start + i}" for i in range(len(part))],
            "doc_id": [f"d{(start + i) // 20}" for i in range(len(part))],
            "collection": ["default"] * len(part),
            "path": [f"/docs/{(start + i) // 20}.txt" for i in range(len(part))],
            "title": ["t"] * len(part),
            "kind": ["text"] * len(part),
            "chunk_index": [(start + i) % 20 for i in range(len(part))],
            "text": [f"chunk {start + i}" for i in range(len(part))],
            "n_tokens": [3] * len(part),
            "page": [None] * len(part),
            "line_start": [1] * len(part),
            "line_end": [1] * len(part),
            "heading": [None] * len(part),
            **{name: [None] * len(part) for name, _ in PLACE_COLUMNS},
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(part.ravel()), DIM),
        }
        store.chunks.add(pa.table(rows, schema=_chunks_schema(DIM)))


def topic_centers(rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Sub-topic centres and the spread of chunks around them: 200 topic directions, 10 sub-topics around
    each; neighbouring clusters overlap, as real embeddings of related text do."""
    topics = rng.normal(size=(200, DIM)).astype(np.float32)
    topics /= np.linalg.norm(topics, axis=1, keepdims=True)
    centers = np.repeat(topics, 10, axis=0) + rng.normal(scale=1.0 / np.sqrt(DIM), size=(2000, DIM)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    return centers, 1.4 / np.sqrt(DIM)  # a chunk's cosine to its sub-topic centre is about 0.6


def time_queries(store: DocumentStore, queries: np.ndarray, k: int) -> tuple[list[float], list[list[str]]]:
    latencies, results = [], []
    store.vector_search(queries[0], k)  # warm caches
    for q in queries:
        t = time.perf_counter()
        hits = store.vector_search(q, k)
        latencies.append((time.perf_counter() - t) * 1000)
        results.append([h.chunk_id for h in hits])
    return latencies, results


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(values, p))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    centers, spread = topic_centers(rng)

    print(f"{'chunks':>8} {'method':>6} {'p50 ms':>8} {'p95 ms':>8} {'recall@10':>10} {'build s':>8}")
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            store = DocumentStore(tmp, "bench", DIM)
            fill(store, clustered_vectors(size, rng, centers, spread))
            queries = clustered_vectors(args.queries, rng, centers, spread)
            flat_lat, exact = time_queries(store, queries, args.k)
            print(f"{size:>8} {'flat':>6} {pct(flat_lat, 50):>8.1f} {pct(flat_lat, 95):>8.1f} {1.0:>10.3f} {'':>8}")
            t = time.perf_counter()
            store.build_ann_index()
            build_s = time.perf_counter() - t
            ann_lat, approx = time_queries(store, queries, args.k)
            recall = statistics.mean(len(set(a) & set(e)) / len(e) for a, e in zip(approx, exact, strict=True))
            print(
                f"{size:>8} {'ANN':>6} {pct(ann_lat, 50):>8.1f} {pct(ann_lat, 95):>8.1f} {recall:>10.3f} "
                f"{build_s:>8.1f}"
            )
    print("\nTargets: ANN p50 under 25 ms at 100k chunks; ANN recall@10 at least 0.95.")


if __name__ == "__main__":
    main()
