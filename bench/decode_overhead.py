"""Per-token overhead: the engine's generation tokens/s against llama.cpp's own llama-bench (tg).

Same model, same threads, same llama.cpp build: llama-bench is found or built for the installed
llama-cpp-python version (see bench/llama_tools.py) and, unless --own-libs, runs on the very
libllama/libggml files the engine loads. llama-bench's tg test decodes N tokens one at a time
(with a random next token, no sampling); the engine generates N+1 tokens through the Runtime
(submit -> events), sampling each with llama.cpp's native chain, and its tokens/s counts the N
intervals between the first and the last token. llama-bench runs at the depth of the engine's
prompt (-d), so both attend over the same number of cached tokens.

The machine may be shared, so the two sides run in interleaved pairs (one llama-bench run, then
one engine run with greedy sampling and one with the default sampling chain); each pair gives
a ratio, and the median and the spread of the pairs' ratios are printed.

Micro-model mode (--micro): the bundled model cut to 2 layers (bench/micro_model.py: same
vocabulary and tokenizer, a decode step of ~0.2 ms on a quiet CPU, the regime of a GPU's
per-token budget), the engine through the Runtime against a bare llama-cpp-python loop with
the same sampler chain (llama.cpp's own, penalties included), in interleaved pairs, for each
thread count. Per token it prints the wall time split into llama_decode, sampling and the
rest (the engine's bookkeeping), and the decoding thread's CPU time outside llama_decode,
which a loaded machine does not inflate. No llama-bench needed.

    python bench/decode_overhead.py                      # 2 threads, 128 tokens, 10 pairs
    python bench/decode_overhead.py --threads 4 --pairs 20 --tokens 256
    python bench/decode_overhead.py --micro --threads 1,2 --pairs 5
    python bench/decode_overhead.py --sampling           # CPU µs of sampling one row, llama.cpp vs engine
    python bench/decode_overhead.py --device             # also the chain sampled in llama.cpp's graph
    python bench/decode_overhead.py --micro --device     # both sides sample in the graph

--device adds a third engine run to each pair: the default chain sampled inside llama_decode's graph
(llama.cpp's backend sampling, the model setting backend_sampling "on"), as a GPU would run it. With
--micro, the bare loop and the engine both sample that way.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.llama_tools import installed_lib_dir, llama_cpp_version, require_tool, same_buffers
from engine.models.bundled import bundled_llm_path
from engine.runtime.runtime import Runtime
from engine.runtime.types import ChatMessage, Done, GenerationRequest, ModelConfig, SamplingParams

PROMPT = (
    ChatMessage("system", "You are a helpful assistant."),
    ChatMessage(
        "user", "Write a long, detailed essay about the history of the Roman Empire, from its founding to its fall."
    ),
)
GREEDY = dict(temperature=0.0, repeat_penalty=1.0)  # the chain is llama.cpp's greedy sampler alone
DEFAULT_CHAIN = dict(temperature=0.7, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.1, seed=1)


def llama_bench(
    tool: Path, model: str, threads: int, tokens: int, reps: int, depth: int, own_libs: bool
) -> tuple[float, float]:
    """llama-bench's tg tokens/s (mean, stddev) at this depth."""
    env = dict(os.environ)
    if not own_libs:  # the engine's own libllama/libggml, then the tools' common library
        env["LD_LIBRARY_PATH"] = f"{installed_lib_dir()}:{tool.parent}:{env.get('LD_LIBRARY_PATH', '')}"
    out = subprocess.run(
        [
            str(tool),
            *same_buffers("llama-bench"),
            "-m",
            model,
            "-t",
            str(threads),
            "-p",
            "0",
            "-n",
            str(tokens),
            "-d",
            str(depth),
            "-r",
            str(reps),
            "-o",
            "json",
        ],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result = json.loads(out)[0]
    return float(result["avg_ts"]), float(result["stddev_ts"])


def engine_run(runtime: Runtime, tokens: int, sampling: dict) -> Done:
    """One generation of tokens+1 tokens through the runtime, events consumed by a callback."""
    request = GenerationRequest(PROMPT, SamplingParams(max_tokens=tokens + 1, **sampling))
    seen = threading.Event()
    handle = runtime.submit(request, lambda e: isinstance(e, Done) and seen.set())
    seen.wait()
    return handle.result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(bundled_llm_path()))
    parser.add_argument("--threads", default="2", help="llama.cpp threads (--micro: a comma-separated list)")
    parser.add_argument("--micro", action="store_true", help="2-layer model against a bare llama-cpp-python loop")
    parser.add_argument("--sampling", action="store_true", help="CPU µs of sampling one row: llama.cpp vs engine")
    parser.add_argument("--micro-path", default=str(Path(tempfile.gettempdir()) / "locus-micro-2L.gguf"))
    parser.add_argument("--tokens", type=int, default=128, help="generated tokens per run (llama-bench -n)")
    parser.add_argument("--pairs", type=int, default=10, help="interleaved runs of each side")
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument(
        "--own-libs", action="store_true", help="run llama-bench on the libraries built beside it, not the engine's"
    )
    parser.add_argument("--no-build", action="store_true", help="fail instead of building llama-bench")
    parser.add_argument("--device", action="store_true", help="sample in llama.cpp's graph (backend sampling) too")
    args = parser.parse_args()
    if args.micro or args.sampling:
        from bench.micro_model import make_micro_model, run_micro, sampling_cost

        path = make_micro_model(args.micro_path, source=args.model)
        if args.sampling:
            sampling_cost(path)
            return 0
        threads = [int(t) for t in args.threads.split(",")]
        chains = {"greedy": GREEDY, "default": DEFAULT_CHAIN}
        run_micro(path, threads, args.tokens, args.pairs, PROMPT, chains, device=args.device)
        return 0
    args.threads = int(args.threads)

    tool = require_tool("llama-bench", build=not args.no_build, log=lambda m: print(m, file=sys.stderr))
    runtime = Runtime()
    device = Runtime() if args.device else None  # the same model, its chains sampled in the graph
    try:
        config = ModelConfig(args.model, n_ctx=args.n_ctx, n_threads=args.threads)
        info = runtime.load(config).result()
        warm = engine_run(runtime, 8, GREEDY)  # loads pages, builds the graph once
        if device is not None:
            device.load(dataclasses.replace(config, backend_sampling="on")).result()
            engine_run(device, 8, DEFAULT_CHAIN)
        depth = warm.stats.prompt_tokens
        print(
            f"model {info.name} ({Path(args.model).name}), {args.threads} threads, llama-cpp-python "
            f"{llama_cpp_version()}, llama-bench {tool}"
            f"{' (own libraries)' if args.own_libs else ' on the engine libraries ' + str(installed_lib_dir())}"
        )
        print(f"tg{args.tokens} at depth {depth} (the engine's prompt), {args.pairs} interleaved pairs")
        print(
            f"{'pair':>4}  {'llama-bench t/s':>15}  {'engine greedy t/s':>17}  {'ratio':>6}  "
            f"{'engine default chain t/s':>24}  {'ratio':>6}"
            + (f"  {'chain in the graph t/s':>22}  {'ratio':>6}" if device is not None else "")
        )
        rows = []
        for i in range(1, args.pairs + 1):
            ref, _ = llama_bench(tool, args.model, args.threads, args.tokens, 1, depth, args.own_libs)
            greedy = engine_run(runtime, args.tokens, GREEDY).stats
            chain = engine_run(runtime, args.tokens, DEFAULT_CHAIN).stats
            graph = engine_run(device, args.tokens, DEFAULT_CHAIN).stats if device is not None else chain
            rows.append((ref, greedy.tokens_per_s, chain.tokens_per_s, graph.tokens_per_s))
            fewest = min(greedy.completion_tokens, chain.completion_tokens, graph.completion_tokens)
            short = "" if fewest > args.tokens else f"  (an answer stopped at {fewest} tokens)"
            print(
                f"{i:>4}  {ref:>15.1f}  {greedy.tokens_per_s:>17.1f}  {greedy.tokens_per_s / ref:>6.3f}  "
                f"{chain.tokens_per_s:>24.1f}  {chain.tokens_per_s / ref:>6.3f}"
                + (f"  {graph.tokens_per_s:>22.1f}  {graph.tokens_per_s / ref:>6.3f}" if device is not None else "")
                + short
            )
        columns = [("greedy", 1), ("default sampling chain", 2)]
        if device is not None:
            columns.append(("default chain sampled in the graph", 3))
        for name, column in columns:
            ratios = sorted(r[column] / r[0] for r in rows)
            q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
            print(
                f"engine/llama-bench, {name}: median {statistics.median(ratios):.3f} "
                f"(quartiles {q[0]:.3f}-{q[2]:.3f}; medians of t/s: llama-bench "
                f"{statistics.median(r[0] for r in rows):.1f}, engine {statistics.median(r[column] for r in rows):.1f})"
            )
    finally:
        runtime.shutdown()
        if device is not None:
            device.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
