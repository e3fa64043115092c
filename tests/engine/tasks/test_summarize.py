"""Summaries on the real bundled model, in a 512-token window: map-reduce past the window, cancel, presets,
and the splitter that cuts long text into parts that fit."""

from __future__ import annotations

import threading
import time

import pytest

from engine.answer import Progress, TextDelta
from engine.errors import InvalidRequestError
from engine.rag.store import DocumentRecord
from engine.runtime.runtime import Runtime
from engine.runtime.types import Done, ModelConfig, SamplingParams
from engine.tasks.summarize import (
    FINAL_STAGE,
    LENGTHS,
    MERGE_STAGE,
    PART_STAGE,
    group_texts,
    join_documents,
    split_text,
    summarize,
    summary_task,
)
from engine.tasks.templates import TemplateLibrary
from resources import resource_path

N_CTX = 512
GREEDY = SamplingParams(temperature=0.0, seed=1)
TOWNS = [
    "Ashford",
    "Brackley",
    "Corran",
    "Dunmere",
    "Elsworth",
    "Farrow",
    "Glenby",
    "Harwick",
    "Ilston",
    "Jarrow",
    "Kelby",
    "Lowick",
    "Marden",
    "Norley",
    "Otterby",
    "Pellow",
    "Quenby",
    "Rysome",
    "Stanwick",
    "Thornby",
    "Ulverby",
    "Vanston",
    "Wexley",
    "Yarrow",
    "Zennor",
]
GOODS = ["wool", "cheese", "apples", "timber", "salt", "copper", "honey", "barley", "linen", "pottery"]


def gazetteer(paragraphs: int) -> str:
    """Distinct paragraphs of plain facts, about 95 tokens each."""
    out = []
    for i in range(paragraphs):
        town, river = TOWNS[i % 25], TOWNS[(i + 5) % 25]
        out.append(
            f"{town} is a market town on the river {river}. Its people are known for trading "
            f"{GOODS[i % 10]}, and its fair on day {i % 28 + 1} of each month draws buyers from the coast. "
            f"The old bridge at {town} was rebuilt in {1700 + i * 7} after a flood, and the town council "
            f"still meets in the hall beside it. Farmers around {town} grow {GOODS[(i * 3 + 1) % 10]} on the "
            f"hills, and in winter they carry it by cart to the harbour."
        )
    return "\n\n".join(out)


class RecordingRuntime(Runtime):
    """The real runtime, keeping every finished request's stats (to check that no prompt was cut)."""

    def __init__(self) -> None:
        super().__init__()
        self.finished: list[Done] = []

    def submit(self, request, on_event=None, *, tap=None, trace_parent=None):
        def record(event):
            if isinstance(event, Done):
                self.finished.append(event)
            if tap is not None:
                tap(event)

        return super().submit(request, on_event, tap=record, trace_parent=trace_parent)


@pytest.fixture(scope="module")
def small(model_path):
    rt = RecordingRuntime()
    # A prompt is evaluated batch by batch and cancel is checked between batches: small batches keep
    # cancel prompt even when other processes slow every batch down. One thread: on a busy machine two
    # threads spend most of their time waiting for each other (5x slower here under load).
    rt.load(ModelConfig(model_path, n_ctx=N_CTX, n_batch=64, n_threads=1)).result(timeout=120)
    yield rt
    rt.shutdown()


@pytest.fixture(scope="module")
def prompts():
    return TemplateLibrary(resource_path("prompts"))


def run(start, small, prompts, text, length="short", on_event=None):
    small.finished.clear()
    return start(lambda ctx: summarize(ctx, text, length), small, prompts, GREEDY, on_event, name="summarize")


def stage_steps(events, stage):
    return [(e.done, e.total) for e in events if isinstance(e, Progress) and e.stage == stage]


@pytest.mark.slow
def test_text_five_times_the_window_is_summarized_part_by_part_and_merged(small, prompts, start):
    text = gazetteer(28)
    assert small.count_tokens(text) >= 5 * N_CTX
    handle = run(start, small, prompts, text)
    events = list(handle.events())
    done = events[-1]
    assert done.complete, done
    parts = stage_steps(events, PART_STAGE)
    n = parts[-1][1]
    assert n >= 6 and parts == [(i, n) for i in range(n + 1)]
    # Eight part summaries of up to 64 tokens overflow the ~300-token final prompt: they are merged
    # in groups first (one round per level of the reduce).
    merges = stage_steps(events, MERGE_STAGE)
    rounds = [i for i, step in enumerate(merges) if step[0] == 0]
    assert rounds and merges[-1][1] < n
    for start, end in zip(rounds, [*rounds[1:], len(merges)], strict=True):
        total = merges[start][1]
        assert merges[start:end] == [(i, total) for i in range(total + 1)]
    assert stage_steps(events, FINAL_STAGE) == [(0, 1)]
    # Only the final pass streams, and it is the summary.
    streamed = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert streamed.strip() and done.text == streamed
    assert done.stats.generations == n + sum(total for _, total in (merges[i] for i in rounds)) + 1
    # Every prompt fitted the window whole: nothing cut, and answer included within n_ctx.
    assert len(small.finished) == done.stats.generations
    for request in small.finished:
        assert not request.stats.truncated_input and request.stats.dropped_messages == 0
        assert request.stats.prompt_tokens + request.stats.completion_tokens <= N_CTX


