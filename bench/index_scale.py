"""The document index at scale: build time, disk size, query latency and recall at 100k and 1M chunks.

Fills a temporary index through the real write path (``DocumentStore.replace_chunks_many`` and
``upsert_documents`` in the batches the Indexer commits: documents of 20 chunks, a commit once 64
chunks are ready), then runs the maintenance the Indexer runs at the end of a job
(``DocumentStore.optimize``: full-text index folded in, files compacted, the IVF index built). The
vectors are synthetic (no model could embed a million chunks here in reasonable time): 384-dim,
drawn from a topic/sub-topic mixture on the unit sphere as in bench/search_latency.py, because real
sentence embeddings cluster by topic; the texts are ~200-character strings of Zipf-distributed
words, so the full-text index has real work to do.

Then 200 held-out queries: exact top-10 by a brute-force scan in numpy, the flat (unindexed)
``vector_search`` for reference, and the IVF index with a sweep of partition counts and probes,
each reported as p50/p95 latency and recall@10 against the exact answers, plus the build time of
each index. The store's choice (``ann_partitions``/``ANN_NPROBES`` in engine/rag/store.py) is
marked with '*'.

    .venv/bin/python bench/index_scale.py [--sizes 100000 1000000] [--queries 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from search_latency import DIM, clustered_vectors, pct, topic_centers

from engine.rag.store import ANN_NPROBES, DocumentRecord, DocumentStore, ann_partitions

CHUNKS_PER_DOC = 20
COMMIT_CHUNKS = 64  # the Indexer's EMBED_BATCH: it commits once this many chunks are embedded
WORDS = 5000


def texts(rng: np.random.Generator, n: int, start: int) -> list[str]:
    """Chunk texts of Zipf-distributed pseudo-words (~200 characters each)."""
    ranks = np.minimum(rng.zipf(1.2, size=(n, 30)), WORDS) - 1
    return [f"chunk{start + i} " + " ".join(f"w{r}" for r in row) for i, row in enumerate(ranks)]


def fill(store: DocumentStore, vectors: np.ndarray, rng: np.random.Generator) -> float:
    """Write the chunks as the Indexer does; returns seconds spent in the store's write calls."""
    spent = 0.0
    docs_per_commit = -(-COMMIT_CHUNKS // CHUNKS_PER_DOC)
    step = docs_per_commit * CHUNKS_PER_DOC
    for start in range(0, len(vectors), step):
        part = vectors[start : start + step]
        words = texts(rng, len(part), start)
        doc_ids, rows = [], []
        for i, vector in enumerate(part):
            n = start + i
            doc = f"d{n // CHUNKS_PER_DOC}"
            if not doc_ids or doc_ids[-1] != doc:
                doc_ids.append(doc)
            rows.append(
                {
                    "chunk_id": f"{doc}:{n % CHUNKS_PER_DOC}",
                    "doc_id": doc,
                    "collection": "default",
                    "path": f"/docs/{doc}.txt",
                    "title": doc,
                    "kind": "text",
                    "chunk_index": n % CHUNKS_PER_DOC,
                    "text": words[i],
                    "n_tokens": 40,
                    "page": None,
                    "line_start": 1 + 5 * (n % CHUNKS_PER_DOC),
                    "line_end": 5 + 5 * (n % CHUNKS_PER_DOC),
                    "heading": None,
                    "vector": vector,
                }
            )
        records = [
            DocumentRecord(
                doc_id=d,
                path=f"/docs/{d}.txt",
                collection="default",
                title=d,
                kind="text",
                status="done",
                reason="",
                message="",
                content_hash=d,
                size=4000,
                mtime=0.0,
                n_chunks=CHUNKS_PER_DOC,
                pages=0,
                updated_at=time.time(),
            )
            for d in doc_ids
        ]
        t = time.perf_counter()
        store.replace_chunks_many(doc_ids, rows)
        store.upsert_documents(records)
        spent += time.perf_counter() - t
        if start // step % 500 == 499:
            print(f"    … {start + len(part):,} chunks written ({spent:.0f} s)", flush=True)
    return spent


def disk_mb(folder: str) -> float:
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file()) / 2**20


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int) -> list[list[str]]:
    """Exact cosine top-k ids (vectors are unit length), scanning in blocks to bound memory."""
    out = []
    for q in queries:
        scores = vectors @ q
        top = np.argpartition(-scores, k)[:k]
        top = top[np.argsort(-scores[top])]
        out.append([f"d{i // CHUNKS_PER_DOC}:{i % CHUNKS_PER_DOC}" for i in top])
    return out


