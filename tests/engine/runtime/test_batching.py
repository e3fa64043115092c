"""Continuous batching on the real bundled model: several streams in one context, joining and
leaving between steps, never leaking into each other; priorities, preemption, waiting for room."""

from __future__ import annotations

import threading

import pytest

from engine.runtime.generator import Generator
from engine.runtime.runtime import Runtime
from engine.runtime.types import (
    ChatMessage,
    Done,
    GenerationRequest,
    ModelConfig,
    Priority,
    SamplingParams,
    Started,
    Token,
)
from tests.engine.runtime.conftest import counting_tokens

COLOURS = "Name three colours."
ANIMALS = ("cat", "dog", "fox", "owl", "bee", "pig")


def greedy(text: str, max_tokens: int = 40, **kw) -> GenerationRequest:
    return GenerationRequest((ChatMessage("user", text),), SamplingParams(temperature=0.0, max_tokens=max_tokens), **kw)


def story(animal: str) -> str:
    return f"Write a story about a {animal}."


def run_together(generator: Generator, texts, max_tokens=40, cancel_after: dict | None = None):
    """Admit every request into one batch on an empty cache and step until all are done; returns the
    sequences. ``cancel_after`` maps an index to a token count after which that stream is cancelled."""
    generator.forget_cache()
    seqs = []
    for i, text in enumerate(texts):
        cancel = threading.Event()
        limit = (cancel_after or {}).get(i)

        def emit(event, cancel=cancel, limit=limit, count=[0]):  # noqa: B006 - the count each emit keeps
            if isinstance(event, Token) and limit is not None:
                count[0] += 1
                if count[0] >= limit:
                    cancel.set()

        seq = generator.sequence(greedy(text, max_tokens), cancel, emit)
        assert generator.batcher.admit(seq)
        seqs.append(seq)
    while generator.batcher.busy:
        generator.batcher.step()
    for seq in seqs:
        seq.left_in_cache = list(seq.home.tokens)  # before a later run reuses the slot
    return seqs


def generated_tokens(seq) -> list[int]:
    """What the stream left in its slot after its own prompt (its answer, as tokens)."""
    cached = seq.left_in_cache
    assert cached[: len(seq.prompt.tokens)] == seq.prompt.tokens  # its own prompt, nobody else's
    return cached[len(seq.prompt.tokens) :]


def solo(generator: Generator, text: str, max_tokens=40) -> tuple[Done, list[int]]:
    generator.forget_cache()
    done = generator.generate(greedy(text, max_tokens), threading.Event(), lambda e: None)
    return done, list(generator.cached_tokens[done.stats.prompt_tokens :])


def text_of(generator, tokens) -> str:
    return b"".join(generator.model.piece(t) for t in tokens).decode("utf-8", "replace")


def test_batched_streams_never_see_each_other(generator):
    """Greedy streams decoded together: each one's tokens depend only on its own prompt (the same
    stream batched with other companions is token for token the same), each cache holds its own
    prompt and answer, and the answers are each stream's own. Against its solo run a stream
    drifts after a few tokens (printed): llama.cpp evaluates a batch of many prompt rows with a
    tiled attention kernel that rounds differently from the one for a short single prompt."""
    first = run_together(generator, [COLOURS, story("cat"), story("dog"), story("fox")])
    second = run_together(generator, [COLOURS, story("owl"), story("bee"), story("pig")])
    # Companions of equal length that all run to max_tokens: both batches have the same shape.
    assert len({len(s.prompt.tokens) for s in first[1:] + second[1:]}) == 1
    assert {s.done.stats.completion_tokens for s in first + second} == {40}
    assert generated_tokens(first[0]) == generated_tokens(second[0])
    assert first[0].done.text == second[0].done.text

    for seq, animal in zip(first[1:] + second[1:], ("cat", "dog", "fox", "owl", "bee", "pig"), strict=False):
        answer = generated_tokens(seq)
        assert text_of(generator, answer) == seq.done.text  # the cache holds exactly what it said
        solo_done, solo_tokens = solo(generator, story(animal))
        diverge = next((i for i, (a, b) in enumerate(zip(answer, solo_tokens, strict=False)) if a != b), None)
        print(
            f"\n{animal}: batched {seq.done.text[:60]!r}\n{'':5}solo    {solo_done.text[:60]!r}\n"
            f"{'':5}same tokens as solo {'throughout' if diverge is None else f'up to token {diverge}'}"
        )
        assert answer[0] == solo_tokens[0]  # it starts as its own prompt makes it start
    texts = [s.done.text for s in first + second[1:]]
    assert len(set(texts)) == len(texts)


