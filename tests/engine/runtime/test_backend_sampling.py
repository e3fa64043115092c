"""Sampling in llama.cpp's graph (backend sampling), on the real bundled model.

A sequence's sampler chain runs inside llama_decode, for the sequence id it runs in. On this CPU the
graph runs on the CPU, through the same code a GPU takes up to the device's kernels; the tokens must be
exactly those of sampling from the logits row on the CPU, alone, in a batch beside sequences sampled
on the CPU (a grammar, token healing), and across a preemption that moves the sequence to another id.
"""

from __future__ import annotations

import threading

import llama_cpp
import pytest

from engine.errors import GenerationError, InvalidRequestError
from engine.runtime import sampler as sampler_mod
from engine.runtime.generator import Generator, on_device_sampling, sampled_briefly
from engine.runtime.runtime import Runtime
from engine.runtime.sampler import SamplerChain
from engine.runtime.types import ChatMessage, Done, GenerationRequest, ModelConfig, Priority, SamplingParams
from tests.engine.runtime.conftest import counting_tokens

CHAINS = {
    "greedy+penalty": SamplingParams(temperature=0.0, repeat_penalty=1.3, repeat_last_n=16, max_tokens=80),
    "default-chain": SamplingParams(seed=5, max_tokens=80),
    "hot-wide-top-k": SamplingParams(temperature=1.4, top_k=400, top_p=0.98, min_p=0.0, seed=9, max_tokens=80),
}


@pytest.fixture(scope="module")
def on_device(model_path):
    gen = Generator(ModelConfig(model_path, n_ctx=2048, n_parallel=4, backend_sampling="on"))
    yield gen
    gen.close()


def chat(text: str, sampling: SamplingParams, **kw) -> GenerationRequest:
    return GenerationRequest((ChatMessage("user", text),), sampling, **kw)


def run_alone(gen: Generator, request: GenerationRequest, sampled_on: str = "cpu") -> tuple[str, list[int]]:
    gen.forget_cache()
    done = gen.generate(request, threading.Event(), lambda e: None)
    assert done.stats.sampled_on == sampled_on
    return done.text, list(gen.cached_tokens[done.stats.prompt_tokens :])


def run_batch(gen: Generator, requests: list[GenerationRequest]) -> list:
    """Every request admitted into one batch on an empty cache, stepped until all are done."""
    gen.forget_cache()
    seqs = []
    for request in requests:
        seq = gen.sequence(request, threading.Event(), lambda e: None)
        assert gen.batcher.admit(seq)
        seqs.append(seq)
    attached = [s.sampler.attached for s in seqs]
    while gen.batcher.busy:
        gen.batcher.step()
    for seq in seqs:
        assert seq.error is None, seq.error
    return [(seq.done.text, attached[i]) for i, seq in enumerate(seqs)]


@pytest.mark.parametrize("params", CHAINS.values(), ids=CHAINS.keys())
def test_a_chain_in_the_graph_draws_exactly_what_the_cpu_chain_draws(generator, on_device, params):
    request = chat("Write about the sea and the tide, and repeat the word tide.", params)
    seq = on_device.sequence(request, threading.Event(), lambda e: None)
    on_device.forget_cache()
    assert on_device.batcher.admit(seq) and seq.sampler.on_device and seq.sampler.attached
    while on_device.batcher.busy:
        on_device.batcher.step()
    device_tokens = list(on_device.cached_tokens[seq.done.stats.prompt_tokens :])
    assert not seq.sampler.attached and holds_no_chain(on_device, seq.home.seq_id)  # let go of when it finished
    cpu_text, cpu_tokens = run_alone(generator, request)
    assert seq.done.text == cpu_text and device_tokens == cpu_tokens
    assert seq.done.stats.sampled_on == "device"
    assert len(set(cpu_tokens)) > 10  # a real answer


def test_a_top_k_beyond_the_vocabulary_is_sampled_on_the_cpu(generator, on_device):
    """llama.cpp's top-k in the graph asserts k <= the vocabulary (an abort of the whole process); such a
    request is sampled on the CPU, where top-k takes it as no cut at all."""
    request = chat("Name a bird.", SamplingParams(top_k=100_000, seed=2, max_tokens=12))
    seq = on_device.sequence(request, threading.Event(), lambda e: None)
    assert not seq.sampler.on_device
    seq.sampler.close()
    assert run_alone(on_device, request)[0] == run_alone(generator, request)[0]