@pytest.mark.slow
def test_cancel_mid_way_ends_promptly_with_no_further_progress(small, prompts, start):
    events: list[tuple[float, object]] = []
    first_part = threading.Event()

    def on_event(event):
        events.append((time.monotonic(), event))
        if isinstance(event, Progress) and event.stage == PART_STAGE and event.done == 1:
            first_part.set()

    handle = run(start, small, prompts, gazetteer(28), on_event=on_event)
    assert first_part.wait(60)
    time.sleep(0.3)  # into the second part's generation
    cancelled_at = time.monotonic()
    handle.cancel()
    result = handle.wait(30)  # ended by the cancel (no timing asserted: a shared machine's timings are noise)
    assert result is not None and result.cancelled
    assert not [e for t, e in events if t > cancelled_at and isinstance(e, Progress)]
    total = next(e for _, e in events if isinstance(e, Progress)).total
    assert result.stats.generations < total
    assert result.text == ""  # cancelled during the map: nothing was streamed yet


@pytest.mark.slow
def test_short_text_is_one_streamed_pass(small, prompts, start):
    text = gazetteer(2)
    handle = run(start, small, prompts, text, "one_line")
    events = list(handle.events())
    done = events[-1]
    assert done.complete
    assert not [e for e in events if isinstance(e, Progress)]
    streamed = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert streamed.strip() and done.text == streamed
    assert done.stats.generations == 1 and done.stats.completion_tokens <= 64


def test_empty_text_and_unknown_length_are_refused(small, prompts, start):
    with pytest.raises(InvalidRequestError, match="no text to summarize"):
        summary_task(" \n\t ")
    with pytest.raises(InvalidRequestError) as refused:
        summary_task("Some text.", "huge")
    assert "'huge'" in str(refused.value) and all(name in refused.value.hint for name in LENGTHS)
    failed = run(start, small, prompts, "").wait(10)
    assert failed.failed and isinstance(failed.error, InvalidRequestError)
    assert small.finished == []  # refused before any generation


# Splitting -----------------------------------------------------------------------------------


def test_parts_fit_the_budget_break_at_paragraphs_and_lose_nothing(small):
    text = gazetteer(12)
    parts = split_text(text, 250, small.count_tokens)
    assert len(parts) >= 4 and "".join(parts) == text
    assert all(small.count_tokens(p) <= 250 for p in parts)
    assert all(p.endswith("\n\n") for p in parts[:-1])  # each paragraph is ~95 tokens: whole ones fit


def test_one_huge_paragraph_is_cut_at_sentences_and_a_huge_word_at_characters(small):
    paragraph = gazetteer(8).replace("\n\n", " ")
    parts = split_text(paragraph, 120, small.count_tokens)
    assert len(parts) >= 6 and "".join(parts) == paragraph
    assert all(small.count_tokens(p) <= 120 for p in parts)
    assert all(p.rstrip().endswith(".") for p in parts)

    blob = "Q29ycmFuIGlzIGEgbWFya2V0IHRvd24" * 60  # no space anywhere
    parts = split_text(blob, 100, small.count_tokens)
    assert len(parts) > 3 and "".join(parts) == blob
    assert all(0 < small.count_tokens(p) <= 100 for p in parts)


def test_groups_keep_order_and_fit():
    texts = [f"Summary {i}: " + "word " * (5 + i % 7) for i in range(20)]

    def count(s: str) -> int:  # any monotone count works for packing
        return len(s.split())

    groups = group_texts(texts, 30, count)
    assert [t for g in groups for t in g] == texts
    assert all(sum(count(t) for t in g) + count("\n\n") * (len(g) - 1) <= 30 for g in groups)
    assert len(groups) < len(texts)


def test_a_collection_is_its_documents_under_their_titles():
    def record(title, path):
        return DocumentRecord(
            doc_id=path,
            path=path,
            collection="c",
            title=title,
            kind="text",
            status="done",
            reason="",
            message="",
            content_hash="",
            size=1,
            mtime=0.0,
            n_chunks=1,
            pages=0,
            updated_at=0.0,
        )

    text = join_documents([(record("Garden", "/a.md"), "Tomatoes.\n"), (record("", "/b.txt"), "Bread.")])
    assert text == "# Garden\n\nTomatoes.\n\n# /b.txt\n\nBread."