def timed_search(store: DocumentStore, queries: np.ndarray, k: int, nprobes: int) -> tuple[list[float], list]:
    store.vector_search(queries[0], k, nprobes=nprobes)  # warm caches
    latencies, results = [], []
    for q in queries:
        t = time.perf_counter()
        hits = store.vector_search(q, k, nprobes=nprobes)
        latencies.append((time.perf_counter() - t) * 1000)
        results.append([h.chunk_id for h in hits])
    return latencies, results


def recall(approx: list[list[str]], exact: list[list[str]]) -> float:
    return statistics.mean(len(set(a) & set(e)) / len(e) for a, e in zip(approx, exact, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--probes", type=int, nargs="+", default=[8, 16, 24, 32, 48])
    parser.add_argument("--partition-factors", type=float, nargs="+", default=[0.5, 1.0, 2.0])
    parser.add_argument("--no-flat", action="store_true", help="skip the flat-scan reference")
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    centers, spread = topic_centers(rng)
    print(f"cores: {os.cpu_count()}, vectors: {DIM}-dim float32, {args.queries} queries, k={args.k}\n")
    for size in args.sizes:
        print(f"== {size:,} chunks ({size // CHUNKS_PER_DOC:,} documents)")
        with tempfile.TemporaryDirectory() as tmp:
            store = DocumentStore(tmp, "bench", DIM)
            vectors = clustered_vectors(size, rng, centers, spread)
            t = time.perf_counter()
            write_s = fill(store, vectors, rng)
            fill_s = time.perf_counter() - t
            before = disk_mb(tmp)
            t = time.perf_counter()
            store.optimize()  # what the Indexer runs after a job: FTS folded in, compaction, IVF index
            optimize_s = time.perf_counter() - t
            chosen = ann_partitions(size)
            print(
                f"  build: write {write_s:.0f} s in store calls ({fill_s:.0f} s with row making), "
                f"optimize {optimize_s:.0f} s (IVF with {chosen} partitions); "
                f"disk {before:.0f} MB before optimize, {disk_mb(tmp):.0f} MB after"
            )
            queries = clustered_vectors(args.queries, rng, centers, spread)
            t = time.perf_counter()
            exact = exact_top(vectors, queries, args.k)
            per_query = (time.perf_counter() - t) * 1000 / len(queries)
            print(f"  exact top-{args.k} by numpy brute force: {per_query:.1f} ms/query")
            words = texts(rng, args.queries, 0)
            text_lat = []
            for w in words:
                t = time.perf_counter()
                store.text_search(" ".join(w.split()[1:4]), args.k)
                text_lat.append((time.perf_counter() - t) * 1000)
            print(f"  full-text search: p50 {pct(text_lat, 50):.1f} ms, p95 {pct(text_lat, 95):.1f} ms")
            print(f"  {'index':>18} {'probes':>6} {'p50 ms':>8} {'p95 ms':>8} {'recall@10':>10} {'build s':>8}")
            if not args.no_flat:
                for index in store.chunks.list_indices():
                    if "vector" in index.columns:
                        store.chunks.drop_index(index.name)
                lat, got = timed_search(store, queries, args.k, ANN_NPROBES)
                flat = f"{pct(lat, 50):>8.1f} {pct(lat, 95):>8.1f} {recall(got, exact):>10.3f}"
                print(f"  {'flat (no index)':>18} {'-':>6} {flat}")
            for factor in args.partition_factors:
                partitions = max(16, int(chosen * factor))
                t = time.perf_counter()
                store.build_ann_index(partitions)
                build_s = time.perf_counter() - t
                for probes in args.probes:
                    lat, got = timed_search(store, queries, args.k, probes)
                    mark = "*" if partitions == chosen and probes == ANN_NPROBES else " "
                    print(
                        f" {mark}{'IVF ' + str(partitions):>18} {probes:>6} {pct(lat, 50):>8.1f} {pct(lat, 95):>8.1f} "
                        f"{recall(got, exact):>10.3f} {build_s:>8.1f}"
                    )
            print(flush=True)
    print("Targets: p50 under 25 ms and recall@10 at least 0.95 with the store's choice (*).")


if __name__ == "__main__":
    main()
