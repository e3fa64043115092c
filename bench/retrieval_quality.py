"""Retrieval quality on any BEIR-format folder: nDCG@10 and recall@100, vector vs full-text vs hybrid.

    .venv/bin/python bench/retrieval_quality.py [FOLDER ...]

With no folder it uses tests/data/beir-mini (40 documents, 20 paraphrased
questions). Any BEIR data set (corpus.jsonl, queries.jsonl, qrels/test.tsv)
works the same way, e.g. SciFact or NFCorpus downloaded from the BEIR project.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from engine.models.bundled import BUNDLED_EMBEDDER_NAME, bundled_embedder_path
from engine.rag.embed import Embedder
from engine.rag.evaluate import evaluate, index_corpus, load_beir
from engine.rag.store import DocumentStore


def main() -> None:
    folders = sys.argv[1:] or [str(REPO / "tests" / "data" / "beir-mini")]
    embedder = Embedder(bundled_embedder_path(), BUNDLED_EMBEDDER_NAME)
    print(f"embedder: {BUNDLED_EMBEDDER_NAME} on {embedder.info.device}")
    for folder in folders:
        data = load_beir(folder)
        with tempfile.TemporaryDirectory() as tmp:
            store = DocumentStore(tmp, BUNDLED_EMBEDDER_NAME, embedder.info.dim)
            t = time.perf_counter()
            index_corpus(store, embedder, data)
            indexed = time.perf_counter() - t
            results = evaluate(store, embedder, data)
        print(
            f"\n{Path(folder).name}: {len(data.corpus)} documents, {len(data.queries)} queries "
            f"(indexed in {indexed:.1f} s)"
        )
        print(f"{'method':>8} {'nDCG@10':>8} {'recall@100':>11}")
        for method in ("vector", "text", "hybrid"):
            r = results[method]
            print(f"{method:>8} {r['ndcg@10']:>8.3f} {r['recall@100']:>11.3f}")


if __name__ == "__main__":
    main()