def test_streams_joining_one_step_apart_decode_together_exactly_as_alone(generator):
    """Where prompts are evaluated in batches of the same kernel as alone (here each joins one step
    after the other, so no step holds 64 prompt rows), every stream decoded together with the others
    is token for token its solo run: decoding in one batch does not change the numbers at all."""
    generator.forget_cache()
    texts = [COLOURS, story("cat"), story("dog"), story("fox")]
    seqs = []
    for text in texts:
        seq = generator.sequence(greedy(text), threading.Event(), lambda e: None)
        assert generator.batcher.admit(seq)
        seqs.append(seq)
        generator.batcher.step()  # its prompt shares this step with the others' next tokens
    while generator.batcher.busy:
        generator.batcher.step()
    answers = [(seq.done.text, list(seq.home.tokens[len(seq.prompt.tokens) :])) for seq in seqs]
    for text, (answer, tokens) in zip(texts, answers, strict=False):
        done, solo_tokens = solo(generator, text)
        assert tokens == solo_tokens and answer == done.text


def test_one_stream_alone_in_the_batcher_is_its_solo_run(generator):
    (seq,) = run_together(generator, [story("fox")])
    done, tokens = solo(generator, story("fox"))
    assert generated_tokens(seq) == tokens and seq.done.text == done.text


def test_cancelling_one_stream_leaves_the_others_identical(generator):
    texts = [COLOURS, story("cat"), story("fox")]
    undisturbed = run_together(generator, texts)
    disturbed = run_together(generator, texts, cancel_after={1: 5})
    assert disturbed[1].done.stats.finish_reason == "cancelled"
    assert disturbed[1].done.stats.completion_tokens <= 6
    assert undisturbed[1].done.text.startswith(disturbed[1].done.text)
    for before, after in ((undisturbed[0], disturbed[0]), (undisturbed[2], disturbed[2])):
        assert after.done.stats.finish_reason == "length"
        assert generated_tokens(after) == generated_tokens(before)
        assert after.done.text == before.done.text


def test_cancel_during_prompt_evaluation_stops_that_stream_only(model_path):
    gen = Generator(ModelConfig(model_path, n_ctx=2048, n_batch=64))
    try:
        running = gen.sequence(greedy(story("owl"), 30), threading.Event(), lambda e: None)
        assert gen.batcher.admit(running)
        gen.batcher.step()  # its prompt, then its first token
        long_text = "Summarise this: " + "The tide comes in and goes out twice a day. " * 40
        cancel = threading.Event()
        long = gen.sequence(greedy(long_text, 30), cancel, lambda e: None)
        assert gen.batcher.admit(long)
        gen.batcher.step()
        evaluated = len(long.slot.tokens)
        assert 0 < evaluated < len(long.prompt.tokens)  # part of its prompt is in, part is not
        cancel.set()
        while gen.batcher.busy:
            gen.batcher.step()
        assert long.done.stats.finish_reason == "cancelled" and long.done.stats.completion_tokens == 0
        assert long.done.text == ""
        assert running.done.stats.finish_reason == "length" and running.done.stats.completion_tokens == 30
    finally:
        gen.close()


def events_of(handle_events: list, kind) -> list:
    return [e for e in handle_events if isinstance(e, kind)]


def test_requests_join_the_running_batch_and_leave_it_at_once(two_slots):
    """A second request starts while the first is still generating, and a short one that started
    later finishes first."""
    log = []
    lock = threading.Lock()

    def record(name):
        def on_event(event):
            with lock:
                log.append((name, type(event).__name__))

        return on_event

    first_token = threading.Event()
    long = two_slots.submit(
        greedy(story("fox"), 120), lambda e: (record("long")(e), isinstance(e, Token) and first_token.set())
    )
    assert first_token.wait(60)
    short = two_slots.submit(greedy("Say hi.", 4), record("short"))
    assert isinstance(short.wait(120), Done) and isinstance(long.wait(120), Done)
    order = [entry for entry in log if entry[1] in ("Started", "Done")]
    assert order.index(("short", "Started")) < order.index(("long", "Done"))
    assert order.index(("short", "Done")) < order.index(("long", "Done"))
    assert long.result.stats.completion_tokens == 120


