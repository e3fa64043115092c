"""API overhead: time to first token and tokens/s through the local API, beside the in-process runtime.

One runtime serves both paths in one run: N identical greedy requests straight
through ``Runtime.submit``, and N through the OpenAI-compatible API on loopback
(``ApiServer``, streamed, read by the official ``openai`` client), alternating so
that load drifting over the run hits both alike. Both sides are timed the same
way, from the caller: time to first token from the call to the first text, and
tokens/s as (completion tokens - 1) over the time from the first text to the last,
and the time to the last text (the whole answer, end to end).
Identical prompts reuse the KV cache after the first request on both paths
(``--cold`` drops it before every request, so each evaluates its whole prompt).

    .venv/bin/python bench/api_overhead.py [--requests 10] [--tokens 128] [--cold] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import openai

from engine.api import ApiServer
from engine.models.bundled import bundled_llm_path
from engine.runtime.backend import BackendRegistry
from engine.runtime.native import default_threads
from engine.runtime.runtime import Runtime
from engine.runtime.types import (
    ChatMessage,
    Done,
    Failed,
    GenerationRequest,
    ModelConfig,
    SamplingParams,
    Token,
)

SYSTEM = "You are a helpful assistant."
QUESTION = "Explain in a few paragraphs how a lighthouse warns ships at night."


def in_process(runtime: Runtime, tokens: int) -> tuple[float, float, int, str]:
    """(ttft s, tokens/s, completion tokens, text, time to the last text s) of one request through Runtime.submit."""
    request = GenerationRequest(
        messages=(ChatMessage("system", SYSTEM), ChatMessage("user", QUESTION)),
        sampling=SamplingParams(temperature=0.0, max_tokens=tokens),
    )
    t0 = time.perf_counter()
    first = last = None
    done = None
    for event in runtime.submit(request).events():
        if isinstance(event, Token) and event.text:
            last = time.perf_counter()
            first = first or last
        elif isinstance(event, Done):
            done = event
        elif isinstance(event, Failed):
            raise SystemExit(f"request failed: {event.error.user_text()}")
    n = done.stats.completion_tokens
    return first - t0, rate(n, first, last), n, done.text, last - t0


def through_api(client: openai.OpenAI, model: str, tokens: int) -> tuple[float, float, int, str]:
    """The same figures for one streamed request through the API."""
    t0 = time.perf_counter()
    first = last = None
    parts, n = [], 0
    stream = client.chat.completions.create(
        model=model,
        temperature=0,
        max_tokens=tokens,
        stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}],
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            last = time.perf_counter()
            first = first or last
            parts.append(chunk.choices[0].delta.content)
        if chunk.usage is not None:
            n = chunk.usage.completion_tokens
    return first - t0, rate(n, first, last), n, "".join(parts), last - t0


def rate(n: int, first: float | None, last: float | None) -> float:
    return (n - 1) / (last - first) if first is not None and last and last > first and n > 1 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=10, help="requests on each path (default 10)")
    parser.add_argument("--tokens", type=int, default=128, help="tokens generated per request (default 128)")
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--model", default=str(bundled_llm_path()))
    parser.add_argument("--cold", action="store_true", help="drop the KV cache before every request")
    parser.add_argument("--quick", action="store_true", help="3 requests of 32 tokens (a smoke run)")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.tokens = 3, 32

    runtime = Runtime()
    info = runtime.load(ModelConfig(args.model, n_ctx=args.n_ctx, n_threads=args.threads)).result()
    server = ApiServer(BackendRegistry.of(runtime), port=0, max_tokens=args.tokens).start()
    client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=600)
    paths = {
        "in-process": lambda: in_process(runtime, args.tokens),
        "API": lambda: through_api(client, info.name, args.tokens),
    }
    try:
        print(
            f"model: {info.name}, n_ctx {info.n_ctx}, threads {args.threads}; {args.requests} greedy requests "
            f"of {args.tokens} tokens on each path, alternating; KV cache {'dropped' if args.cold else 'reused'}"
        )
        results: dict[str, list] = {name: [] for name in paths}
        for call in paths.values():  # warm-up: the first request of each path is not counted
            call()
        for i in range(args.requests):
            for name in list(paths) if i % 2 == 0 else list(paths)[::-1]:
                if args.cold:
                    runtime._generator.forget_cache()  # the runtime thread is idle between requests
                results[name].append(paths[name]())
        report(results)
    finally:
        server.stop()
        runtime.shutdown()


def report(results: dict[str, list]) -> None:
    med = statistics.median
    local, api = results["in-process"], results["API"]
    same = all(a[3] == b[3] for a, b in zip(local, api, strict=True))
    print(f"\n{'':<22} {'in-process':>11} {'API':>11} {'API / in-process':>17}")
    for label, index, scale, unit in (
        ("time to first token", 0, 1000, "ms"),
        ("tokens/s", 1, 1, ""),
        ("time to last token", 4, 1000, "ms"),
    ):
        a, b = med(r[index] for r in local), med(r[index] for r in api)
        paired = med(y[index] / x[index] for x, y in zip(local, api, strict=True))  # each pair ran back to back
        print(f"{label + (f' ({unit})' if unit else ''):<22} {a * scale:>11.1f} {b * scale:>11.1f} {paired:>16.2f}x")
    print(f"{'completion tokens':<22} {med(r[2] for r in local):>11.0f} {med(r[2] for r in api):>11.0f}")
    print(
        f"\nsame answers on both paths: {'yes' if same else 'NO'} (medians; the ratio is the median of paired ratios)"
    )
    print("\nMarkdown rows (path | time to first token ms | tokens/s | time to last token ms):")
    for label, rows in (("in-process Runtime.submit", local), ("API, streamed (openai client)", api)):
        print(
            f"| {label} | {med(r[0] for r in rows) * 1000:.1f} | {med(r[1] for r in rows):.1f} | "
            f"{med(r[4] for r in rows) * 1000:.1f} |"
        )


if __name__ == "__main__":
    main()
