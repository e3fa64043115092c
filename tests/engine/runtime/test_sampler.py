"""The sampler's own repeat penalty and greedy pick choose exactly what llama.cpp's samplers would."""

from __future__ import annotations

import llama_cpp
import pytest

from engine.runtime.sampler import SamplerChain
from engine.runtime.types import ChatMessage, SamplingParams


def reference_chain(model, params: SamplingParams, seed: int):
    """llama.cpp's own chain for these settings, its penalties sampler included (the usual order)."""
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    add = lambda s: llama_cpp.llama_sampler_chain_add(chain, s)  # noqa: E731
    add(llama_cpp.llama_sampler_init_penalties(model.n_vocab, params.repeat_last_n, params.repeat_penalty, 0.0, 0.0))
    if params.temperature <= 0:
        add(llama_cpp.llama_sampler_init_greedy())
        return chain
    add(llama_cpp.llama_sampler_init_top_k(params.top_k))
    add(llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
    add(llama_cpp.llama_sampler_init_min_p(params.min_p, 1))
    add(llama_cpp.llama_sampler_init_temp(params.temperature))
    add(llama_cpp.llama_sampler_init_dist(seed))
    return chain


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(temperature=0.0, repeat_penalty=1.3, repeat_last_n=16),
        SamplingParams(temperature=0.9, repeat_penalty=1.2, repeat_last_n=8, seed=5),
        SamplingParams(temperature=1.5, top_k=0, top_p=1.0, min_p=0.0, repeat_penalty=1.5, repeat_last_n=64, seed=9),
        # a wide top-k: the candidates within the first margin of the best are too few, so it widens
        SamplingParams(temperature=1.3, top_k=2000, top_p=0.999, min_p=0.0, repeat_last_n=32, seed=3),
    ],
    ids=["greedy", "default-chain", "hot", "wide-top-k"],
)
def test_sampling_matches_llamas_own_penalties_and_greedy_samplers(generator, params):
    generator.forget_cache()
    ctx = generator.ctx
    prompt = generator.encode([ChatMessage("user", "Repeat the word 'tide' many times, then write about the sea.")])
    ours = SamplerChain(generator.model, params, params.seed)
    theirs = reference_chain(generator.model, params, params.seed)
    try:
        for tok in prompt[-params.repeat_last_n :]:  # both see the prompt's tail first
            ours.accept(tok)
            llama_cpp.llama_sampler_accept(theirs, tok)
        ctx.decode(prompt, 0)
        picked = []
        for i in range(60):
            expected = llama_cpp.llama_sampler_sample(theirs, ctx.ctx, -1)  # reads, never writes, the logits
            token = ours.sample(ctx)  # penalises the logits in place, then samples
            assert token == expected, f"step {i}: {token} != {expected}"
            picked.append(token)
            ctx.decode([token], len(prompt) + i)
        assert len(set(picked)) > 5  # a real answer, not one token over and over
    finally:
        ours.close()
        llama_cpp.llama_sampler_free(theirs)
        generator.forget_cache()