def test_a_high_priority_request_starts_before_a_queued_low_priority_one(two_slots):
    started = []
    busy = [two_slots.submit(greedy(story(a), 60)) for a in ("cat", "dog")]  # interactive: never preempted
    background = two_slots.submit(
        greedy("Say hi.", 8, priority=Priority.BACKGROUND),
        lambda e: isinstance(e, Started) and started.append("background"),
    )
    interactive = two_slots.submit(
        greedy("Say hello.", 8, priority=Priority.INTERACTIVE),
        lambda e: isinstance(e, Started) and started.append("interactive"),
    )
    for handle in [*busy, background, interactive]:
        assert isinstance(handle.wait(120), Done)
    assert started == ["interactive", "background"]


def test_an_interactive_request_preempts_a_background_one_which_resumes_where_it_was(model_path):
    rt = Runtime()
    rt.load(ModelConfig(model_path, n_ctx=2048, n_parallel=1)).result(timeout=120)
    try:
        undisturbed = rt.submit(greedy(story("owl"), 80, priority=Priority.BACKGROUND)).wait(120)
        order = []
        tokens_seen, count_tokens = counting_tokens(10)

        def on_background(event):
            count_tokens(event)
            if isinstance(event, (Started, Done)):
                order.append(("background", type(event).__name__))

        background = rt.submit(greedy(story("owl"), 80, priority=Priority.BACKGROUND), on_background)
        assert tokens_seen.wait(60)
        interactive = rt.submit(
            greedy("Say hello.", 8),
            lambda e: isinstance(e, (Started, Done)) and order.append(("interactive", type(e).__name__)),
        )
        assert isinstance(interactive.wait(120), Done) and isinstance(background.wait(120), Done)
        slots = rt.generator.slots
        assert slots.restored >= 1 and slots.recomputed == 0  # its saved state was put back, not recomputed
    finally:
        rt.shutdown()
    assert order == [
        ("background", "Started"),
        ("interactive", "Started"),
        ("interactive", "Done"),
        ("background", "Done"),
    ]
    resumed = background.result
    assert resumed.stats.completion_tokens == 80 and resumed.stats.finish_reason == "length"
    assert resumed.text == undisturbed.text  # its saved cache was put back: it went on as if never stopped


def test_a_request_that_does_not_fit_waits_for_room_then_runs(model_path):
    rt = Runtime()
    rt.load(ModelConfig(model_path, n_ctx=512, n_parallel=4)).result(timeout=120)
    try:
        log = []
        big = rt.submit(
            greedy(story("fox"), 300),
            lambda e: isinstance(e, (Started, Done)) and log.append(("big", type(e).__name__)),
        )
        waiting = rt.submit(
            greedy(story("owl"), 300),
            lambda e: isinstance(e, (Started, Done)) and log.append(("waiting", type(e).__name__)),
        )
        assert isinstance(big.wait(120), Done) and isinstance(waiting.wait(120), Done)
    finally:
        rt.shutdown()
    # Each needs its prompt plus 300 cells of the 512: the second starts only when the first is done.
    assert log == [("big", "Started"), ("big", "Done"), ("waiting", "Started"), ("waiting", "Done")]
    assert waiting.result.stats.finish_reason in ("length", "stop") and waiting.result.text


@pytest.mark.parametrize(
    "scheduling, expected", [("serial", ["interactive", "background"]), ("fcfs", ["background", "interactive"])]
)
def test_the_one_at_a_time_policies_the_benchmarks_compare_against(model_path, scheduling, expected):
    rt = Runtime(scheduling=scheduling)
    rt.load(ModelConfig(model_path, n_ctx=2048)).result(timeout=120)
    try:
        started = []
        running = threading.Event()
        blocker = rt.submit(
            greedy(story("cat"), 40, priority=Priority.BACKGROUND),
            lambda e: isinstance(e, Started) and (started.append("blocker"), running.set()),
        )
        assert running.wait(60)
        background = rt.submit(
            greedy("Say hi.", 8, priority=Priority.BACKGROUND),
            lambda e: isinstance(e, Started) and started.append("background"),
        )
        interactive = rt.submit(
            greedy("Say hello.", 8), lambda e: isinstance(e, Started) and started.append("interactive")
        )
        for handle in (blocker, background, interactive):
            assert isinstance(handle.wait(120), Done)
    finally:
        rt.shutdown()
    # One at a time: nothing joins the running one, and neither policy preempts it.
    assert started == ["blocker", *expected]


