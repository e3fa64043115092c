"""The generator on the real bundled model: streaming, sampling options, cancel, context, KV reuse."""

from __future__ import annotations

import threading

import pytest

from engine.errors import InvalidRequestError
from engine.runtime.types import ChatMessage, GenerationRequest, SamplingParams, Token

SYSTEM = ChatMessage("system", "You are a helpful assistant.")


def run(generator, messages, cancel_after: int | None = None, keep_cache: bool = False, **sampling):
    """Generate; returns (Done, token events, tokens emitted after cancel was requested).

    The cache is dropped first unless ``keep_cache``: llama.cpp's quantized kernels round
    differently for different batch splits, so comparing two answers token for token needs
    both prompts evaluated the same way.
    """
    if not keep_cache:
        generator.forget_cache()
    cancel = threading.Event()
    tokens: list[Token] = []
    after_cancel = [0]

    def emit(event):
        if isinstance(event, Token):
            if cancel.is_set():
                after_cancel[0] += 1
            tokens.append(event)
            if cancel_after is not None and len(tokens) >= cancel_after:
                cancel.set()

    request = GenerationRequest(tuple(messages), SamplingParams(**sampling))
    done = generator.generate(request, cancel, emit)
    return done, tokens, after_cancel[0]


def test_streams_text_token_by_token(generator):
    done, tokens, _ = run(generator, [SYSTEM, ChatMessage("user", "Name three colours.")], seed=7, max_tokens=40)
    assert len(tokens) > 3
    assert "".join(t.text for t in tokens) == done.text
    assert done.text.strip()
    assert done.stats.completion_tokens >= len([t for t in tokens if t.n_tokens])
    assert done.stats.time_to_first_token_s is not None and done.stats.tokens_per_s > 0


def test_uses_the_chat_template_from_the_gguf(generator):
    assert generator.template.origin == "gguf"
    prompt = generator.template.render([SYSTEM, ChatMessage("user", "hi")])
    assert prompt.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>")
    assert prompt.endswith("<|im_start|>assistant\n")


def test_same_seed_same_answer_and_other_seed_differs(generator):
    messages = [SYSTEM, ChatMessage("user", "Tell me a short story about a fox.")]
    a, _, _ = run(generator, messages, seed=42, temperature=1.0, max_tokens=30)
    b, _, _ = run(generator, messages, seed=42, temperature=1.0, max_tokens=30)
    c, _, _ = run(generator, messages, seed=43, temperature=1.0, max_tokens=30)
    assert a.text == b.text
    assert c.text != a.text
    assert a.stats.seed == 42


def test_max_tokens_ends_with_length(generator):
    done, _, _ = run(
        generator, [SYSTEM, ChatMessage("user", "Write a long essay about the sea.")], seed=1, max_tokens=5
    )
    assert done.stats.completion_tokens == 5
    assert done.stats.finish_reason == "length"


def test_stop_string_ends_the_answer_before_it(generator):
    messages = [SYSTEM, ChatMessage("user", "Write a long essay about the sea.")]
    free, _, _ = run(generator, messages, seed=5, temperature=0.0, max_tokens=60)
    words = free.text.split()
    assert len(words) > 8
    stop = words[6]
    stopped, tokens, _ = run(generator, messages, seed=5, temperature=0.0, max_tokens=60, stop=[stop])
    assert stopped.stats.finish_reason == "stop"
    assert stop not in stopped.text
    assert free.text.startswith(stopped.text)
    assert "".join(t.text for t in tokens) == stopped.text


def test_all_sampling_options_reach_the_sampler(generator):
    messages = [SYSTEM, ChatMessage("user", "Say something.")]
    greedy, _, _ = run(generator, messages, temperature=0.0, max_tokens=20, repeat_penalty=1.0)
    penalised, _, _ = run(generator, messages, temperature=0.0, max_tokens=20, repeat_penalty=3.0)
    assert greedy.text != penalised.text  # the repeat penalty changed what greedy decoding picks
    narrow, _, _ = run(
        generator, messages, temperature=1.5, top_k=1, top_p=0.5, min_p=0.2, seed=3, max_tokens=20, repeat_penalty=1.0
    )
    assert narrow.text == greedy.text  # top-k 1 leaves only the likeliest token, whatever the temperature


@pytest.mark.parametrize(
    "bad", [dict(temperature=-1), dict(top_p=1.5), dict(max_tokens=0), dict(top_k=-3), dict(stop=[""])]
)
def test_bad_sampling_values_are_refused_with_the_name(bad):
    with pytest.raises(InvalidRequestError) as info:
        SamplingParams(**bad)
    name = next(iter(bad))
    assert name in str(info.value) or "Stop" in str(info.value)


