"""Citations: number the sources for the prompt, then find which ones the answer relies on.

The model is asked to cite as [1], [2]. Small local models often forget, or
cite the wrong number, so each sentence is checked against the sources by
embedding similarity: a marker counts only when its sentence is close enough to
that source, and a sentence without a supported marker is attributed to the
source it is closest to, as an "inferred" citation, when the match is strong.
Every citation keeps the passage and a short quote from it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engine.rag.retrieve import Passage

_MARKER = re.compile(r"\[(\d+(?:\s*[,;]\s*\d+)*)\]")
_SENTENCES = re.compile(r"(?<=[.!?])\s+|\n+")
INFERRED_MIN_SIMILARITY = 0.55  # a sentence at least this close to a passage is taken to rest on it
SUPPORTED_MIN_SIMILARITY = 0.3  # a sentence citing [n] less close than this to source n does not rest on it
QUOTE_CHARS = 240


@dataclass(frozen=True)
class Citation:
    number: int  # the [n] shown in the answer and the sources list
    passage: Passage
    quote: str  # the sentence(s) of the passage closest to what the answer said
    explicit: bool  # the model wrote [n]; False when inferred from similarity
    supported: bool = True  # the answer rests on it; False: it was given to the model, nothing rests on it

    def to_dict(self) -> dict:
        p = self.passage
        return {
            "number": self.number,
            "path": p.path,
            "title": p.title,
            "kind": p.kind,
            "page": p.page,
            "line_start": p.line_start,
            "line_end": p.line_end,
            "heading": p.heading,
            "place": p.place,
            "place_label": p.place_label,
            "place_within": p.place_within,
            "quote": self.quote,
            "explicit": self.explicit,
            "supported": self.supported,
            "doc_id": p.doc_id,
            "chunk_ids": list(p.chunk_ids),
            "location": p.location(),
        }


def ranked_sources(passages: Sequence[Passage], citations: Sequence[Citation]) -> list[Citation]:
    """Every passage the answer was given, the strongest evidence first: those the answer rests on (in the
    order its citations come), then the others by retrieval rank, marked ``supported=False`` and quoted by
    their opening sentence. A passage cited that was not among those given (a search tool's) comes with the
    supported ones. Each keeps the number the prompt gave it."""
    given = {_key(p): n for n, p in enumerate(passages, start=1)}
    out: list[Citation] = []
    seen: set[tuple] = set()
    for c in sorted(citations, key=lambda c: not c.supported):
        key = _key(c.passage)
        if key not in seen:
            seen.add(key)
            out.append(Citation(given.get(key, c.number), c.passage, c.quote, c.explicit, c.supported))
    for n, p in enumerate(passages, start=1):
        if _key(p) not in seen:
            seen.add(_key(p))
            out.append(Citation(n, p, opening(p.text), explicit=False, supported=False))
    return out


def opening(text: str) -> str:
    """A passage's first sentence (or its first QUOTE_CHARS characters), for a source list."""
    first = (sentences(text) or [text.strip()])[0]
    return first if len(first) <= QUOTE_CHARS else first[: QUOTE_CHARS - 1].rstrip() + "…"


def _key(passage: Passage) -> tuple:
    return (passage.doc_id, passage.chunk_ids)


def sources_block(passages: Sequence[Passage]) -> str:
    """The numbered sources as the prompt shows them."""
    parts = []
    for number, p in enumerate(passages, start=1):
        where = ", ".join(x for x in (p.title or p.path, p.location()) if x)
        parts.append(f"[{number}] {where}\n{p.text.strip()}")
    return "\n\n".join(parts)


def cited_numbers(answer: str, n_sources: int) -> list[int]:
    """The source numbers the answer cites explicitly, in order of first use."""
    seen: list[int] = []
    for match in _MARKER.finditer(answer):
        for part in re.split(r"[,;]", match.group(1)):
            number = int(part)
            if 1 <= number <= n_sources and number not in seen:
                seen.append(number)
    return seen


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCES.split(text) if len(s.strip().split()) >= 4]


def _quote(passage: Passage, answer_vectors: np.ndarray | None, embed) -> str:
    candidates = sentences(passage.text) or [passage.text.strip()]
    if answer_vectors is None or embed is None or len(candidates) < 2:
        return opening(passage.text)
    vectors = embed(candidates)
    quote = candidates[int(np.argmax((vectors @ answer_vectors.T).max(axis=1)))]
    return quote if len(quote) <= QUOTE_CHARS else quote[: QUOTE_CHARS - 1].rstrip() + "…"


def _sentences_with_markers(answer: str, n_sources: int) -> list[tuple[str, list[int]]]:
    """(sentence without markers, source numbers it cites) for each sentence of the answer."""
    out = []
    for raw in _SENTENCES.split(answer):
        numbers = cited_numbers(raw, n_sources)
        clean = " ".join(_MARKER.sub("", raw).split())
        if clean or numbers:
            out.append((clean, numbers))
    return out


def cite(answer: str, passages: Sequence[Passage], embed=None) -> list[Citation]:
    """Citations for an answer: its [n] markers where the sentence really rests on source n, and,
    for sentences without a supported marker, the source they are closest to if close enough.

    ``embed`` (list[str] -> unit vectors) enables the checks, the inference and better quotes;
    without it every in-range [n] marker counts as it stands.
    """
    if not passages:
        return []
    if embed is None:
        numbers = cited_numbers(answer, len(passages))
        return [Citation(n, passages[n - 1], _quote(passages[n - 1], None, None), True) for n in numbers]
    parts = _sentences_with_markers(answer, len(passages))
    judged = [i for i, (text, _) in enumerate(parts) if len(text.split()) >= 4]
    vectors = embed([parts[i][0] for i in judged]) if judged else None
    similarity = {}
    if vectors is not None:
        matrix = vectors @ embed([p.text for p in passages]).T
        similarity = {i: matrix[row] for row, i in enumerate(judged)}
    chosen: dict[int, bool] = {}  # source number -> explicit
    for i, (_, numbers) in enumerate(parts):
        scores = similarity.get(i)
        supported = [n for n in numbers if scores is None or scores[n - 1] >= SUPPORTED_MIN_SIMILARITY]
        for n in supported:
            chosen.setdefault(n, True)
        if not supported and scores is not None:
            best = int(np.argmax(scores))
            if scores[best] >= INFERRED_MIN_SIMILARITY:
                chosen.setdefault(best + 1, False)
    return [
        Citation(n, passages[n - 1], _quote(passages[n - 1], vectors, embed), explicit)
        for n, explicit in chosen.items()
    ]
