"""History that stalls: what a slow conversation database costs the batch's decoding, with the history
writer (engine/history/writer.py: the runtime thread only hands text over) beside a direct tap (the
runtime thread saves the growing answer itself every 0.5 s, as Locus did before issue 17).

Every partial save of the history store used here blocks ``--stall`` seconds first (a search, a CLI in
another process or a slow disk holding SQLite's lock). A batch of ``--requests`` answers runs on the
bundled model at once, greedily, for at most ``--seconds``; its speed is the completion tokens of all of
them over the time from the first submit to the last end (what is left is cancelled at the limit). The
same batch with no history at all is the reference. Then the cost of one partial save of a growing
answer, with the search index re-indexing all of it on every save (schema 4's triggers) and following
only the final text (schema 5).

    .venv/bin/python bench/history_stall.py [--requests 4] [--tokens 96] [--stall 2.0] [--seconds 30]
        [--threads N] [--model PATH]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.history.store import HistoryStore
from engine.history.writer import HistoryWriter
from engine.models.bundled import bundled_llm_path
from engine.runtime.native import default_threads
from engine.runtime.runtime import Runtime
from engine.runtime.types import ChatMessage, Done, GenerationRequest, ModelConfig, SamplingParams, Token

SAVE_INTERVAL_S = 0.5
TOPICS = [
    "a lighthouse keeper",
    "a river barge",
    "a mountain village",
    "a lost letter",
    "a winter market",
    "a clockmaker",
    "a ferry crossing",
    "an old library",
]


class StallingHistory(HistoryStore):
    """The real store, each partial save of an answer blocked ``stall_s`` first (another holder of the lock)."""

    def __init__(self, path: Path, stall_s: float):
        super().__init__(path)
        self.stall_s = stall_s
        self.saves = 0

    def update_message(self, message_id, **changes):
        time.sleep(self.stall_s)
        self.saves += 1
        return super().update_message(message_id, **changes)


class DirectTap:
    """Before issue 17: the runtime thread saves the growing answer itself, every SAVE_INTERVAL_S."""

    def __init__(self, history: HistoryStore, message_id: int):
        self.history, self.message_id = history, message_id
        self.parts: list[str] = []
        self.last = time.monotonic()

    def __call__(self, event) -> None:
        if isinstance(event, Token):
            self.parts.append(event.text)
            if time.monotonic() - self.last >= SAVE_INTERVAL_S:
                self.history.update_message(self.message_id, content="".join(self.parts))
                self.last = time.monotonic()


def batch(
    runtime: Runtime, history: HistoryStore | None, mode: str, requests: int, tokens: int, seconds: float
) -> tuple[float, int, float]:
    """One batch: (tokens/s, completion tokens, wall seconds)."""
    writer = HistoryWriter(history, save_interval_s=SAVE_INTERVAL_S) if mode == "writer" else None
    handles, ends = [], []
    lock = threading.Lock()
    started = time.perf_counter()
    for i in range(requests):
        tap = None
        if history is not None:
            conversation = history.create_conversation()
            history.add_message(conversation.id, "user", f"A story about {TOPICS[i % len(TOPICS)]}")
            message = history.add_message(conversation.id, "assistant", "", status="streaming").id
            if writer is not None:
                tap = (lambda m: lambda e: writer.grow(m, e.text) if isinstance(e, Token) else None)(message)
            else:
                tap = DirectTap(history, message)

        def done(event, lock=lock):
            if isinstance(event, Done):
                with lock:
                    ends.append((time.perf_counter(), event.stats.completion_tokens))

        request = GenerationRequest(
            (ChatMessage("user", f"Write a long story about {TOPICS[i % len(TOPICS)]}."),),
            SamplingParams(temperature=0.0, seed=1, max_tokens=tokens),
        )
        handles.append(runtime.submit(request, done, tap=tap))
    deadline = started + seconds
    for handle in handles:
        if handle.wait(max(0.0, deadline - time.perf_counter())) is None:
            break
    for handle in handles:
        handle.cancel()
    for handle in handles:
        handle.wait(600)  # a direct tap may still be inside a stalled save
    last = max(t for t, _ in ends)
    total = sum(n for _, n in ends)
    if writer is not None:
        writer.close(timeout=600)  # its backlog is saved off the clock
    return total / (last - started), total, last - started


def save_cost(
    folder: Path, schema4: bool, saves: int = 200, piece: str = "the heron waits by the sluice gate "
) -> float:
    """Milliseconds per partial save of one growing answer."""
    store = HistoryStore(folder / f"fts-{'4' if schema4 else '5'}.sqlite3")
    if schema4:  # schema 4's triggers: every content update re-indexes the whole message
        store.close()
        db = sqlite3.connect(folder / "fts-4.sqlite3")
        db.executescript("""
            DROP TRIGGER messages_ai; DROP TRIGGER messages_ad; DROP TRIGGER messages_au;
            CREATE TRIGGER messages_ai AFTER INSERT ON messages BEGIN
                INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content); END;
            CREATE TRIGGER messages_ad AFTER DELETE ON messages BEGIN
                INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content); END;
            CREATE TRIGGER messages_au AFTER UPDATE OF content ON messages BEGIN
                INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
                INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content); END;
        """)
        db.close()
        store = HistoryStore(folder / "fts-4.sqlite3")  # triggers of those names exist: they are kept as made
    conversation = store.create_conversation()
    message = store.add_message(conversation.id, "assistant", "", status="streaming").id
    text, took = "", []
    for _ in range(saves):
        text += piece
        t = time.perf_counter()
        store.update_message(message, content=text)
        took.append(time.perf_counter() - t)
    store.close()
    return statistics.mean(took) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=96)
    parser.add_argument("--stall", type=float, default=2.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=3, help="each round runs the three in turn; medians shown")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--model", default=str(bundled_llm_path()))
    args = parser.parse_args()

    runtime = Runtime()
    info = runtime.load(
        ModelConfig(args.model, n_ctx=4096, n_parallel=args.requests, n_threads=args.threads or default_threads())
    ).result()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        batch(runtime, None, "none", args.requests, 16, 60)  # warm-up
        runs: dict[str, list[tuple[float, int, float, int]]] = {"none": [], "writer": [], "direct tap": []}
        for r in range(args.rounds):  # in turn, so that the machine's load falls on all three alike
            for mode in runs:
                history = None if mode == "none" else StallingHistory(folder / f"{mode}-{r}.sqlite3", args.stall)
                speed, total, wall = batch(runtime, history, mode, args.requests, args.tokens, args.seconds)
                runs[mode].append((speed, total, wall, history.saves if history is not None else 0))
                if history is not None:
                    history.close()
        rows = [(mode, *(statistics.median(x[i] for x in results) for i in range(4))) for mode, results in runs.items()]
        runtime.shutdown()
        old_ms, new_ms = save_cost(folder, True), save_cost(folder, False)

    print(
        f"model: {info.name}, threads {info.n_threads}, a batch of {args.requests} greedy answers of up to "
        f"{args.tokens} tokens, each partial save stalled {args.stall:.1f} s, at most {args.seconds:.0f} s; "
        f"medians of {args.rounds} rounds"
    )
    print(f"{'history':<12}{'tokens/s':>10}{'tokens':>8}{'wall s':>9}{'saves':>7}")
    for mode, speed, total, wall, saves in rows:
        print(f"{mode:<12}{speed:>10.1f}{total:>8.0f}{wall:>9.1f}{saves:>7.0f}")
    print(f"\nOne partial save of a growing answer (200 saves, up to {200 * 35} characters):")
    print(f"  search index re-indexes it every save (schema 4): {old_ms:.2f} ms")
    print(f"  search index follows the final text only (5):    {new_ms:.2f} ms")


if __name__ == "__main__":
    main()