def test_cancel_stops_within_one_token(generator):
    messages = [SYSTEM, ChatMessage("user", "Write a very long essay about the history of Rome.")]
    done, tokens, after = run(generator, messages, cancel_after=5, seed=2, max_tokens=400)
    assert done.stats.finish_reason == "cancelled"
    assert after <= 1
    assert done.stats.completion_tokens <= 6
    assert done.text == "".join(t.text for t in tokens)


def test_next_turn_reuses_the_cached_prefix(generator):
    history = [SYSTEM, ChatMessage("user", "What is the capital of France?")]
    first, _, _ = run(generator, history, seed=1, max_tokens=30)
    history += [ChatMessage("assistant", first.text), ChatMessage("user", "And of Spain?")]
    second, _, _ = run(generator, history, seed=1, max_tokens=30, keep_cache=True)
    # Everything the first turn left in the cache is reused, the answer's own tokens included
    # (even where re-tokenizing its text would split it differently).
    assert second.stats.reused_prompt_tokens == first.stats.prompt_tokens + first.stats.completion_tokens
    generator.forget_cache()
    again, _, _ = run(generator, history, seed=1, max_tokens=30)
    assert again.stats.reused_prompt_tokens == 0


def last_logits(generator):
    import llama_cpp
    import numpy as np

    pointer = llama_cpp.llama_get_logits_ith(generator.ctx.ctx, -1)
    return np.ctypeslib.as_array(pointer, shape=(generator.model.n_vocab,)).copy()


def test_the_reused_cache_is_exactly_what_recomputing_it_gives(generator):
    """Reuse changes the cost, never the numbers: the logits after reusing the previous turn's
    cache equal those of a fresh cache built with the same batches (prompt, then one token at a time)."""
    history = [SYSTEM, ChatMessage("user", "Name a large river.")]
    generator.forget_cache()
    first, _, _ = run(generator, history, temperature=0.0, max_tokens=12)
    first_prompt = generator.encode(history)
    generated = list(generator.cached_tokens[len(first_prompt) :])
    history += [ChatMessage("assistant", first.text), ChatMessage("user", "How long is it?")]
    prompt = generator.encode(history)
    seq = generator.sequence(
        GenerationRequest(tuple(history), SamplingParams(temperature=0.0)), threading.Event(), lambda event: None
    )
    assert generator.batcher.admit(seq)  # takes the previous turn's slot, trimmed to the shared prefix
    slot = seq.slot
    reused = len(slot.tokens)
    assert seq.target == prompt and reused > len(first_prompt)
    generator.ctx.decode(prompt[reused:], reused, slot.seq_id)
    with_reuse = last_logits(generator)
    seq.cancel.set()
    generator.batcher.step()  # the cancelled sequence leaves
    assert not generator.batcher.busy

    generator.forget_cache()
    generator.ctx.decode(first_prompt, 0, slot.seq_id)
    for i, tok in enumerate(generated[: reused - len(first_prompt)]):
        generator.ctx.decode([tok], len(first_prompt) + i, slot.seq_id)
    generator.ctx.decode(prompt[reused:], reused, slot.seq_id)
    assert (last_logits(generator) == with_reuse).all()
    generator.forget_cache()


def test_regenerating_the_same_prompt_reuses_all_but_the_last_token(generator):
    messages = [SYSTEM, ChatMessage("user", "Hello there!")]
    run(generator, messages, seed=1, max_tokens=10)
    second, _, _ = run(generator, messages, seed=1, max_tokens=10, keep_cache=True)
    assert second.stats.reused_prompt_tokens == second.stats.prompt_tokens - 1


@pytest.mark.timeout(900)  # 41 generations: slow when other work shares the two cores
def test_forty_long_turns_never_overflow_the_context(model_path):
    from engine.runtime.generator import Generator
    from engine.runtime.types import ModelConfig

    gen = Generator(ModelConfig(model_path, n_ctx=256))
    n_ctx = gen.info.n_ctx  # llama.cpp may round the size up; the real window is what counts
    assert n_ctx == 256
    try:
        history = [SYSTEM]
        long_text = "Please remember these facts about my garden: " + "roses, tulips and lilies grow there. " * 4
        dropped_seen = 0
        for turn in range(40):
            history.append(ChatMessage("user", f"Turn {turn}. {long_text}"))
            done, _, _ = run(gen, history, seed=turn, max_tokens=32)
            assert done.stats.prompt_tokens + done.stats.completion_tokens <= n_ctx
            assert done.stats.finish_reason in ("stop", "length")
            dropped_seen = max(dropped_seen, done.stats.dropped_messages)
            history.append(ChatMessage("assistant", done.text or "(nothing)"))
        assert dropped_seen > 20  # old turns were left out instead of overflowing
        # A single message far longer than the whole window is shortened, not refused.
        huge = [*history, ChatMessage("user", "word " * 3000)]
        done, _, _ = run(gen, huge, seed=1, max_tokens=16)
        assert done.stats.truncated_input
        assert done.stats.prompt_tokens + done.stats.completion_tokens <= n_ctx
    finally:
        gen.close()
