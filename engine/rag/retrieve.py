"""Retrieval: hybrid search (vector + full text) fused by reciprocal rank, passages fitted to a budget.

The question is embedded and searched both ways in the chosen collections; the
two rankings are fused with reciprocal-rank fusion (RRF), adjacent chunks of the
same document are merged into one passage, and passages are taken best first
until the prompt budget (in the LLM's tokens) is spent.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from engine.rag.embed import TextEmbedder
from engine.rag.loaders.base import describe_location
from engine.rag.store import ChunkHit, DocumentStore

RRF_K = 60  # the constant from Cormack et al.; damps the weight of the very top ranks


@dataclass(frozen=True)
class Passage:
    """One or more adjacent chunks of a document, as given to the model and shown as a source."""

    doc_id: str
    path: str
    title: str
    kind: str
    collection: str
    page: int | None
    line_start: int | None
    line_end: int | None
    heading: str | None
    text: str
    score: float  # fused RRF score of its best chunk
    chunk_ids: tuple[str, ...]
    similarity: float  # best cosine similarity of its chunks to the question (0 if only text-matched)
    place: str | None = None  # a kind of place other than page or lines: "slide", "rows", "chapter", …
    place_label: str | None = None  # its name (slide title, sheet, chapter title, e-mail subject)
    place_within: str | None = None  # the containers, for an e-mail's attachment

    def location(self) -> str:
        """'page 3', 'lines 10–24', 'slide 4 "Results"', 'sheet "Budget", rows 2–9', … or '' — for source lists."""
        return describe_location(
            self.place, self.place_label, self.place_within, self.page, self.line_start, self.line_end
        )


@dataclass(frozen=True)
class Retrieval:
    query: str
    passages: tuple[Passage, ...]
    vector_hits: int
    text_hits: int
    timings: dict = field(default_factory=dict)  # stage -> seconds
    query_vector: np.ndarray | None = None
    top_similarity: float | None = None  # cosine similarity of the nearest chunk (None: no vector search)


def rrf_fuse(rankings: list[list[ChunkHit]], k: int = RRF_K) -> list[tuple[ChunkHit, float]]:
    """Reciprocal-rank fusion: each list adds 1/(k + rank) to the chunks it ranks."""
    scores: dict[str, float] = {}
    best: dict[str, ChunkHit] = {}
    for ranking in rankings:
        for rank, hit in enumerate(ranking, start=1):
            scores[hit.chunk_id] = scores.get(hit.chunk_id, 0.0) + 1.0 / (k + rank)
            if hit.chunk_id not in best or (best[hit.chunk_id].vector is None and hit.vector is not None):
                best[hit.chunk_id] = hit
    return sorted(((best[c], s) for c, s in scores.items()), key=lambda pair: -pair[1])


def retrieve(
    store: DocumentStore,
    embedder: TextEmbedder,
    query: str,
    *,
    collections: list[str] | None = None,
    count_tokens: Callable[[str], int],
    token_budget: int = 1500,
    max_passages: int = 6,
    candidates: int = 30,
    mode: str = "hybrid",
) -> Retrieval:
    """The best passages for ``query`` within ``token_budget`` tokens; mode: hybrid, vector or text."""
    timings = {}
    t = time.perf_counter()
    qvec = embedder.embed_query(query) if mode != "text" else None
    timings["embed"] = time.perf_counter() - t
    t = time.perf_counter()
    vector_hits = store.vector_search(qvec, candidates, collections) if qvec is not None else []
    timings["vector_search"] = time.perf_counter() - t
    t = time.perf_counter()
    text_hits = store.text_search(query, candidates, collections) if mode != "vector" else []
    timings["text_search"] = time.perf_counter() - t
    t = time.perf_counter()
    fused = rrf_fuse([h for h in (vector_hits, text_hits) if h])
    similarity = {h.chunk_id: h.score for h in vector_hits}
    passages = _merge_adjacent(fused[: max_passages * 2], similarity)
    passages = _fit_budget(passages, count_tokens, token_budget, max_passages)
    timings["fuse"] = time.perf_counter() - t
    top = max((h.score for h in vector_hits), default=None)
    return Retrieval(
        query, tuple(passages), len(vector_hits), len(text_hits), timings, qvec, float(top) if top is not None else None
    )


def _merge_adjacent(fused: list[tuple[ChunkHit, float]], similarity: dict[str, float]) -> list[Passage]:
    """Chunks of one document that sit next to each other become one passage, ranked by its best chunk."""
    by_doc: dict[str, list[tuple[ChunkHit, float]]] = {}
    for hit, score in fused:
        by_doc.setdefault(hit.doc_id, []).append((hit, score))
    passages = []
    for hits in by_doc.values():
        hits.sort(key=lambda pair: pair[0].chunk_index)
        group = [hits[0]]
        for hit, score in hits[1:]:
            if hit.chunk_index == group[-1][0].chunk_index + 1 and _same_place(hit, group[-1][0]):
                group.append((hit, score))
            else:
                passages.append(_passage(group, similarity))
                group = [(hit, score)]
        passages.append(_passage(group, similarity))
    return sorted(passages, key=lambda p: -p.score)


def _same_place(a: ChunkHit, b: ChunkHit) -> bool:
    """Chunks that may merge into one passage: one page, slide, sheet, chapter, message or attachment."""
    return (a.page, a.place, a.place_label, a.place_within) == (b.page, b.place, b.place_label, b.place_within)


def _passage(group: list[tuple[ChunkHit, float]], similarity: dict[str, float]) -> Passage:
    first = group[0][0]
    text = first.text
    for hit, _ in group[1:]:
        text = _join_overlapping(text, hit.text)
    lines = [h.line_end for h, _ in group if h.line_end is not None]
    return Passage(
        doc_id=first.doc_id,
        path=first.path,
        title=first.title,
        kind=first.kind,
        collection=first.collection,
        page=first.page,
        line_start=first.line_start,
        line_end=max(lines) if lines else None,
        heading=first.heading,
        text=text,
        score=max(s for _, s in group),
        chunk_ids=tuple(h.chunk_id for h, _ in group),
        similarity=max((similarity.get(h.chunk_id, 0.0) for h, _ in group), default=0.0),
        place=first.place,
        place_label=first.place_label,
        place_within=first.place_within,
    )


def _join_overlapping(left: str, right: str) -> str:
    """Concatenate two consecutive chunks, dropping the text the second repeats from the first."""
    for size in range(min(len(left), len(right)), 8, -1):
        if left.endswith(right[:size]):
            return left + right[size:]
    return left + "\n" + right


def _fit_budget(
    passages: list[Passage], count_tokens: Callable[[str], int], budget: int, max_passages: int
) -> list[Passage]:
    kept: list[Passage] = []
    used = 0
    for passage in passages:
        if len(kept) == max_passages:
            break
        cost = count_tokens(passage.text) + 16  # the source's number and label
        if used + cost > budget:
            continue  # a smaller passage further down may still fit
        kept.append(passage)
        used += cost
    return kept
