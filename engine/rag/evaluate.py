"""Retrieval quality on BEIR-format data: nDCG@10 and recall@100 for vector, full-text and hybrid search.

A BEIR folder holds corpus.jsonl ({"_id", "title", "text"}), queries.jsonl
({"_id", "text"}) and qrels/test.tsv (query-id, corpus-id, score). Each corpus
document is indexed as one chunk in a DocumentStore, through the same search
calls the assistant uses.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.rag.embed import Embedder
from engine.rag.retrieve import rrf_fuse
from engine.rag.store import DocumentStore, _chunks_schema


@dataclass(frozen=True)
class BeirSet:
    corpus: dict[str, tuple[str, str]]  # id -> (title, text)
    queries: dict[str, str]  # id -> text (only those with judgements)
    qrels: dict[str, dict[str, int]]  # query id -> {doc id: relevance}


def load_beir(folder: str | Path, split: str = "test") -> BeirSet:
    folder = Path(folder)
    corpus = {}
    with open(folder / "corpus.jsonl", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                corpus[str(row["_id"])] = (row.get("title") or "", row.get("text") or "")
    qrels: dict[str, dict[str, int]] = {}
    with open(folder / "qrels" / f"{split}.tsv", encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t")
        for row in reader:
            if len(row) < 3 or not row[2].strip().lstrip("-").isdigit():
                continue  # the header
            qrels.setdefault(row[0], {})[row[1]] = int(row[2])
    queries = {}
    with open(folder / "queries.jsonl", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                if str(row["_id"]) in qrels:
                    queries[str(row["_id"])] = row["text"]
    return BeirSet(corpus, queries, qrels)


def ndcg_at_k(ranked: list[str], relevant: dict[str, int], k: int = 10) -> float:
    dcg = sum((2 ** relevant.get(d, 0) - 1) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted(relevant.values(), reverse=True)[:k]
    idcg = sum((2**r - 1) / math.log2(i + 2) for i, r in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at_k(ranked: list[str], relevant: dict[str, int], k: int = 100) -> float:
    wanted = {d for d, r in relevant.items() if r > 0}
    return len(wanted & set(ranked[:k])) / len(wanted) if wanted else 0.0


def index_corpus(store: DocumentStore, embedder: Embedder, data: BeirSet, batch: int = 256) -> None:
    import pyarrow as pa

    ids = list(data.corpus)
    for start in range(0, len(ids), batch):
        part = ids[start : start + batch]
        texts = [f"{data.corpus[i][0]}\n{data.corpus[i][1]}".strip() for i in part]
        vectors = embedder.embed(texts)
        rows = [
            {
                "chunk_id": i,
                "doc_id": i,
                "collection": "beir",
                "path": i,
                "title": data.corpus[i][0],
                "kind": "text",
                "chunk_index": 0,
                "text": text,
                "n_tokens": 0,
                "page": None,
                "line_start": None,
                "line_end": None,
                "heading": None,
                "vector": v.tolist(),
            }
            for i, text, v in zip(part, texts, vectors, strict=True)
        ]
        store.chunks.add(pa.Table.from_pylist(rows, schema=_chunks_schema(store.dim)))
    store.ensure_text_index()


def evaluate(store: DocumentStore, embedder: Embedder, data: BeirSet, depth: int = 100) -> dict[str, dict]:
    """Mean nDCG@10 and recall@100 per method: vector, text, hybrid."""
    scores: dict[str, dict[str, list[float]]] = {
        m: {"ndcg@10": [], "recall@100": []} for m in ("vector", "text", "hybrid")
    }
    query_ids = list(data.queries)
    vectors = embedder.embed([data.queries[q] for q in query_ids])
    for qid, qvec in zip(query_ids, vectors, strict=True):
        vector_hits = store.vector_search(np.asarray(qvec), depth)
        text_hits = store.text_search(data.queries[qid], depth)
        rankings = {
            "vector": [h.doc_id for h in vector_hits],
            "text": [h.doc_id for h in text_hits],
            "hybrid": [h.doc_id for h, _ in rrf_fuse([vector_hits, text_hits])],
        }
        for method, ranked in rankings.items():
            scores[method]["ndcg@10"].append(ndcg_at_k(ranked, data.qrels[qid]))
            scores[method]["recall@100"].append(recall_at_k(ranked, data.qrels[qid], depth))
    return {m: {k: float(np.mean(v)) for k, v in s.items()} for m, s in scores.items()}