def holds_no_chain(gen: Generator, seq_id: int = 0) -> bool:
    """Whether the context lets sequence ``seq_id`` decode without any chain drawing for it (LLAMA_TOKEN_NULL)."""
    gen.forget_cache()
    gen.ctx.decode(gen.model.tokenize("Hello", add_special=True, parse_special=False), 0, seq_id)
    drawn = llama_cpp.llama_get_sampled_token_ith(gen.ctx.ctx, -1)
    gen.forget_cache()
    return drawn == -1


def test_the_token_comes_from_the_graph_not_from_a_logits_row(on_device):
    """Attached, the chain's token is the one llama_decode drew (llama_get_sampled_token_ith), and sampling
    takes it and accepts it (the penalties see it) without reading any logits."""
    gen = on_device
    gen.forget_cache()
    ctx = gen.ctx
    params = SamplingParams(seed=3)
    prompt = gen.encode([ChatMessage("user", "Name a colour.")])
    chain = SamplerChain(gen.model, params, 3, on_device=True)
    try:
        for tok in prompt[-params.repeat_last_n :]:
            chain.accept(tok)
        assert chain.attach(ctx, 0)
        tokens = []
        for i in range(12):
            if i == 0:
                ctx.decode(prompt, 0)
            else:
                ctx.decode([tokens[-1]], len(prompt) + i - 1)
            drawn = llama_cpp.llama_get_sampled_token_ith(ctx.ctx, -1)
            assert drawn >= 0  # LLAMA_TOKEN_NULL (-1): the graph drew nothing
            tokens.append(chain.sample(ctx))
            assert tokens[-1] == drawn
    finally:
        chain.close()
        gen.forget_cache()


def test_streams_sampled_in_the_graph_and_on_the_cpu_share_a_batch(generator, on_device):
    """Four streams together: two sampled in the graph, one held to a grammar and one token-healed completion
    (both on the CPU, from logits rows the same decode copies out); each answer is the one the same batch gives
    sampled wholly on the CPU. (Not its solo answer: a batch of prompts is attended in another order than one
    prompt, test_batching.py.)"""
    greedy = SamplingParams(temperature=0.0, max_tokens=40)
    requests = [
        chat("Write a story about a fox.", greedy),
        chat("Name three colours.", SamplingParams(seed=11, max_tokens=40)),
        chat("Is the sea salty? Answer yes or no.", greedy, grammar='root ::= ("yes" | "no") "."'),
        GenerationRequest(prompt="The capital of France is Par", sampling=greedy),
    ]
    together = run_batch(on_device, requests)
    assert [attached for _, attached in together] == [True, True, False, False]
    on_cpu = run_batch(generator, requests)
    assert [attached for _, attached in on_cpu] == [False] * 4
    assert [text for text, _ in together] == [text for text, _ in on_cpu]
    assert together[2][0] in ("yes.", "no.") and len(together[0][0]) > 100


def test_cancelled_and_failed_streams_let_go_of_their_chains(on_device):
    """A stream cancelled mid-answer (it leaves with its last token still to go into the cache) and streams ended
    by a failure of the whole batch: the context keeps no chain for any of their sequence ids."""
    gen = on_device
    gen.forget_cache()
    cancels = [threading.Event() for _ in range(3)]
    seqs = []
    for i, cancel in enumerate(cancels):
        request = chat(f"Write story number {i} about a cat.", SamplingParams(seed=i, max_tokens=60))
        seq = gen.sequence(request, cancel, lambda e: None)
        assert gen.batcher.admit(seq) and seq.sampler.attached
        seqs.append(seq)
    ids = [s.slot.seq_id for s in seqs]
    for _ in range(8):
        gen.batcher.step()
    cancels[0].set()
    gen.batcher.step()
    assert seqs[0].done is not None and seqs[0].done.stats.finish_reason == "cancelled"
    assert not seqs[0].sampler.attached
    gen.batcher.step()
    gen.batcher.fail_all(GenerationError("stopped by the test"))
    assert all(s.phase == "done" and not s.sampler.attached for s in seqs)
    assert all(holds_no_chain(gen, sid) for sid in ids)


