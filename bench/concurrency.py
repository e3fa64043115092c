"""Many requests at once: aggregate tokens/s of 1, 2, 4 and 8 concurrent streams, continuous
batching against one-at-a-time, beside llama.cpp's own llama-batched-bench; then time to first
token of short interactive requests arriving while long background work runs, with the
priority scheduler against first come, first served.

Throughput: N greedy streams ("Write a long story about a <animal>.", prompts of equal length)
are submitted at once to a Runtime with n_parallel=8 ("batch": they decode together) and to one
with scheduling="serial" (one after the other). "decode" counts the tokens after each stream's
first over the time from the last first token to the last token, as llama-batched-bench's S_TG
counts generation only; "gen/wall" counts generated tokens over the whole time from submission
to the last answer, prompts included (for llama-batched-bench: N x tg / T). llama-batched-bench
runs with the same prompt length (-npp), tokens (-ntg), streams (-npl), threads, batch size and
a unified KV cache (-kvu), on the engine's own libraries.

Latency: BACKGROUND summaries of a long text, all submitted first, keep the runtime busy while
INTERACTIVE quick questions arrive at random (seeded) moments; the time to first token (from
submission) of the questions asked before the last summary ended is reported as p50/p95 for
scheduling="batch" (priorities, continuous batching, preemption), "serial" (priorities, one at
a time, as before this issue) and "fcfs" (arrival order, one at a time).

    python bench/concurrency.py                 # full run (several minutes on 2 cores)
    python bench/concurrency.py --quick         # 1, 2, 4 streams, shorter answers, fewer questions
    python bench/concurrency.py --per-stream    # bookkeeping per stream and step, 1..32 streams (no reference)
    python bench/concurrency.py --only throughput --streams 1,8,32   # up to 32 streams (n_parallel follows)
    python bench/concurrency.py --per-stream --device   # the chains sampled in llama.cpp's graph (backend sampling)

Per stream (--per-stream): 1, 4, 8, 16 and 32 streams run in one Generator (no runtime thread)
on the 2-layer micro model of bench/micro_model.py (--model to change it), and the CPU time the
decoding thread spends per step outside llama_decode (batch filling, sampling, detokenizing,
events, leaving) is divided by the number of streams: what grows with the streams shows as a
per-stream figure that does not fall. CPU time, so a loaded machine inflates it little.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.llama_tools import installed_lib_dir, require_tool, same_buffers
from engine.models.bundled import bundled_llm_path
from engine.runtime.runtime import Runtime
from engine.runtime.types import (
    ChatMessage,
    Done,
    GenerationRequest,
    ModelConfig,
    Priority,
    SamplingParams,
    Token,
)

ANIMALS = ("cat", "dog", "fox", "owl", "bee", "pig", "cow", "rat")  # one token each: equal prompt lengths
SEA = (
    "The sea covers most of the planet. Tides rise and fall twice a day, pulled by the moon and the sun. "
    "Fishermen read the water, the sky and the birds before they sail. "
)


SAMPLING_MODE: dict = {}  # --device: {"backend_sampling": "on"}, every engine model samples in llama.cpp's graph


def runtime(model: str, threads: int, n_ctx: int, scheduling: str, n_parallel: int = 8) -> Runtime:
    rt = Runtime(scheduling=scheduling)
    rt.load(ModelConfig(model, n_ctx=n_ctx, n_threads=threads, n_parallel=n_parallel, **SAMPLING_MODE)).result()
    rt.submit(GenerationRequest((ChatMessage("user", "Hi."),), SamplingParams(max_tokens=4))).wait()  # warm up
    return rt


def story(animal: str, tokens: int) -> GenerationRequest:
    return GenerationRequest(
        (ChatMessage("user", f"Write a long story about a {animal}."),),
        SamplingParams(temperature=0.0, max_tokens=tokens),
    )


def streams(rt: Runtime, n: int, tokens: int) -> dict:
    """N streams submitted at once; token timestamps per stream."""
    firsts, lasts = {}, {}
    lock = threading.Lock()

    def on_event(i):
        def handle(event):
            if isinstance(event, Token) and event.n_tokens:
                now = time.perf_counter()
                with lock:
                    firsts.setdefault(i, now)
                    lasts[i] = now

        return handle

    t0 = time.perf_counter()
    handles = [rt.submit(story(ANIMALS[i % len(ANIMALS)], tokens), on_event(i)) for i in range(n)]
    done = [h.wait() for h in handles]
    wall = time.perf_counter() - t0
    completion = sum(d.stats.completion_tokens for d in done)
    prompt = sum(d.stats.prompt_tokens for d in done)
    decode_window = max(lasts.values()) - max(firsts.values())
    after_first = sum(d.stats.completion_tokens - 1 for d in done)
    return dict(
        decode=after_first / decode_window if decode_window > 0 else float("nan"),
        gen=completion / wall,
        completion=completion,
        prompt=prompt // n,
        wall=wall,
    )


def batched_bench(tool: Path, model: str, threads: int, pp: int, tg: int, counts: list[int]) -> dict[int, dict]:
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = f"{installed_lib_dir()}:{tool.parent}:{env.get('LD_LIBRARY_PATH', '')}"
    ctx = max(counts) * (pp + tg) + 64
    out = subprocess.run(
        [
            str(tool),
            *same_buffers("llama-batched-bench"),
            "-m",
            model,
            "-c",
            str(ctx),
            "-b",
            "512",
            "-ub",
            "512",
            "-t",
            str(threads),
            "-npp",
            str(pp),
            "-ntg",
            str(tg),
            "-npl",
            ",".join(map(str, counts)),
            "-kvu",
            "--output-format",
            "jsonl",
        ],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return {r["pl"]: r for r in rows}


def throughput(args, tool: Path | None) -> None:
    counts = args.streams or ([1, 2, 4] if args.quick else [1, 2, 4, 8])
    parallel = max(8, *counts)
    n_ctx = max(args.n_ctx, parallel * (64 + args.tokens))  # every stream's prompt and answer fit its slot
    results = {}
    for mode in ("batch", "serial"):
        rt = runtime(args.model, args.threads, n_ctx, mode, parallel)
        try:
            results[mode] = {n: streams(rt, n, args.tokens) for n in counts}
        finally:
            rt.shutdown()
    pp = results["batch"][1]["prompt"]
    ref = batched_bench(tool, args.model, args.threads, pp, args.tokens, counts) if tool else {}
    print(f"\nAggregate tokens/s, {args.tokens} tokens per stream, prompts of {pp} tokens, {args.threads} threads")
    print(
        f"{'streams':>7} | {'llama-batched-bench':^19} | {'engine, continuous batching':^27} | "
        f"{'engine, one at a time':^21}"
    )
    print(f"{'':>7} | {'S_TG':>8} {'gen/wall':>10} | {'decode':>12} {'gen/wall':>14} | {'gen/wall':>21}")
    for n in counts:
        b, s, r = results["batch"][n], results["serial"][n], ref.get(n)
        ref_tg, ref_gen = (r["speed_tg"], n * r["tg"] / r["t"]) if r else (float("nan"), float("nan"))
        short = "" if b["completion"] == n * args.tokens else f"  ({b['completion']} of {n * args.tokens} tokens)"
        print(
            f"{n:>7} | {ref_tg:>8.1f} {ref_gen:>10.1f} | {b['decode']:>12.1f} {b['gen']:>14.1f} | "
            f"{s['gen']:>21.1f}{short}"
        )


def latency(args) -> None:
    rng = random.Random(7)
    gaps = [rng.uniform(0.3, 1.2) for _ in range(args.questions)]
    text = SEA * args.summary_repeats
    print(
        f"\nTime to first token of interactive questions (8 tokens each, one every 0.3-1.2 s) while "
        f"{args.summaries} background summaries run (prompt ~{len(text) // 4} tokens, {args.summary_tokens} "
        f"tokens each, all submitted first); only questions asked before the last summary ended count"
    )
    print(
        f"{'scheduling':>10} | {'questions':>9} {'p50 s':>7} {'p95 s':>7} {'max s':>7} | {'summaries done after s':>22}"
    )
    for mode in ("batch", "serial", "fcfs"):
        rt = runtime(args.model, args.threads, args.n_ctx, mode)
        try:
            t0 = time.perf_counter()
            background = [
                rt.submit(
                    GenerationRequest(
                        (ChatMessage("user", f"Summarise this text in detail:\n\n{text}"),),
                        SamplingParams(temperature=0.0, max_tokens=args.summary_tokens),
                        priority=Priority.BACKGROUND,
                    )
                )
                for _ in range(args.summaries)
            ]
            time.sleep(0.5)
            questions = []
            for i, gap in enumerate(gaps):
                asked = time.perf_counter()
                questions.append(
                    (
                        asked,
                        rt.submit(
                            GenerationRequest(
                                (ChatMessage("user", f"Quick question {i}: what is {i} plus {i}?"),),
                                SamplingParams(temperature=0.0, max_tokens=8),
                                priority=Priority.INTERACTIVE,
                            )
                        ),
                    )
                )
                time.sleep(gap)
            ended = max(t0 + b.wait().stats.total_s for b in background)
            ttft = sorted(
                handle.wait().stats.time_to_first_token_s
                for asked, handle in questions
                if asked < ended and isinstance(handle.wait(), Done)
            )
        finally:
            rt.shutdown()
        if not ttft:
            print(f"{mode:>10} | the summaries ended before the first question; raise --summaries")
            continue
        p95 = statistics.quantiles(ttft, n=20, method="inclusive")[-1] if len(ttft) > 1 else ttft[0]
        print(
            f"{mode:>10} | {len(ttft):>9} {statistics.median(ttft):>7.3f} {p95:>7.3f} {ttft[-1]:>7.3f} | "
            f"{ended - t0:>22.1f}"
        )


def per_stream(model: str, threads: int, counts=(1, 4, 8, 16, 32), tokens: int = 48) -> None:
    """CPU µs per stream and step outside llama_decode, greedy and the default chain (see the docstring)."""
    from engine.runtime.generator import Generator

    greedy = SamplingParams(temperature=0.0, repeat_penalty=1.0, max_tokens=tokens)
    chain = SamplingParams(seed=1, max_tokens=tokens)
    plain = {"speculative": "off"} if "speculative" in ModelConfig.__dataclass_fields__ else {}
    print(
        f"bookkeeping per stream and step, CPU µs outside llama_decode ({Path(model).name}, {threads} threads"
        f"{'; sampled in the graph, so in llama_decode' if SAMPLING_MODE else ''})"
    )
    print(f"{'streams':>7} | {'greedy':>7} {'default chain':>13} | {'decode µs/step':>14}")
    for n in counts:
        config = ModelConfig(model, n_ctx=max(2048, n * 160), n_threads=threads, n_parallel=n, **plain, **SAMPLING_MODE)
        gen = Generator(config)
        in_decode = [0.0, 0]
        decode_batch = gen.ctx.decode_batch

        def timed(decode_batch=decode_batch, in_decode=in_decode) -> int:
            start = time.thread_time()
            rc = decode_batch()
            in_decode[0] += time.thread_time() - start
            in_decode[1] += 1
            return rc

        gen.ctx.decode_batch = timed  # type: ignore[method-assign]
        row = []
        for sampling in (greedy, chain):
            for i in range(n):
                request = GenerationRequest((ChatMessage("user", f"Write story number {i} about a cat."),), sampling)
                assert gen.batcher.admit(gen.sequence(request, threading.Event(), lambda e: None))
            while any(s.phase == "prefill" for s in gen.batcher.active):
                gen.batcher.step()
            in_decode[:] = [0.0, 0]
            start = time.thread_time()
            while gen.batcher.busy:
                gen.batcher.step()
            outside = time.thread_time() - start - in_decode[0]
            row.append((outside / max(1, in_decode[1]) / n * 1e6, in_decode[0] / max(1, in_decode[1]) * 1e6))
            gen.forget_cache()
        gen.close()
        print(f"{n:>7} | {row[0][0]:>7.1f} {row[1][0]:>13.1f} | {row[0][1]:>14.0f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(bundled_llm_path()))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--tokens", type=int, default=None, help="generated tokens per stream (default 128)")
    parser.add_argument("--questions", type=int, default=None, help="interactive questions (default 20)")
    parser.add_argument("--summaries", type=int, default=None, help="background summaries (default 6)")
    parser.add_argument("--summary-tokens", type=int, default=None, help="default 256")
    parser.add_argument("--summary-repeats", type=int, default=12, help="copies of the sample text per summary")
    parser.add_argument("--quick", action="store_true", help="1, 2, 4 streams of 48 tokens; 8 questions, 3 summaries")
    parser.add_argument(
        "--streams", type=lambda v: [int(x) for x in v.split(",")], default=None, help="e.g. 1,8,32 (throughput)"
    )
    parser.add_argument("--no-reference", action="store_true", help="skip llama-batched-bench")
    parser.add_argument("--only", choices=("throughput", "latency"))
    parser.add_argument("--per-stream", action="store_true", help="bookkeeping per stream and step (micro model)")
    parser.add_argument("--device", action="store_true", help="the engine samples in llama.cpp's graph (backend)")
    args = parser.parse_args()
    if args.device:
        SAMPLING_MODE["backend_sampling"] = "on"
    if args.per_stream:
        from bench.micro_model import make_micro_model

        model = args.model
        if model == str(bundled_llm_path()):
            model = str(make_micro_model(Path(tempfile.gettempdir()) / "locus-micro-2L.gguf"))
        per_stream(model, args.threads)
        return 0
    args.tokens = args.tokens or (48 if args.quick else 128)
    args.questions = args.questions or (8 if args.quick else 20)
    args.summary_tokens = args.summary_tokens or (96 if args.quick else 256)
    args.summaries = args.summaries or (3 if args.quick else 6)
    tool = None if args.no_reference else require_tool("llama-batched-bench", log=lambda m: print(m, file=sys.stderr))
    print(f"model {Path(args.model).name}, {args.threads} threads, n_ctx {args.n_ctx}, n_parallel 8")
    if args.only != "latency":
        throughput(args, tool)
    if args.only != "throughput":
        latency(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
