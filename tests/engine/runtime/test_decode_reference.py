"""The engine's whole decode path (batcher, sequence, the sampler's shortcuts) against a plain
llama-cpp-python loop with llama.cpp's own sampler chain: the same tokens, one for one."""

from __future__ import annotations

import threading

import llama_cpp
import pytest

from engine.runtime.types import ChatMessage, GenerationRequest, SamplingParams
from tests.engine.runtime.test_sampler import reference_chain

QUESTION = (ChatMessage("user", "List the planets of the solar system and say one thing about each."),)


def plain_loop(generator, prompt: list[int], params: SamplingParams, n: int) -> list[int]:
    """Decode the prompt, then sample with llama_sampler_sample and decode one token at a time."""
    generator.forget_cache()
    ctx, model = generator.ctx, generator.model
    chain = reference_chain(model, params, params.seed)
    try:
        for tok in prompt[-params.repeat_last_n :]:
            llama_cpp.llama_sampler_accept(chain, tok)
        ctx.decode(prompt, 0)
        out: list[int] = []
        while len(out) < n:
            tok = llama_cpp.llama_sampler_sample(chain, ctx.ctx, -1)
            if model.is_eog(tok):
                break
            out.append(tok)
            ctx.decode([tok], len(prompt) + len(out) - 1)
        return out
    finally:
        llama_cpp.llama_sampler_free(chain)
        generator.forget_cache()


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(temperature=0.0, repeat_penalty=1.0, max_tokens=48),
        SamplingParams(seed=11, max_tokens=48),  # the default chain, seeded
    ],
    ids=["greedy", "default-chain"],
)
def test_engine_tokens_equal_a_plain_llama_cpp_loop(generator, params):
    generator.forget_cache()
    done = generator.generate(GenerationRequest(QUESTION, params), threading.Event(), lambda e: None)
    prompt = list(generator.last_prompt)
    ours = list(generator.cached_tokens[len(prompt) :])
    assert len(ours) == done.stats.completion_tokens > 10
    theirs = plain_loop(generator, prompt, params, params.max_tokens)
    assert ours == theirs[: len(ours)]
    if done.stats.finish_reason == "stop":  # the engine stopped on an end-of-generation token, so did the loop
        assert len(theirs) == len(ours)
