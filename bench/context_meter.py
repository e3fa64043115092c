"""What the context meter costs after a turn: engine/context_meter.py (each message tokenized once, cached;
the template's frame measured once per model) against rendering and tokenizing the whole next prompt with
the chat template (the exact count with no cache), on the bundled model's tokenizer.

A conversation of ``--messages`` saved messages (about ``--words`` words each) is built in a temporary
history; each round adds one exchange, then measures with the meter and renders the whole prompt, in
alternating order (interleaved pairs: load on the machine hits both). Both counts are checked equal.

    .venv/bin/python bench/context_meter.py [--messages 200] [--words 60] [--rounds 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.context_meter import ContextMeter
from engine.history.store import HistoryStore
from engine.models.bundled import bundled_llm_path
from engine.runtime.runtime import Runtime
from engine.runtime.types import ModelConfig
from engine.turns import Turn, TurnRequest, model_turns

SYSTEM = "You are Locus, a helpful assistant running privately on the user's computer."
SENTENCE = "The ferry leaves the harbour at nine and returns before the evening tide turns. "


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--words", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    text = (SENTENCE * (args.words // 14 + 1))[: args.words * 6]
    runtime = Runtime()
    runtime.load(ModelConfig(str(bundled_llm_path()), n_ctx=32768)).result(timeout=120)
    with tempfile.TemporaryDirectory() as tmp:
        history = HistoryStore(Path(tmp) / "locus.sqlite3")
        cid = history.create_conversation().id
        for i in range(args.messages):
            history.add_message(cid, "user" if i % 2 == 0 else "assistant", f"{i}: {text}")
        meter = ContextMeter()
        t0 = time.perf_counter()
        first = meter.measure(runtime, SYSTEM, history.messages(cid))
        cold = time.perf_counter() - t0
        meter_s, render_s = [], []
        for r in range(args.rounds):
            history.add_message(cid, "user", f"question {r}: {text}")
            history.add_message(cid, "assistant", f"answer {r}: {text}")
            messages = history.messages(cid)

            def by_meter(messages=messages):
                return meter.measure(runtime, SYSTEM, messages).used

            def by_render(messages=messages):
                turn = Turn(TurnRequest("chat", "", cid), cid, False, "", "local", runtime, None)
                turn.earlier = model_turns(messages)
                return runtime.render_prompt(turn.context(SYSTEM, None))[1]

            pair = [(by_meter, meter_s), (by_render, render_s)]
            results = []
            for fn, sink in pair if r % 2 == 0 else reversed(pair):
                t = time.perf_counter()
                results.append(fn())
                sink.append(time.perf_counter() - t)
            assert results[0] == results[1], results
        history.close()
    runtime.shutdown()
    load = os.getloadavg()
    m, rr = statistics.median(meter_s), statistics.median(render_s)
    print(f"messages {args.messages}..{args.messages + 2 * args.rounds}, prompt {first.used:,} tokens at start")
    print(f"meter, first measure (cold cache): {cold * 1000:.1f} ms")
    print(f"meter after a turn (median):       {m * 1000:.2f} ms")
    print(f"whole prompt rendered (median):    {rr * 1000:.2f} ms")
    print(f"ratio whole render / meter:        {rr / m:.1f}x")
    print(f"load average: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
