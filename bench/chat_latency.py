"""Chat latency: time to first token with and without KV-cache prefix reuse, and decode speed.

For turns 1..N of one conversation it prints the time to first token when the
engine reuses the cached prefix of the previous turn, beside the same turn with
the whole prompt recomputed (a second engine instance whose cache is dropped
before every turn; the two answers can differ in a near-tie because llama.cpp's
quantized kernels round differently for different batch splits). Then it prints the engine's generation tokens/s
beside a raw llama-cpp-python low-level decode loop (llama_decode + native greedy
sampler, no engine code) on the same model, prompt, context size and threads.

    .venv/bin/python bench/chat_latency.py [--turns 20] [--threads N] [--model PATH]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import llama_cpp

from engine.models.bundled import bundled_llm_path
from engine.runtime.cpu_check import extra_buffers_ok
from engine.runtime.generator import Generator
from engine.runtime.native import default_threads, ensure_backend
from engine.runtime.types import ChatMessage, GenerationRequest, ModelConfig, SamplingParams

QUESTIONS = [
    "I am planning a vegetable garden on a small balcony that gets about five hours of sun. What should I grow?",
    "Which of those would do well in pots that are only thirty centimetres deep?",
    "How often should I water them during a hot summer, and is morning or evening better?",
    "What kind of soil mix would you recommend for containers like these?",
    "Can I reuse last year's potting soil, or do I need to replace it every season?",
    "How do I keep aphids away without using chemical sprays?",
    "Is it worth adding a small worm composter to the balcony for fertiliser?",
    "What is a good planting schedule if the last frost here is in mid April?",
    "Should I start seeds indoors, and if so which ones and how early?",
    "How much light do seedlings need on a windowsill, and do I need a grow lamp?",
    "What are the signs that a tomato plant is getting too much water?",
    "How should I support climbing beans in a container?",
    "Can herbs like basil and mint share a pot, or will one take over?",
    "What is the best way to harvest lettuce so that it keeps growing?",
    "How do I know when peppers are ripe enough to pick?",
    "Is it possible to grow potatoes in a bag on a balcony?",
    "What should I do with the plants when autumn arrives?",
    "Which crops could I grow through a mild winter under a cloche?",
    "How can I save seeds from this year's plants for next year?",
    "Could you summarise a simple monthly plan for the whole year?",
]


def engine_turns(gen: Generator, fresh: Generator, turns: int, answer_tokens: int) -> list[dict]:
    """``gen`` runs the conversation as the app does; ``fresh`` evaluates each turn's whole prompt."""
    sampling = SamplingParams(temperature=0.0, max_tokens=answer_tokens)
    history = [ChatMessage("system", "You are a helpful gardening assistant.")]
    rows = []
    for turn in range(turns):
        history.append(ChatMessage("user", QUESTIONS[turn % len(QUESTIONS)]))
        request = GenerationRequest(tuple(history), sampling, conversation_key="bench")
        reuse = gen.generate(request, threading.Event(), lambda e: None)
        fresh.forget_cache()
        full = fresh.generate(request, threading.Event(), lambda e: None)
        rows.append(
            dict(
                turn=turn + 1,
                prompt=reuse.stats.prompt_tokens,
                reused=reuse.stats.reused_prompt_tokens,
                ttft_reuse=reuse.stats.time_to_first_token_s,
                ttft_full=full.stats.time_to_first_token_s,
            )
        )
        history.append(ChatMessage("assistant", reuse.text))
    return rows