def test_a_preempted_stream_resumes_with_its_chain_attached_again(model_path, monkeypatch):
    """One place: a sampled background answer is preempted by a question (its chain let go of, copied with its
    state) and resumes where it was, its chain attached again; its answer is the one it gives undisturbed."""
    attached: list[tuple[int, bool]] = []  # (chain, attached) for every attach, a spy on the real method
    attach = SamplerChain.attach

    def spy(self, ctx, seq_id):
        ok = attach(self, ctx, seq_id)
        attached.append((id(self), ok))
        return ok

    monkeypatch.setattr(SamplerChain, "attach", spy)
    rt = Runtime()
    rt.load(ModelConfig(model_path, n_ctx=2048, n_parallel=1, backend_sampling="on")).result(timeout=120)
    sampling = SamplingParams(seed=21, max_tokens=80)
    try:
        assert rt.generator is not None and rt.generator.ctx.backend_sampling
        undisturbed = rt.submit(chat("Write a story about an owl.", sampling, priority=Priority.BACKGROUND)).wait(120)
        tokens_seen, on_background = counting_tokens(10)
        owl = chat("Write a story about an owl.", sampling, priority=Priority.BACKGROUND)
        attached.clear()
        background = rt.submit(owl, on_background)
        assert tokens_seen.wait(60)
        interactive = rt.submit(chat("Say hello.", SamplingParams(temperature=0.0, max_tokens=8)))
        assert isinstance(interactive.wait(120), Done) and isinstance(background.wait(120), Done)
        assert rt.generator.slots.restored >= 1  # it was preempted and its cache put back
    finally:
        rt.shutdown()
    resumed = background.result
    assert resumed.stats.completion_tokens == 80 and resumed.stats.sampled_on == "device"
    owl_chain = attached[0][0]
    assert [ok for chain, ok in attached if chain == owl_chain] == [True, True]  # at its start, and on resuming
    assert resumed.text == undisturbed.text


def test_a_device_that_cannot_run_the_chain_leaves_it_on_the_cpu(generator, model_path, monkeypatch, caplog):
    """Where llama.cpp reports an op of the chain that the device lacks, the chain is not attached (a chain run in
    part would leave the rest without logits): it samples on the CPU, in llama.cpp, with the same tokens."""
    gen = Generator(ModelConfig(model_path, n_ctx=1024, backend_sampling="on"))
    # The narrowest seam: llama.cpp's warning for a device without the op (a CPU has every op).
    refusal = "sampler_backend_support: device 'X' does not have support for op CUMSUM needed for sampler 'dist'"
    monkeypatch.setattr(sampler_mod, "recent_log", lambda: [refusal])
    try:
        request = chat("Write about rivers.", SamplingParams(seed=4, max_tokens=40))
        seq = gen.sequence(request, threading.Event(), lambda e: None)
        assert gen.batcher.admit(seq) and seq.sampler.on_device and not seq.sampler.attached
        while gen.batcher.busy:
            gen.batcher.step()
        assert seq.done.text == run_alone(generator, request)[0]
        assert seq.done.stats.sampled_on == "cpu"
        assert "CUMSUM" in gen.ctx.backend_sampling_refused
        assert "sampling runs on the CPU" in caplog.text
        # later requests do not try again: theirs are the CPU path's own chains (candidates cut by top-k)
        later = gen.sequence(request, threading.Event(), lambda e: None)
        assert not later.sampler.on_device
        later.sampler.close()
    finally:
        gen.close()


def test_when_sampling_runs_in_the_graph(model_path):
    assert not on_device_sampling(ModelConfig(model_path))  # auto, on a CPU: nothing to gain
    assert on_device_sampling(ModelConfig(model_path, backend_sampling="on"))
    assert not on_device_sampling(ModelConfig(model_path, backend_sampling="off", n_gpu_layers=-1))
    # auto with layers on a GPU: where this llama.cpp can offload at all
    gpu = bool(llama_cpp.llama_supports_gpu_offload())
    assert on_device_sampling(ModelConfig(model_path, n_gpu_layers=-1)) == gpu
    # speculation checks each guessed token's logits on the CPU
    assert not on_device_sampling(ModelConfig(model_path, backend_sampling="on", speculative="prompt_lookup"))
    # without top-k, the graph would copy back the whole vocabulary's logits, probabilities and ids
    assert sampled_briefly(SamplingParams(temperature=0.0, top_k=0), 1000)
    assert sampled_briefly(SamplingParams(top_k=40), 1000) and not sampled_briefly(SamplingParams(top_k=0), 1000)
    # the graph's top-k aborts the process for a k of the whole vocabulary or more
    assert not sampled_briefly(SamplingParams(top_k=1000), 1000)
    with pytest.raises(InvalidRequestError, match="backend_sampling"):
        ModelConfig(model_path, backend_sampling="gpu")
