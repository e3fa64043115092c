"""A process killed with SIGKILL while it writes branches loses nothing it had saved: real child processes,
a real SQLite file, the bundled model for an answer asked again."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

from engine.history.store import HistoryStore

ROOT = Path(__file__).resolve().parents[3]

WRITER = textwrap.dedent("""
    import sys
    from engine.history.store import HistoryStore
    history = HistoryStore(sys.argv[1])
    c = history.create_conversation("Tree")
    q1 = history.add_message(c.id, "user", "root question")
    a1 = history.add_message(c.id, "assistant", "root answer")
    print("READY", c.id, q1.id, a1.id, flush=True)
    n = 0
    while True:  # versions of the second question, each with an answer; every third is deleted again
        q = history.add_message(c.id, "user", f"version{n}z " + "padding " * 300, parent_id=a1.id)
        a = history.add_message(c.id, "assistant", f"answer{n}z", parent_id=q.id)
        print("WROTE", n, q.id, a.id, flush=True)
        if n % 3 == 2:
            history.delete_branch(q.id)
            print("DELETED", n, flush=True)
        else:
            history.switch_to(q1.id)
        n += 1
""")


def run_until_killed(args: list[str], ready_lines: int) -> list[list[str]]:
    """Run a child, SIGKILL it once it printed ``ready_lines`` lines; every line it printed (each printed
    after the write it names was committed)."""
    child = subprocess.Popen([sys.executable, "-c", *args], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    lines: list[list[str]] = []
    try:
        while len(lines) < ready_lines:
            line = child.stdout.readline()
            assert line, "the child ended before it was killed"
            lines.append(line.split())
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(10) == -signal.SIGKILL
        lines += [line.split() for line in child.stdout.read().splitlines() if line.strip()]
    finally:
        if child.poll() is None:
            child.kill()
        child.stdout.close()
    return lines


def check_file(db: Path) -> None:
    raw = sqlite3.connect(db)
    try:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert raw.execute("PRAGMA foreign_key_check").fetchall() == []
        raw.execute("INSERT INTO messages_fts(messages_fts) VALUES ('integrity-check')")
    finally:
        raw.close()


def test_sigkill_while_writing_branches_loses_nothing_saved(tmp_path):
    db = tmp_path / "locus.sqlite3"
    lines = run_until_killed([WRITER, str(db)], ready_lines=40)
    check_file(db)
    _, c, _q1, a1 = lines[0]
    wrote = {int(n): (int(q), int(a)) for tag, n, q, a in (x for x in lines if x[0] == "WROTE")}
    deleted = {int(x[1]) for x in lines if x[0] == "DELETED"}
    assert len(wrote) >= 20 and deleted
    store = HistoryStore(db)
    try:
        assert [m.content for m in store.path_to(int(a1))] == ["root question", "root answer"]
        versions = {m.id: m for m in store.siblings(wrote[0][0])}
        last = max(wrote)
        if last % 3 == 2 and last not in deleted:  # killed between its delete and the line saying so: either
            wrote.pop(last)
        for n, (q, a) in wrote.items():
            if n in deleted:
                assert q not in versions and store.search(f"version{n}z") == []
                continue
            assert versions[q].content.startswith(f"version{n}z ") and versions[q].parent_id == int(a1)
            assert [(m.id, m.content) for m in store.path_to(a)][2:] == [(q, versions[q].content), (a, f"answer{n}z")]
            assert [h.message_id for h in store.search(f"answer{n}z")] == [a]
        kept = [q for n, (q, _a) in wrote.items() if n not in deleted]
        assert [v for v in versions if v in set(kept)] == kept  # in order, none lost
        shown = store.messages(int(c))
        assert shown[:2] == store.path_to(int(a1)) and len(shown) in (2, 4)  # a whole branch, as last saved
        store.add_message(int(c), "user", "after the crash")  # the tree takes new writes
    finally:
        store.close()


ANSWER_AGAIN = textwrap.dedent("""
    import sys, time
    from engine.assistant import Assistant, ChatSettings
    from engine.history.store import HistoryStore
    from engine.runtime.backend import BackendRegistry
    from engine.runtime.runtime import Runtime
    from engine.runtime.types import ModelConfig, SamplingParams
    db, model = sys.argv[1], sys.argv[2]
    history = HistoryStore(db)
    runtime = Runtime()
    runtime.load(ModelConfig(model, n_ctx=4096)).result()
    assistant = Assistant(BackendRegistry.of(runtime), history, ChatSettings("", SamplingParams(seed=1,
                          max_tokens=3000, temperature=1.0)), save_interval_s=0.05)
    first = assistant.ask("Write a very long story about a lighthouse keeper.", sampling=SamplingParams(max_tokens=24))
    first.wait(120)
    c, q, a = first.started.conversation_id, first.started.user_message_id, first.started.assistant_message_id
    print("FIRST", c, q, a, flush=True)
    events = assistant.regenerate(c, message_id=a).events()
    started = next(events)
    while len(history.message(started.assistant_message_id).content) < 80:
        time.sleep(0.02)
    print("SAVED", started.assistant_message_id, flush=True)
    time.sleep(60)
""")


def test_sigkill_while_an_answer_is_asked_again_keeps_both_versions(tmp_path, model_path):
    db = tmp_path / "locus.sqlite3"
    lines = run_until_killed([ANSWER_AGAIN, str(db), model_path], ready_lines=2)
    check_file(db)
    (_, c, q, a), (_, again) = lines[0], lines[1]
    store = HistoryStore(db)
    try:
        first = store.message(int(a))
        assert first.status == "complete" and first.content.strip()
        versions = store.siblings(int(a))
        assert [m.id for m in versions] == [int(a), int(again)]
        assert versions[1].status == "streaming" and len(versions[1].content) >= 80
        assert [m.id for m in store.messages(int(c))] == [int(q), int(again)]  # the branch it was writing
        assert store.mark_interrupted() == 1
        store.switch_to(int(a))
        assert [m.content for m in store.messages(int(c))][1] == first.content
    finally:
        store.close()