def raw_decode_loop(model_path: str, prompt: list[int], n_tokens: int, n_ctx: int, threads: int) -> float:
    """Tokens/s of a bare llama_decode loop with llama.cpp's greedy sampler (timed like the engine:
    from the first sampled token to the last)."""
    ensure_backend()
    mparams = llama_cpp.llama_model_default_params()
    mparams.use_extra_bufts = extra_buffers_ok()  # as the engine loads it (engine/runtime/cpu_check.py)
    model = llama_cpp.llama_model_load_from_file(model_path.encode(), mparams)
    cparams = llama_cpp.llama_context_default_params()
    cparams.n_ctx, cparams.n_batch, cparams.n_ubatch = n_ctx, 512, 512
    cparams.n_threads = cparams.n_threads_batch = threads
    cparams.no_perf = True
    ctx = llama_cpp.llama_init_from_model(model, cparams)
    sampler = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    llama_cpp.llama_sampler_chain_add(sampler, llama_cpp.llama_sampler_init_greedy())
    try:
        for start in range(0, len(prompt), 512):
            chunk = prompt[start : start + 512]
            arr = (llama_cpp.llama_token * len(chunk))(*chunk)
            llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(arr, len(chunk)))
        token = (llama_cpp.llama_token * 1)()
        t_first = None
        for i in range(n_tokens):
            token[0] = llama_cpp.llama_sampler_sample(sampler, ctx, -1)
            if t_first is None:
                t_first = time.perf_counter()
            if i == n_tokens - 1:
                break
            llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(token, 1))
        return (n_tokens - 1) / (time.perf_counter() - t_first)
    finally:
        llama_cpp.llama_sampler_free(sampler)
        llama_cpp.llama_free(ctx)
        llama_cpp.llama_model_free(model)


def decode_speed(gen: Generator, model_path: str, threads: int, repeats: int) -> tuple[list, list, list]:
    prompt_messages = (ChatMessage("user", "Write a long, detailed story about a lighthouse keeper and a storm."),)
    greedy = GenerationRequest(prompt_messages, SamplingParams(temperature=0.0, max_tokens=256, repeat_penalty=1.0))
    chain = GenerationRequest(prompt_messages, SamplingParams(max_tokens=256, seed=1))
    engine_greedy, engine_chain, raw = [], [], []
    for _ in range(repeats):
        gen.forget_cache()
        done = gen.generate(greedy, threading.Event(), lambda e: None)
        engine_greedy.append(done.stats.tokens_per_s)
        raw.append(
            raw_decode_loop(
                model_path, gen.encode(prompt_messages), done.stats.completion_tokens, gen.ctx.n_ctx, threads
            )
        )
        gen.forget_cache()
        engine_chain.append(gen.generate(chain, threading.Event(), lambda e: None).stats.tokens_per_s)
    return engine_greedy, engine_chain, raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--answer-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default=str(bundled_llm_path()))
    args = parser.parse_args()

    gen = Generator(ModelConfig(args.model, n_ctx=args.n_ctx, n_threads=args.threads))
    print(
        f"model: {gen.info.name} ({gen.info.description}), n_ctx {gen.info.n_ctx}, threads {args.threads}, "
        f"llama-cpp-python {llama_cpp.__version__}"
    )
    print(f"\nTime to first token, {args.answer_tokens}-token greedy answers")
    print(f"{'turn':>4} {'prompt':>7} {'reused':>7} {'TTFT reuse ms':>14} {'TTFT recompute ms':>18} {'speed-up':>9}")
    fresh = Generator(ModelConfig(args.model, n_ctx=args.n_ctx, n_threads=args.threads))
    rows = engine_turns(gen, fresh, args.turns, args.answer_tokens)
    fresh.close()
    for r in rows:
        print(
            f"{r['turn']:>4} {r['prompt']:>7} {r['reused']:>7} {r['ttft_reuse'] * 1000:>14.1f} "
            f"{r['ttft_full'] * 1000:>18.1f} {r['ttft_full'] / r['ttft_reuse']:>8.1f}x"
        )

    engine_greedy, engine_chain, raw = decode_speed(gen, args.model, args.threads, args.repeats)
    med = statistics.median
    print(f"\nGeneration speed (median of {args.repeats}, tokens/s after the first token)")
    print(f"  raw llama-cpp-python low-level loop (greedy) : {med(raw):7.1f}")
    print(
        f"  Locus engine, greedy                          : {med(engine_greedy):7.1f}   "
        f"ratio {med(engine_greedy) / med(raw):.2f}"
    )
    print(
        f"  Locus engine, default sampler chain           : {med(engine_chain):7.1f}   "
        f"ratio {med(engine_chain) / med(raw):.2f}"
    )
    gen.close()


if __name__ == "__main__":
    main()
