"""Tracing overhead: generation tokens/s and request time with tracing on and off, on the real model.

One Runtime serves every request and its tracing is swapped between requests, as the
settings dialog does: on is Tracing(TraceStore(tmp), capture_content=True), off is
Tracing.disabled(). After a warm-up, each round runs the same request once with tracing
on and once off (the order flips every round so that drift in the machine's load cancels),
with the same prompt, seed and greedy sampling, and the KV cache dropped first so that
every prompt is evaluated whole. Spans are exported after a request has ended, so each
traced request is flushed outside its timing (standing for the pause before the user's next
request); the time the exporter spends scrubbing and storing them is reported per request.
The same is measured for the whole Assistant.ask path (history, root span, recorder).

    .venv/bin/python bench/trace_overhead.py [--rounds 6] [--tokens 128] [--threads N] [--model PATH]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.assistant import Assistant, ChatSettings
from engine.history.store import HistoryStore
from engine.models.bundled import bundled_llm_path
from engine.runtime.backend import BackendRegistry
from engine.runtime.native import default_threads
from engine.runtime.runtime import Runtime
from engine.runtime.types import ChatMessage, GenerationRequest, ModelConfig, SamplingParams
from engine.trace.store import TraceStore
from engine.trace.tracing import Redactor, Tracing

SYSTEM = "You are Locus, a helpful assistant running privately on the user's computer."
QUESTION = "Write a long, detailed story about a lighthouse keeper and a storm."


class TimedStore(TraceStore):
    """The trace store, adding up the time its writes take (on the exporter's thread)."""

    def __init__(self, path: Path):
        super().__init__(path)
        self.write_s = 0.0
        self.spans = 0

    def add_spans(self, spans) -> None:
        t = time.perf_counter()
        super().add_spans(spans)
        self.write_s += time.perf_counter() - t
        self.spans += len(spans)


class TimedRedactor(Redactor):
    """The redactor, adding up the time scrubbing takes (every string attribute goes through it)."""

    scrub_s = 0.0

    def frozen(self) -> TimedRedactor:
        """The exporters scrub with a per-batch copy: time that copy into this redactor's total."""
        secrets, owner = self._current(), self
        copy = TimedRedactor(lambda: secrets)
        copy.scrub = lambda text: owner._timed(Redactor.scrub, copy, text)
        return copy

    def _timed(self, scrub, redactor, text: str) -> str:
        t = time.perf_counter()
        try:
            return scrub(redactor, text)
        finally:
            self.scrub_s += time.perf_counter() - t

    def scrub(self, text: str) -> str:
        t = time.perf_counter()
        try:
            return super().scrub(text)
        finally:
            self.scrub_s += time.perf_counter() - t


class Exports:
    """What exporting cost: spans, scrub time, write time and flush wall time, summed over requests."""

    def __init__(self, store: TimedStore, redactor: TimedRedactor):
        self.store, self.redactor = store, redactor
        self.requests, self.flush_s = 0, 0.0

    def reset(self) -> None:
        self.store.write_s = self.store.spans = self.redactor.scrub_s = self.flush_s = self.requests = 0

    def per_request(self) -> tuple[float, float, float, float]:
        n = max(1, self.requests)
        return self.store.spans / n, self.redactor.scrub_s / n, self.store.write_s / n, self.flush_s / n


def run_once(runtime: Runtime, tracing: Tracing, exports: Exports, ask):
    """One request with this tracing, from a cold KV cache; its end (Done, or the answer's AnswerEnded) and its
    wall time."""
    runtime.tracing = tracing
    # Once the previous request has left the batch the runtime thread is idle, so dropping its cache
    # here is safe; every request then evaluates its whole prompt, as a conversation's first turn does.
    while runtime._generator.batcher.busy:
        time.sleep(0.001)
    runtime._generator.forget_cache()
    t = time.perf_counter()
    done = ask()
    wall = time.perf_counter() - t
    if getattr(done, "error", None) is not None:  # a runtime Failed, or an AnswerEnded that failed
        raise SystemExit(f"request failed: {done.error.user_text()}")
    if tracing.enabled:
        t = time.perf_counter()
        tracing.flush()
        exports.flush_s += time.perf_counter() - t
        exports.requests += 1
    return done, wall


def measure(runtime: Runtime, on: Tracing, off: Tracing, exports: Exports, ask, rounds: int) -> dict:
    """Tokens/s and wall times of ``rounds`` alternating on/off requests, after one warm-up of each."""
    run_once(runtime, on, exports, ask)
    run_once(runtime, off, exports, ask)
    exports.reset()
    results = {"on": [], "off": []}
    for r in range(rounds):
        for name in ("on", "off") if r % 2 == 0 else ("off", "on"):
            done, wall = run_once(runtime, on if name == "on" else off, exports, ask)
            results[name].append((done.stats.tokens_per_s, wall, done.stats.completion_tokens))
    return results


def row(label: str, results: dict) -> str:
    """Medians of each side, and the overhead as the median of the rounds' paired on/off ratios
    (each round's two requests ran back to back, so load that drifts over the run cancels)."""
    med = statistics.median
    on, off = results["on"], results["off"]
    tokens = med(x[2] for x in on + off)
    tps_overhead = med((1 - a[0] / b[0]) * 100 for a, b in zip(on, off, strict=True))
    wall_overhead = med((a[1] / b[1] - 1) * 100 for a, b in zip(on, off, strict=True))
    return (
        f"{label:<16} {tokens:>6.0f} {med(x[0] for x in on):>9.1f} {med(x[0] for x in off):>9.1f} "
        f"{tps_overhead:>+9.2f}% {med(x[1] for x in on) * 1000:>10.1f} {med(x[1] for x in off) * 1000:>10.1f} "
        f"{wall_overhead:>+9.2f}%"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--tokens", type=int, default=128, help="tokens generated per request")
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--model", default=str(bundled_llm_path()))
    args = parser.parse_args()

    sampling = SamplingParams(temperature=0.0, max_tokens=args.tokens, seed=1)
    with tempfile.TemporaryDirectory(prefix="locus-trace-bench-") as tmp:
        store, redactor = TimedStore(Path(tmp) / "traces.sqlite3"), TimedRedactor()
        on, off = Tracing(store, capture_content=True, redactor=redactor), Tracing.disabled()
        exports = Exports(store, redactor)
        runtime = Runtime(off)
        info = runtime.load(ModelConfig(args.model, n_ctx=args.n_ctx, n_threads=args.threads)).result()
        history = HistoryStore(Path(tmp) / "locus.sqlite3")
        assistant = Assistant(
            BackendRegistry.of(runtime), history, ChatSettings(system_prompt=SYSTEM, sampling=sampling)
        )
        try:
            print(
                f"model: {info.name}, n_ctx {info.n_ctx}, threads {args.threads}; {args.rounds} rounds of "
                f"{args.tokens}-token greedy answers, tracing on (content captured) vs off"
            )
            request = (ChatMessage("system", SYSTEM), ChatMessage("user", QUESTION))

            def submit():
                return runtime.submit(GenerationRequest(request, sampling)).wait()

            def ask():
                assistant.tracing = runtime.tracing  # what Services._retrace does
                return assistant.ask(QUESTION).wait()

            print(
                f"\n{'path':<16} {'tokens':>6} {'tok/s on':>9} {'tok/s off':>9} {'overhead':>10} "
                f"{'ms on':>10} {'ms off':>10} {'overhead':>10}"
            )
            costs = []
            for label, call in (("runtime.submit", submit), ("Assistant.ask", ask)):
                print(row(label, measure(runtime, on, off, exports, call, args.rounds)), flush=True)
                costs.append((label, exports.per_request()))
            print("(overhead: tracing on against off, median of the rounds' paired ratios; positive is slower)")
            print("\nSpan export per traced request (on the exporter thread, after the request ended)")
            for label, (spans, scrub, write, flush) in costs:
                print(
                    f"  {label:<16} {spans:4.1f} spans   scrub {scrub * 1000:6.2f} ms   "
                    f"store write {write * 1000:6.2f} ms   flush wall {flush * 1000:6.2f} ms"
                )
            print(f"  trace store: {store.count()} traces, {store.size_bytes() / 1e3:.0f} kB")
        finally:
            runtime.shutdown()
            on.shutdown()
            assistant.close()
            history.close()
            store.close()


if __name__ == "__main__":
    main()
