"""Monitoring: question drift, questions with no relevant documents, top scores, unsupported answers.

Every question's embedding and top retrieval similarity, and every answer's
support by its sources, are kept as observations in the trace store. Drift is a
two-sample test (unbiased MMD² with an RBF kernel, permutation p-value) between
the oldest and the newest questions kept, so it needs no fixed threshold. The
levels for "no relevant documents" and "unsupported sentence" are calibrated on
the user's own index: how similar text gets to documents it did not come from.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from engine.rag.cite import _MARKER, sentences
from engine.trace.store import Observation, TraceStore

log = logging.getLogger(__name__)

Embed = Callable[[list[str]], np.ndarray]

# Used until an index with two documents or more has been calibrated: about what calibration gives
# for all-MiniLM-L6-v2 on documents about different things (0.21 to 0.25 on tests/data/beir-mini
# and on the documents of tests/engine/trace/test_monitor.py).
DEFAULT_RELEVANCE_LEVEL = 0.25
DEFAULT_SUPPORT_LEVEL = 0.25
NULL_QUANTILE = 0.95
SUPPORT_PASSAGES = 5  # about how many passages an answer cites; the support null compares to this many
MAX_SENTENCES_PER_CHUNK = 3  # keeps calibration to one embedding batch of a few hundred sentences


@dataclass(frozen=True)
class DriftResult:
    """A two-sample test of the recent questions' embeddings against the baseline window's."""

    statistic: float  # unbiased MMD² (RBF kernel, median-heuristic bandwidth)
    p_value: float  # permutation p-value, (count + 1) / (permutations + 1)
    drifted: bool  # p_value < alpha
    alpha: float
    n_baseline: int
    n_recent: int
    baseline_start: float
    baseline_end: float
    recent_start: float
    recent_end: float


@dataclass(frozen=True)
class Calibration:
    """Similarity levels below which a question has no relevant documents, or a sentence no support."""

    relevance_level: float
    support_level: float
    n_pairs: int  # sentence-chunk similarities the levels rest on; 0 for the defaults
    n_chunks: int

    @property
    def calibrated(self) -> bool:
        return self.n_pairs > 0


@dataclass(frozen=True)
class SentenceSupport:
    text: str
    similarity: float  # best cosine similarity to the passages
    supported: bool


@dataclass(frozen=True)
class SupportResult:
    """How well an answer's judged sentences (four words or more) rest on the passages it was given."""

    sentences: tuple[SentenceSupport, ...]
    unsupported: int
    flagged: bool

    @property
    def support(self) -> float:
        return 1.0 - self.unsupported / len(self.sentences) if self.sentences else 1.0


@dataclass(frozen=True)
class FlaggedQuestion:
    ts: float
    trace_id: str | None
    question: str
    top_similarity: float  # 0.0 when nothing was retrieved


@dataclass(frozen=True)
class FlaggedAnswer:
    ts: float
    trace_id: str | None
    unsupported: tuple[str, ...]
    support: float


@dataclass(frozen=True)
class MonitoringReport:
    """Everything the Monitoring tab shows, read in one go."""

    drift: DriftResult | None
    drift_note: str
    questions: int
    calibration: Calibration | None
    no_relevant: tuple[FlaggedQuestion, ...]
    top_scores: tuple[tuple[float, float], ...]  # (ts, top similarity), oldest first
    unsupported: tuple[FlaggedAnswer, ...]
    answers_checked: int


def drift_test(
    baseline: np.ndarray, recent: np.ndarray, *, permutations: int = 500, alpha: float = 0.01, seed: int = 0
) -> tuple[float, float]:
    """(unbiased MMD², permutation p-value) between two samples of row vectors; ``alpha`` is not used
    here but kept beside the test's other settings so that callers pass one set."""
    x, y = np.asarray(baseline, dtype=np.float64), np.asarray(recent, dtype=np.float64)
    if min(len(x), len(y)) < 2:
        raise ValueError("each window needs two vectors or more")
    pooled = np.vstack([x, y])
    n, total = len(x), len(pooled)
    squares = (pooled * pooled).sum(axis=1)
    distances = np.maximum(squares[:, None] + squares[None, :] - 2.0 * pooled @ pooled.T, 0.0)
    median = np.median(distances[np.triu_indices(total, 1)])
    kernel = np.exp(-distances / (2.0 * median if median > 0 else 1.0))  # σ = the median distance
    np.fill_diagonal(kernel, 0.0)  # the unbiased estimate leaves out each point with itself
    # Row 0 is the observed split; the others are permutations. For membership a (1 = baseline):
    # within-baseline = aᵀKa, cross = aᵀK1 - aᵀKa, within-recent = 1ᵀK1 - within-baseline - 2·cross.
    rng = np.random.default_rng(seed)
    order = np.vstack([np.arange(total), rng.random((permutations, total)).argsort(axis=1)])
    member = (order < n).astype(np.float64)
    row_sums = kernel.sum(axis=1)
    within_x = np.einsum("pi,pi->p", member @ kernel, member)
    cross = member @ row_sums - within_x
    within_y = row_sums.sum() - within_x - 2.0 * cross
    m = total - n
    mmd = within_x / (n * (n - 1)) + within_y / (m * (m - 1)) - 2.0 * cross / (n * m)
    count = int((mmd[1:] >= mmd[0]).sum())
    return float(mmd[0]), (count + 1) / (permutations + 1)


