"""Speculative decoding (prompt lookup) on the real bundled model: the same answers, fewer steps."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from app.services import model_config
from app.settings import Settings
from engine.errors import InvalidRequestError
from engine.runtime.generator import Generator
from engine.runtime.native import llamafile_kernels
from engine.runtime.speculative import DraftModel, Pace, PromptLookup, verify
from engine.runtime.types import ChatMessage, Done, GenerationRequest, ModelConfig, SamplingParams

SYSTEM = ChatMessage("system", "You are a helpful assistant.")
CODE = '''```python
def fibonacci(n):
    """Return the n-th Fibonacci number."""
    if n < 2:
        return n
    return fibonacci(n - 1) + fibonacci(n - 2)


class Stack:
    def __init__(self):
        self.items = []

    def push(self, item):
        self.items.append(item)

    def pop(self):
        return self.items.pop()
```'''
COPYING = [SYSTEM, ChatMessage("user", "Repeat this code exactly, then explain it briefly:\n\n" + CODE)]
DOC = """# Working with the cache

The cache keeps results of expensive calls in memory. Wrap the function you want to speed up.

```python
@lru_cache(maxsize=256)
def load_user(user_id: int) -> dict:
    row = db.execute("SELECT id, name, email FROM users WHERE id = ?", (user_id,)).fetchone()
    return {"id": row[0], "name": row[1], "email": row[2]}
```

To clear the cache after the data changed, call `cache_clear()`:

