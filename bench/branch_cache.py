"""How much of the prompt a turn reuses after switching back to a branch: one KV key per branch (what Locus
does) against one key per conversation (the reference: the other branch's turn overwrote the cache).

    python bench/branch_cache.py [--n-ctx 2048 256]

Each run: ask two questions, edit the second (a new branch), switch back to the first branch and ask again;
prints the prompt tokens of that last turn and how many of them came from the cache. Token counts, not
times: the machine's load does not change them. n_ctx 256 makes the other branch push the first one out of
the context (saved, then put back); 2048 keeps both in idle slots.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import engine.turns
from engine.assistant import Assistant, ChatSettings
from engine.history.store import HistoryStore
from engine.models.bundled import bundled_llm_path
from engine.runtime.backend import BackendRegistry
from engine.runtime.runtime import Runtime
from engine.runtime.types import ModelConfig, SamplingParams

FACTS = " ".join(f"Fact {i}: the sea is calm today." for i in range(8))


def switch_back(n_ctx: int, per_branch: bool) -> tuple[int, int]:
    real = engine.turns.branch_key
    if not per_branch:
        engine.turns.branch_key = lambda conversation_id, branch=(): real(conversation_id)
    rt = Runtime()
    try:
        rt.load(ModelConfig(str(bundled_llm_path()), n_ctx=n_ctx)).result(timeout=120)
        with tempfile.TemporaryDirectory() as folder:
            history = HistoryStore(Path(folder) / "locus.sqlite3")
            assistant = Assistant(
                BackendRegistry.of(rt), history, ChatSettings("You are brief.", SamplingParams(seed=1, max_tokens=12))
            )
            first = assistant.ask(f"My name is Ada and I live in a small town by the sea. {FACTS}")
            first.wait(120)
            c = first.started.conversation_id
            second = assistant.ask("Tell me about lighthouses on rocky coasts in winter.", c)
            second.wait(120)
            assistant.resend_edited(c, "What is a harbour?", message_id=second.started.user_message_id).wait(120)
            history.switch_to(second.started.user_message_id)
            back = assistant.ask("And in summer?", c).wait(120)
            assistant.close()
            history.close()
            return back.stats.prompt_tokens, back.stats.reused_prompt_tokens
    finally:
        engine.turns.branch_key = real
        rt.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-ctx", type=int, nargs="+", default=[2048, 256])
    args = parser.parse_args()
    for n_ctx in args.n_ctx:
        for per_branch in (True, False):
            prompt, reused = switch_back(n_ctx, per_branch)
            keys = "one key per branch      " if per_branch else "one key per conversation"
            print(f"n_ctx {n_ctx:5d}  {keys}  prompt {prompt:4d} tokens, reused {reused:4d} ({reused / prompt:.0%})")


if __name__ == "__main__":
    main()