def preempted_then_reloaded(rt: Runtime, config: ModelConfig):
    """A background answer preempted by a question on the only place, another question queued
    behind, then a new model asked for: returns (background, question, queued, the load's future)."""
    first_token, first_started = threading.Event(), threading.Event()
    background = rt.submit(
        greedy(story("fox"), 200, priority=Priority.BACKGROUND), lambda e: isinstance(e, Token) and first_token.set()
    )
    assert first_token.wait(60)
    question = rt.submit(greedy(story("cat"), 40), lambda e: isinstance(e, Started) and first_started.set())
    assert first_started.wait(60)  # it took the only place: the background answer is preempted
    return background, question, rt.submit(greedy("Say hi.", 8)), rt.load(config)


def test_a_model_reload_waits_for_a_preempted_request_even_behind_a_queued_one(model_path):
    """A background answer preempted by a question, another question queued behind, then a new model
    asked for: the preempted answer resumes and ends on the old model, then the model loads, then the
    queued question is answered on the new one (nothing is left waiting for another)."""
    rt = Runtime()
    config = ModelConfig(model_path, n_ctx=1024, n_parallel=1)
    rt.load(config).result(timeout=120)
    try:
        background, question, queued, loaded = preempted_then_reloaded(rt, config)
        for handle in (question, background, queued):
            assert isinstance(handle.wait(120), Done), handle
        assert loaded.result(timeout=120).path == model_path
        assert background.result.stats.finish_reason == "length"
    finally:
        rt.shutdown()


def test_without_shared_prefixes_each_stream_evaluates_its_own_prompt(model_path):
    """Recurrent and hybrid models cannot share a prefix between sequences (a copy would hand over the
    whole state); with sharing off, a second conversation with the same opening evaluates its whole
    prompt and still answers as it would alone."""
    gen = Generator(ModelConfig(model_path, n_ctx=1024, n_parallel=2))
    try:
        assert gen.model.one_state_per_sequence is False  # the bundled model is a transformer
        gen.slots.share_prefixes = False
        events = threading.Event()
        first = gen.sequence(greedy(story("cat"), 60, conversation_key="conversation:1"), events, lambda e: None)
        assert gen.batcher.admit(first)
        for _ in range(5):
            gen.batcher.step()
        second = gen.sequence(greedy(story("cat"), 20, conversation_key="conversation:2"), events, lambda e: None)
        assert gen.batcher.admit(second)
        while gen.batcher.busy:
            gen.batcher.step()
        assert second.done.stats.reused_prompt_tokens == 0
        assert first.done.text.startswith(second.done.text)  # the same prompt, greedy: the same opening
    finally:
        gen.close()


def test_a_failure_while_preempted_requests_resume_loses_none_of_them(model_path):
    """A bug (forced here) as a preempted answer is let back in while a new model waits to load: every
    request still ends, the model loads, and the next question is answered on it."""
    from engine.runtime.types import Failed

    rt = Runtime()
    config = ModelConfig(model_path, n_ctx=1024, n_parallel=1)
    rt.load(config).result(timeout=120)
    try:
        assert rt.generator is not None
        batcher, broken = rt.generator.batcher, []
        real_admit = batcher.admit

        def admit(seq):
            if rt.loads_waiting and not broken:
                broken.append(seq.request_id)
                raise RuntimeError("scheduling bug")
            return real_admit(seq)

        batcher.admit = admit  # a bug forced into this one batcher (a public method of a public object)
        background, question, queued, loaded = preempted_then_reloaded(rt, config)
        for handle in (question, background, queued):
            assert isinstance(handle.wait(120), (Done, Failed)), handle
        assert broken == [background.request_id]
        assert loaded.result(timeout=120).path == model_path
        assert isinstance(rt.submit(greedy("Say hello.", 8)).wait(60), Done)
    finally:
        rt.shutdown()