```python
def rename_user(user_id: int, name: str) -> None:
    db.execute("UPDATE users SET name = ? WHERE id = ?", (name, user_id))
    db.commit()
    load_user.cache_clear()
```
"""
TRANSLATE = [
    SYSTEM,
    ChatMessage(
        "user", "Translate the following Markdown document into French. Keep the code blocks exactly.\n\n" + DOC
    ),
]
FREE = [SYSTEM, ChatMessage("user", "Write a short poem about autumn leaves.")]
GREEDY = dict(temperature=0.0, repeat_penalty=1.0)
CHAIN = dict(temperature=0.8, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.1, seed=1234)


@pytest.fixture(scope="module")
def gen(model_path):
    g = Generator(ModelConfig(model_path, n_ctx=1024, n_threads=1, speculative="prompt_lookup"))
    # Whether a draft pays depends on measured step times; the tests fix the costs (rows a quarter of a
    # token each) so the same drafts are tried on a loaded machine as on a quiet one.
    g.batcher.speculator.pace = Pace(16, costs=(0.010, 0.0025))
    yield g
    g.close()


def answer(gen: Generator, messages, speculate: bool, max_tokens: int = 120, **sampling) -> tuple[Done, tuple, int]:
    """(Done, the tokens left in the cache, decode steps) with speculation on or off, from a cold cache."""
    spec = gen.batcher.speculator
    assert spec is not None
    gen.batcher.speculator = spec if speculate else None
    try:
        gen.forget_cache()
        steps = gen.batcher.steps
        request = GenerationRequest(tuple(messages), SamplingParams(max_tokens=max_tokens, **sampling))
        done = gen.generate(request, threading.Event(), lambda _event: None)
        return done, gen.cached_tokens, gen.batcher.steps - steps
    finally:
        gen.batcher.speculator = spec


def test_greedy_answer_that_copies_is_the_same_token_for_token_in_fewer_steps(gen):
    plain, plain_tokens, plain_steps = answer(gen, COPYING, False, **GREEDY)
    fast, fast_tokens, fast_steps = answer(gen, COPYING, True, **GREEDY)
    assert "self.items = []" in plain.text  # the answer copies from the code
    assert fast_tokens == plain_tokens
    assert fast.text == plain.text
    assert plain.stats.draft_tokens == 0
    assert fast.stats.accepted_draft_tokens >= 20  # most of the copied code came from drafts
    assert fast.stats.accepted_draft_tokens <= fast.stats.draft_tokens
    assert fast_steps < plain_steps - 20


def test_greedy_answer_that_copies_nothing_is_the_same_token_for_token(gen):
    plain, plain_tokens, _ = answer(gen, FREE, False, max_tokens=48, **GREEDY)
    fast, fast_tokens, _ = answer(gen, FREE, True, max_tokens=48, **GREEDY)
    assert fast_tokens == plain_tokens
    assert fast.text == plain.text
    assert fast.stats.completion_tokens == plain.stats.completion_tokens


def test_seeded_sampling_with_the_default_chain_gives_the_plain_answer(gen):
    # Each position is sampled with the sequence's own chain (penalties, top-k/p, min-p,
    # temperature, its seeded random stream) in the order plain decoding samples them.
    # (seed 7: a sampled answer that starts by copying the document, so drafts are kept)
    plain, plain_tokens, _ = answer(gen, TRANSLATE, False, max_tokens=64, **dict(CHAIN, seed=7))
    fast, fast_tokens, _ = answer(gen, TRANSLATE, True, max_tokens=64, **dict(CHAIN, seed=7))
    assert fast.stats.draft_tokens > 0 and fast.stats.accepted_draft_tokens > 0
    assert fast_tokens == plain_tokens
    assert fast.text == plain.text and fast.text.strip()
    # the cache holds the answer and nothing of a rejected draft
    home = next(s for s in gen.batcher.slots.slots if s.tokens and tuple(s.tokens) == fast_tokens)
    assert gen.ctx.last_position(home.seq_id) + 1 == len(fast_tokens)


def test_flash_attention_auto_is_off_while_speculation_runs_on_a_cpu(gen, model_path):
    assert gen.ctx.flash_attention == "off"
    plain = Generator(ModelConfig(model_path, n_ctx=256, n_threads=1))
    try:
        assert plain.ctx.flash_attention == "auto"  # without speculation the user's choice stands
    finally:
        plain.close()


EXACT_BUILD = pytest.mark.skipif(
    llamafile_kernels(),
    reason="llama.cpp built with llamafile's kernels (CMAKE_ARGS=-DGGML_LLAMAFILE=ON): a batch's rows are computed "
    "in another order than one row, so exactness is not claimed for this build",
)


@EXACT_BUILD
def test_a_position_has_the_same_logits_alone_and_in_a_batch(gen):
    # What makes greedy speculation exact: llama.cpp built without llamafile's kernels, flash attention off.
    # With either, rows in a batch differ from one row alone by rounding at many depths (docs/benchmarks.md).
    ctx = gen.ctx
    gen.forget_cache()
    tokens = gen.model.tokenize(DOC * 8, add_special=False, parse_special=False)[:720]
    seq = 0
    for start in range(0, 700, 350):
        ctx.decode(tokens[start : start + 350], start, seq)
    for depth in (690, 520, 300, 130, 40):  # falling: each removes what the last one added
        ctx.remove_from(depth, seq)
        ctx.decode([tokens[depth]], depth, seq)
        alone = ctx.logits_row(-1).copy()
        ctx.remove_from(depth, seq)
        ctx.batch.clear()
        for i in range(4):
            ctx.batch.add_one(tokens[depth + i], depth + i, seq, True)
        assert ctx.decode_batch() == 0
        assert np.array_equal(ctx.logits_row(0), alone), f"depth {depth}"
    gen.forget_cache()


@EXACT_BUILD
def test_greedy_translation_that_keeps_code_is_the_same_token_for_token(gen):
    # A long answer that copies spans and writes its own words in between: before the two conditions
    # above held, this one parted from plain decoding after about 20 tokens.
    plain, plain_tokens, _ = answer(gen, TRANSLATE, False, max_tokens=200, **GREEDY)
    fast, fast_tokens, _ = answer(gen, TRANSLATE, True, max_tokens=200, **GREEDY)
    assert "load_user.cache_clear()" in plain.text
    assert fast.stats.accepted_draft_tokens >= 20
    assert fast_tokens == plain_tokens
    assert fast.text == plain.text


def test_speculation_is_off_while_several_sequences_run(gen):
    gen.forget_cache()
    spec = gen.batcher.speculator
    assert spec is not None
    seqs = [
        gen.sequence(request, threading.Event(), lambda _event: None)
        for request in [GenerationRequest(tuple(COPYING), SamplingParams(max_tokens=24, **GREEDY)) for _ in range(2)]
    ]
    for seq in seqs:
        assert gen.batcher.admit(seq)
    before = spec.stats.steps
    while all(s.done is None for s in seqs):
        gen.batcher.step()
    assert spec.stats.steps == before  # both ran the whole time: no speculative step
    while gen.batcher.busy:
        gen.batcher.step()


def test_a_draft_model_gives_the_plain_greedy_answer(model_path):
    # The bundled model as its own draft: a plumbing check (every draft should be kept), not a speedup.
    drafting = Generator(ModelConfig(model_path, n_ctx=1024, n_threads=1, speculative="draft", draft_model=model_path))
    drafting.batcher.speculator.pace = Pace(16, costs=(0.010, 0.0))
    try:
        assert isinstance(drafting.batcher.speculator.drafter, DraftModel)
        _, plain_tokens, plain_steps = answer(drafting, FREE, False, max_tokens=48, **GREEDY)
        fast, fast_tokens, fast_steps = answer(drafting, FREE, True, max_tokens=48, **GREEDY)
        assert fast_tokens == plain_tokens
        assert fast.stats.accepted_draft_tokens >= 0.9 * fast.stats.draft_tokens > 0
        assert fast_steps < plain_steps // 2
    finally:
        drafting.close()


def test_the_setting_reaches_the_engine(model_path):
    settings = Settings().with_value("model.speculative", "prompt_lookup")
    assert model_config(settings).speculative == "prompt_lookup"
    assert model_config(Settings()).speculative == "off"  # opt-in: see the setting's description
    with pytest.raises(InvalidRequestError, match="speculative"):
        ModelConfig(model_path, speculative="sometimes")
    drafting = Settings().with_value("model.speculative", "draft").with_value("model.draft_model", model_path)
    assert (model_config(drafting).speculative, model_config(drafting).draft_model) == ("draft", model_path)
    no_draft = Settings().with_value("model.speculative", "draft")  # no draft model chosen: prompt lookup
    assert model_config(no_draft).speculative == "prompt_lookup"
    off = Generator(ModelConfig(model_path, n_ctx=256, speculative="off"))
    try:
        assert off.batcher.speculator is None
    finally:
        off.close()


def test_prompt_lookup_drafts_what_followed_the_latest_match():
    lookup = PromptLookup(n_min=2, n_max=3)
    lookup.extend([1, 2, 3, 4, 9, 2, 3])
    assert lookup.draft(5) == [4, 9, 2, 3]  # "2 3" came before, followed by 4 9 2 3
    lookup.extend([1, 2, 3, 4, 9, 2, 3, 7, 8, 1, 2, 3])
    assert lookup.draft(3) == [4, 9, 2]  # the longest n-gram first: "1 2 3", not "2 3" (before 7)
    lookup.extend([1, 2, 3, 4, 9, 2, 3, 7, 8, 1, 2, 3, 7])
    assert lookup.draft(2) == [8, 1]  # the latest occurrence: "2 3 7"
    lookup.extend([1, 2, 3, 4, 9, 2, 3, 7, 8, 1, 2, 3, 7, 6, 6])
    assert lookup.draft(4) == []  # "3 6 6" and "6 6" occurred nowhere before


def test_drafts_are_long_where_rows_are_cheap_and_stop_where_they_do_not_pay():
    gpu_like = Pace(k_max=16)
    assert gpu_like.choose() == 0  # the first step measures a plain one
    gpu_like.observe(1, 0.010, 0, 0)
    for _ in range(20):
        gpu_like.observe(9, 0.011, 8, 7)  # extra rows nearly free, most drafts kept
    assert gpu_like.choose() >= 8

    cpu_like = Pace(k_max=16)
    cpu_like.observe(1, 0.010, 0, 0)
    for _ in range(20):
        cpu_like.observe(5, 0.040, 4, 0)  # each row costs a whole token's time, nothing kept
    assert cpu_like.choose() == 0
    assert [cpu_like.choose() for _ in range(cpu_like.pause)][-1] == 2  # after the pause, a short look
    cpu_like.observe(3, 0.030, 2, 0)
    assert cpu_like.choose() == 0 and cpu_like.pause == 8  # another miss: a longer pause


def test_kinds_of_draft_are_paced_apart():
    # A draft that follows a long match right after a draft kept whole (a code block being copied) and one
    # that follows a 2-token match (a sentence being translated) have their own acceptance and pauses.
    pace = Pace(k_max=16)
    pace.observe(1, 0.010, 0, 0)
    copying, translating = (4, True), (2, False)
    for _ in range(20):
        pace.kind = copying
        pace.observe(9, 0.018, 8, 8)  # a row costs a tenth of a step; every draft kept
        pace.kind = translating
        pace.observe(5, 0.014, 4, 0)  # nothing kept
    pace.kind = copying
    assert pace.choose() >= 8
    pace.kind = translating
    assert pace.choose() == 0 and pace.pause > 0
    pace.kind = copying
    assert pace.choose() >= 8  # the other kind's pause does not stop this one
    pace.restart()
    pace.kind = translating
    assert pace.a == Pace.A0 and pace.pause == 0  # a new sequence starts every kind afresh


def test_acceptance_rule_keeps_the_target_distribution():
    """The verification step, on a synthetic target: a Markov chain over 4 tokens and a fixed draft.

    The distribution of the first three tokens out of ``verify`` must be that of sampling the
    chain directly, whatever the draft (one the target likes, one it dislikes).
    """
    p = np.array([[0.1, 0.6, 0.2, 0.1], [0.3, 0.1, 0.5, 0.1], [0.25, 0.25, 0.25, 0.25], [0.7, 0.1, 0.1, 0.1]])
    n = 40000

    def plain(rng) -> tuple[int, ...]:
        out, prev = [], 0
        for _ in range(3):
            prev = int(rng.choice(4, p=p[prev]))
            out.append(prev)
        return tuple(out)

    def speculative(rng, draft: list[int]) -> tuple[int, ...]:
        out: list[int] = []
        while len(out) < 3:
            context = list(out)  # the draft is checked against what the target says after each prefix

            def sample_at(i: int, context: list[int] = context) -> int:
                prev = ([0, *context, *draft])[len(context) + i]
                return int(rng.choice(4, p=p[prev]))

            def take(tok: int, _hit: bool) -> bool:
                out.append(tok)
                return len(out) >= 3

            verify(sample_at, draft[: 3 - len(context)], take)
        return tuple(out[:3])

    def histogram(samples) -> np.ndarray:
        counts = np.zeros(64)
        for a, b, c in samples:
            counts[a * 16 + b * 4 + c] += 1
        return counts / len(samples)

    rng = np.random.default_rng(7)
    reference = histogram([plain(rng) for _ in range(n)])
    for draft in ([1, 2, 0], [3, 3, 3]):
        got = histogram([speculative(rng, draft) for _ in range(n)])
        assert 0.5 * np.abs(got - reference).sum() < 0.03  # total variation; sampling noise is ~0.015