def _comparable(questions: list[Observation]) -> list[Observation]:
    """Questions with an embedding from the current model (only vectors of one model compare)."""
    sized = [(q, q.vector.size) for q in questions if q.vector is not None and q.vector.size]
    dim = sized[-1][1] if sized else 0
    return [q for q, size in sized if size == dim]


def _clean_sentences(text: str) -> list[str]:
    """Sentences of four words or more, without [n] citation markers (as cite.py judges them)."""
    return [" ".join(s.split()) for s in sentences(_MARKER.sub("", text))]


class Monitor:
    """Records questions and answers into the trace store and reports on them; safe to share between
    the worker thread that records and the thread that reports."""

    def __init__(
        self,
        store: TraceStore,
        *,
        baseline_size: int = 40,
        recent_size: int = 40,
        alpha: float = 0.01,
        permutations: int = 500,
        seed: int = 0,
    ):
        self.store = store
        self.baseline_size, self.recent_size = baseline_size, recent_size
        self.alpha, self.permutations, self.seed = alpha, permutations, seed
        self._lock = threading.Lock()
        self._calibration: Calibration | None = None
        self._loaded = False

    # Calibration ---------------------------------------------------------------------

    def calibrate(self, chunks: Sequence[tuple[str, str]], embed: Embed, *, seed: int = 0) -> Calibration:
        """Calibrate both levels on (doc_id, text) chunks of the index and keep the result.

        The null distribution is how close text gets to a document it does not come from: each
        sentence of document A against document B. For relevance that is the sentence's best
        similarity over B's chunks; for support, over up to SUPPORT_PASSAGES chunks of B (an answer
        is judged against a few passages). Each level is the 95th percentile of its null, so text
        clears it against only 1 in 20 documents that are not about it. Per document pair rather
        than over the whole index, so that documents on the same subject as A (a few of the pairs)
        do not raise the level to where they stand; an unrelated question can therefore clear it by
        chance in a large index, and the flag errs towards "there are relevant documents".
        With fewer than two documents there is no null: the defaults are kept (``calibrated`` False).
        """
        result = self._calibrate(chunks, embed, seed) if len({doc for doc, _ in chunks}) > 1 else None
        if result is None:
            log.info("calibration needs sentences from two documents or more; using the default levels")
            result = Calibration(DEFAULT_RELEVANCE_LEVEL, DEFAULT_SUPPORT_LEVEL, 0, len(chunks))
        self.store.add_observation(
            "calibration",
            value=result.relevance_level,
            detail={
                "relevance_level": result.relevance_level,
                "support_level": result.support_level,
                "n_pairs": result.n_pairs,
                "n_chunks": result.n_chunks,
            },
        )
        with self._lock:
            self._calibration, self._loaded = result, True
        return result

    @staticmethod
    def _calibrate(chunks: Sequence[tuple[str, str]], embed: Embed, seed: int) -> Calibration | None:
        rng = np.random.default_rng(seed)
        sentence_docs, texts = [], []
        for doc, text in chunks:
            found = _clean_sentences(text)
            if len(found) > MAX_SENTENCES_PER_CHUNK:
                found = [found[i] for i in sorted(rng.choice(len(found), MAX_SENTENCES_PER_CHUNK, replace=False))]
            sentence_docs += [doc] * len(found)
            texts += found
        if not texts:  # chunks too short to hold a judged sentence
            return None
        vectors = embed(texts + [text for _, text in chunks])
        similarity = vectors[: len(texts)] @ vectors[len(texts) :].T  # sentences x chunks
        sentence_of, chunk_of = np.array(sentence_docs), np.array([doc for doc, _ in chunks])  # their documents
        relevance, support, pairs = [], [], 0
        for doc in np.unique(chunk_of):
            others = similarity[sentence_of != doc][:, chunk_of == doc]
            if others.size:
                passages = rng.choice(others.shape[1], min(SUPPORT_PASSAGES, others.shape[1]), replace=False)
                relevance.append(others.max(axis=1))
                support.append(others[:, passages].max(axis=1))
                pairs += others.size
        if not pairs:
            return None
        return Calibration(
            float(np.quantile(np.concatenate(relevance), NULL_QUANTILE)),
            float(np.quantile(np.concatenate(support), NULL_QUANTILE)),
            pairs,
            len(chunks),
        )

    @property
    def calibration(self) -> Calibration | None:
        """The latest calibration, read from the store the first time."""
        with self._lock:
            if not self._loaded:
                latest = self.store.observations("calibration", limit=1)
                if latest:
                    d = latest[0].detail
                    self._calibration = Calibration(
                        float(d["relevance_level"]),
                        float(d["support_level"]),
                        int(d.get("n_pairs", 0)),
                        int(d.get("n_chunks", 0)),
                    )
                self._loaded = True
            return self._calibration

    def _levels(self) -> tuple[float, float]:
        c = self.calibration
        return (c.relevance_level, c.support_level) if c else (DEFAULT_RELEVANCE_LEVEL, DEFAULT_SUPPORT_LEVEL)

    # Recording -----------------------------------------------------------------------

    def record_question(
        self, question: str | None, vector: np.ndarray, top_similarity: float | None, trace_id: str | None = None
    ) -> bool:
        """Keep a question's embedding and top similarity; True when it has no relevant documents."""
        self.store.add_observation(
            "question", trace_id=trace_id, value=top_similarity, vector=vector, detail={"question": question or ""}
        )
        return top_similarity is None or top_similarity < self._levels()[0]

    def record_answer(
        self, answer: str, passages: Sequence[str], embed: Embed, trace_id: str | None = None, *, keep_text: bool = True
    ) -> SupportResult:
        """Judge each sentence of an answer against the passages it was given, and keep the verdict.
        With no passages nothing supports the answer, so every judged sentence is unsupported.
        ``keep_text`` False (content capture off): the unsupported sentences are counted, not kept."""
        texts = _clean_sentences(answer)
        level = self._levels()[1]
        best = np.zeros(len(texts))
        if texts and passages:
            vectors = embed(texts + list(passages))
            best = (vectors[: len(texts)] @ vectors[len(texts) :].T).max(axis=1)
        judged = tuple(SentenceSupport(t, float(s), bool(s >= level)) for t, s in zip(texts, best, strict=True))
        missing = [s.text for s in judged if not s.supported]
        result = SupportResult(judged, len(missing), bool(missing))
        self.store.add_observation(
            "answer_support",
            trace_id=trace_id,
            value=result.support,
            detail={
                "unsupported": missing if keep_text else [],
                "unsupported_count": len(missing),
                "flagged": result.flagged,
            },
        )
        return result

    # Reading -------------------------------------------------------------------------

    def drift(self) -> DriftResult | None:
        """The oldest baseline_size questions kept against the newest recent_size; None with too few."""
        return self._drift(_comparable(self.store.observations("question")))

    def _drift(self, questions: list[Observation]) -> DriftResult | None:
        if len(questions) < self.baseline_size + self.recent_size:
            return None
        baseline, recent = questions[: self.baseline_size], questions[-self.recent_size :]
        statistic, p_value = drift_test(
            np.stack([q.vector for q in baseline if q.vector is not None]),  # (all have one: _comparable)
            np.stack([q.vector for q in recent if q.vector is not None]),
            permutations=self.permutations,
            alpha=self.alpha,
            seed=self.seed,
        )
        return DriftResult(
            statistic,
            p_value,
            p_value < self.alpha,
            self.alpha,
            len(baseline),
            len(recent),
            baseline[0].ts,
            baseline[-1].ts,
            recent[0].ts,
            recent[-1].ts,
        )

    def report(self, since: float | None = None) -> MonitoringReport:
        """The Monitoring tab's figures; ``since`` limits the lists and scores, drift always uses every
        question kept (its baseline is the oldest)."""
        kept = self.store.observations("question")
        vectors = _comparable(kept)
        drift = self._drift(vectors)
        needed = self.baseline_size + self.recent_size
        if drift is None:
            note = (
                f"Drift needs {needed} questions with embeddings, has {len(vectors)}: it compares the oldest "
                f"{self.baseline_size} with the newest {self.recent_size}."
            )
        elif drift.drifted:
            note = (
                f"The newest {drift.n_recent} questions differ from the oldest {drift.n_baseline} "
                f"(MMD² {drift.statistic:.4f}, p = {drift.p_value:.3g} < {drift.alpha:g}): people ask about "
                "other things now, so retrieval quality measured earlier may no longer hold."
            )
        else:
            note = (
                f"No drift: the newest {drift.n_recent} questions look like the oldest {drift.n_baseline} "
                f"(MMD² {drift.statistic:.4f}, p = {drift.p_value:.3g}; drift is called below {drift.alpha:g})."
            )
        relevance_level = self._levels()[0]
        questions = [q for q in kept if since is None or q.ts >= since]
        no_relevant = tuple(
            FlaggedQuestion(q.ts, q.trace_id, q.detail.get("question", ""), q.value or 0.0)
            for q in questions
            if q.value is None or q.value < relevance_level
        )
        answers = self.store.observations("answer_support", since=since)
        unsupported = tuple(
            FlaggedAnswer(a.ts, a.trace_id, tuple(a.detail.get("unsupported", ())), 1.0 if a.value is None else a.value)
            for a in answers
            if a.detail.get("flagged")
        )
        return MonitoringReport(
            drift,
            note,
            len(questions),
            self.calibration,
            no_relevant,
            tuple((q.ts, q.value) for q in questions if q.value is not None),
            unsupported,
            len(answers),
        )
