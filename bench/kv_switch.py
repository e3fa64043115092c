"""Switching between conversations: time to first token when going back to conversation A after
B ran, against continuing A directly, with A's KV state kept in the context, saved to RAM, spilled
to disk, or not kept at all (its history evaluated again).

A has a long history (a document in its first message, an answer, a follow-up question); B is
about another document, short (A stays in the context) or long (A must leave the context: n_ctx
2048 holds one of them). Each case runs on a fresh runtime, several times; the median TTFT of A's
second turn is printed with its ratio to continuing A directly (the issue's target: within 1.2x).
Turns are --think seconds apart (a person reads an answer before asking again): the runtime
copies idle conversations' caches to RAM in such pauses, so making room later costs no save.

    python bench/kv_switch.py                # 5 repetitions, 0.5 s between turns
    python bench/kv_switch.py --reps 3 --threads 4 --think 0
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.models.bundled import bundled_llm_path
from engine.runtime.runtime import Runtime
from engine.runtime.types import ChatMessage, GenerationRequest, ModelConfig, SamplingParams

DOCUMENT = (
    "The harbour town keeps a lighthouse, a bakery and a small museum of old maps. Fishing boats "
    "leave before dawn and come back when the tide turns; the market opens when they are in. "
)
OTHER = (
    "In the mountain village the school bell rings at eight, the bus climbs the pass twice a day, "
    "and the shepherds bring the goats down before the first snow falls on the high meadows. "
)
GREEDY = SamplingParams(temperature=0.0, max_tokens=32)


def conversation(document: str, document_repeats: int, question: str) -> list[ChatMessage]:
    text = document * document_repeats
    return [
        ChatMessage("system", "You are a helpful assistant."),
        ChatMessage("user", f"Here is a text:\n\n{text}\n\n{question}"),
    ]


def ask(rt: Runtime, key: str, messages: list[ChatMessage], think: float):
    time.sleep(think)
    done = rt.submit(GenerationRequest(tuple(messages), GREEDY, conversation_key=key)).wait()
    messages.append(ChatMessage("assistant", done.text))
    return done


A_REPEATS, LONG_B = 20, 32  # A about 830 tokens, a long B about 1300: both do not fit in 2048 cells
CASES = {
    "continue A directly": dict(b=None),
    "back to A after a short B (A stays in the context)": dict(b=1),
    "back to A after a long B, A's state from RAM": dict(b=LONG_B),
    "back to A after a long B, A's state from disk": dict(b=LONG_B, ram_mb=0, spill=True),
    "back to A after a long B, no saved state (history evaluated again)": dict(b=LONG_B, ram_mb=0),
}


def run_case(args, b: int | None, ram_mb: int = 512, spill: bool = False):
    with tempfile.TemporaryDirectory() as folder:
        rt = Runtime()
        rt.load(
            ModelConfig(
                args.model, n_ctx=2048, n_threads=args.threads, kv_ram_mb=ram_mb, kv_spill_dir=folder if spill else None
            )
        ).result()
        try:
            rt.submit(GenerationRequest((ChatMessage("user", "Hi."),), SamplingParams(max_tokens=2))).wait()
            a = conversation(DOCUMENT, A_REPEATS, "What does the town keep?")
            ask(rt, "conversation:a", a, args.think)
            if b is not None:
                ask(rt, "conversation:b", conversation(OTHER, b, "When does the bus come?"), args.think)
            a.append(ChatMessage("user", "And when do the boats leave?"))
            return ask(rt, "conversation:a", a, args.think).stats
        finally:
            rt.shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(bundled_llm_path()))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--think", type=float, default=0.5, help="seconds between a turn's answer and the next")
    args = parser.parse_args()
    print(
        f"model {Path(args.model).name}, {args.threads} threads, n_ctx 2048, {args.reps} repetitions per case, "
        f"{args.think} s between turns"
    )
    runs = {name: [] for name in CASES}
    for _ in range(args.reps):  # cases interleaved, so a change in the machine's load hits them all
        for name, case in CASES.items():
            runs[name].append(run_case(args, **case))
    print(f"{'case':<68} {'TTFT s':>7} {'ratio':>6} {'prompt':>7} {'reused':>7}")
    base = None
    for name, stats in runs.items():
        ttft = statistics.median(s.time_to_first_token_s for s in stats)
        base = base or ttft
        print(
            f"{name:<68} {ttft:>7.3f} {ttft / base:>6.2f} {stats[0].prompt_tokens:>7} "
            f"{stats[0].reused_prompt_tokens:>7}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
