"""Branches in the conversation store (schema 7) on a real SQLite file: adding versions of a message,
switching between them, continuing on the branch shown, deleting a branch, and the upgrade from schema 6."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
from pathlib import Path

import pytest

from engine.errors import NotFoundError
from engine.history.store import SCHEMA_VERSION, HistoryStore

DATA = Path(__file__).parent / "data"


@pytest.fixture()
def store(tmp_path):
    s = HistoryStore(tmp_path / "locus.sqlite3")
    yield s
    s.close()


def contents(messages) -> list[str]:
    return [m.content for m in messages]


def exchange(store, conversation_id, question, answer, **where):
    q = store.add_message(conversation_id, "user", question, **where)
    a = store.add_message(conversation_id, "assistant", answer)
    return q, a


def test_a_message_added_after_an_earlier_one_makes_a_branch_that_is_shown(store):
    c = store.create_conversation()
    q1, a1 = exchange(store, c.id, "first?", "one")
    q2, a2 = exchange(store, c.id, "second?", "two")
    assert (q1.parent_id, a1.parent_id, q2.parent_id, a2.parent_id) == (None, q1.id, a1.id, q2.id)

    q2b, a2b = exchange(store, c.id, "second, edited?", "two again", parent_id=a1.id)  # an edit of q2
    assert contents(store.messages(c.id)) == ["first?", "one", "second, edited?", "two again"]
    assert contents(store.siblings(q2.id)) == ["second?", "second, edited?"]
    assert [m.id for m in store.siblings(q2b.id)] == [q2.id, q2b.id]
    assert [m.id for m in store.siblings(a1.id)] == [a1.id]  # one version
    assert len(store.all_messages(c.id)) == 6
    assert store.conversation(c.id).current_leaf == a2b.id

    a1b = store.add_message(c.id, "assistant", "one, regenerated", parent_id=q1.id)
    assert contents(store.messages(c.id)) == ["first?", "one, regenerated"]
    assert [m.id for m in store.siblings(a1.id)] == [a1.id, a1b.id]
    q0 = store.add_message(c.id, "user", "first, edited?", parent_id=None)  # an edit of the first question
    assert contents(store.messages(c.id)) == ["first, edited?"]
    assert [m.id for m in store.siblings(q1.id)] == [q1.id, q0.id]


def test_switching_shows_the_newest_branch_through_a_version_and_the_conversation_continues_there(store):
    c = store.create_conversation()
    _q1, a1 = exchange(store, c.id, "first?", "one")
    q2, _a2 = exchange(store, c.id, "second?", "two")
    q3, a3 = exchange(store, c.id, "third?", "three")
    q2b, _a2b = exchange(store, c.id, "other second?", "other two", parent_id=a1.id)

    shown = store.switch_to(q2.id)  # back to the first version: down to its newest message
    assert contents(shown) == ["first?", "one", "second?", "two", "third?", "three"]
    assert contents(store.messages(c.id)) == contents(shown)
    q4, a4 = exchange(store, c.id, "fourth?", "four")  # continues on the branch shown
    assert q4.parent_id == a3.id
    assert contents(store.messages(c.id))[-2:] == ["fourth?", "four"]

    store.switch_to(q2b.id)
    assert contents(store.messages(c.id)) == ["first?", "one", "other second?", "other two"]
    store.switch_to(q3.id)  # a message deep in the first branch: its newest descendant (a4)
    assert store.messages(c.id)[-1].id == a4.id
    store.switch_to(q2b.id)
    store.switch_to(a1.id)  # a message both branches share: the branch last written to below it
    assert store.messages(c.id)[-1].id == a4.id
    with pytest.raises(NotFoundError):
        store.switch_to(9999)
    with pytest.raises(NotFoundError):
        store.siblings(9999)


def test_a_parent_from_another_conversation_is_refused(store):
    c, d = store.create_conversation(), store.create_conversation()
    q = store.add_message(c.id, "user", "mine")
    with pytest.raises(ValueError):
        store.add_message(d.id, "user", "not yours", parent_id=q.id)
    with pytest.raises(ValueError):
        store.add_message(d.id, "user", "what kind?", kind="poem")
    assert store.messages(d.id) == []


def test_deleting_a_branch_removes_it_and_its_text_and_shows_another_version(store, tmp_path):
    c = store.create_conversation()
    _q1, a1 = exchange(store, c.id, "first?", "one")
    q2, _a2 = exchange(store, c.id, "zebra question?", "zebra answer")
    exchange(store, c.id, "zebra follow-up?", "more zebras")
    q2b, _a2b = exchange(store, c.id, "giraffe question?", "giraffe answer", parent_id=a1.id)
    q2c, _ = exchange(store, c.id, "okapi question?", "okapi answer", parent_id=a1.id)
    store.switch_to(q2b.id)

    def files() -> bytes:
        return b"".join(p.read_bytes() for p in tmp_path.glob("locus.sqlite3*"))

    assert b"zebra" in files() and store.search("zebra")
    assert store.delete_branch(q2.id) == 4  # the question, its answer and the follow-up exchange
    assert b"zebra" not in files() and store.search("zebra") == []
    assert contents(store.messages(c.id)) == ["first?", "one", "giraffe question?", "giraffe answer"]  # untouched
    assert [m.id for m in store.siblings(q2b.id)] == [q2b.id, q2c.id]

    assert store.delete_branch(q2b.id) == 2  # the branch shown: the next version is shown instead
    assert contents(store.messages(c.id)) == ["first?", "one", "okapi question?", "okapi answer"]
    assert store.delete_branch(q2c.id) == 2  # the last version: the path up to its parent is shown
    assert contents(store.messages(c.id)) == ["first?", "one"]
    assert store.search("giraffe") == [] and store.search("okapi") == []
    with contextlib.closing(sqlite3.connect(store.path)) as reader:
        reader.execute("INSERT INTO messages_fts(messages_fts) VALUES ('integrity-check')")
    with pytest.raises(NotFoundError):
        store.delete_branch(q2.id)


def test_a_long_branch_and_its_conversation_are_deleted_whole(store):
    """Deeper than SQLite's trigger recursion limit (1000): no cascade along the parent links is needed."""
    c = store.create_conversation()
    first = store.add_message(c.id, "user", "start")
    for n in range(1200):
        store.add_message(c.id, "assistant" if n % 2 == 0 else "user", f"turn {n}")
    second = store.add_message(c.id, "user", "another start", parent_id=None)
    assert store.delete_branch(first.id) == 1201
    assert contents(store.messages(c.id)) == ["another start"] and store.messages(c.id)[0].id == second.id
    for n in range(1200):
        store.add_message(c.id, "assistant" if n % 2 == 0 else "user", f"turn {n}")
    assert store.delete_conversation(c.id) == 1201


def test_an_answer_removed_alone_leaves_its_question_shown(store):
    """The writer removes an answer stopped before it said anything: the branch shows its question again."""
    c = store.create_conversation()
    _q1, _a1 = exchange(store, c.id, "first?", "one")
    q2 = store.add_message(c.id, "user", "second?")
    a2 = store.add_message(c.id, "assistant", "", status="streaming")
    store.delete_message(a2.id)
    assert store.conversation(c.id).current_leaf == q2.id
    assert contents(store.messages(c.id)) == ["first?", "one", "second?"]
    assert store.add_message(c.id, "assistant", "two").parent_id == q2.id


def test_summaries_and_who_answered_are_kept(store):
    c = store.create_conversation()
    q1, a1 = exchange(store, c.id, "first?", "one")
    note = store.add_message(c.id, "system", "Summary: one", kind="summary")
    answered = {"assistant": None, "model": "tiny", "sampling": {"temperature": 0.2}}
    store.update_message(a1.id, answered_by=answered)
    shown = store.messages(c.id)
    assert [(m.kind, m.parent_id) for m in shown] == [("message", None), ("message", q1.id), ("summary", a1.id)]
    assert shown[1].answered_by == answered and store.message(note.id).kind == "summary"
    assert store.add_message(c.id, "user", "q", answered_by={"model": "x"}).answered_by == {"model": "x"}


def test_a_database_of_schema_6_becomes_one_branch_per_conversation(tmp_path):
    """data/schema6.sqlite3 was written by the Locus of schema 6 (before branches): two conversations whose
    messages interleave by id, one with options and an approved tool, a cancelled answer, an answer with
    sources, and an empty conversation. After the upgrade each is one branch, shown whole, in its order."""
    path = tmp_path / "locus.sqlite3"
    shutil.copy(DATA / "schema6.sqlite3", path)
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 6
        assert "parent_id" not in {r[1] for r in db.execute("PRAGMA table_info(messages)")}
        before = db.execute("SELECT id, conversation_id, role, content, status FROM messages").fetchall()
    store = HistoryStore(path)
    try:
        moon = next(c for c in store.conversations() if c.title == "How far is the moon?")
        otters = next(c for c in store.conversations() if c.title == "Otters")
        empty = next(c for c in store.conversations() if c.title == "New conversation")
        assert (moon.collections, moon.backend, moon.tools, moon.approved_tools) == (
            ["notes"],
            "local",
            ["calculator"],
            ("calculator",),
        )
        assert (moon.current_leaf, moon.project_id, moon.assistant_id, moon.pinned) == (None, None, None, False)
        shown = store.messages(moon.id)
        assert contents(shown) == [
            "How far is the moon?",
            "About 384,400 km.",
            "And the sun?",
            "About 150 million km.",
            "Which is closer to Mars?",
            "The moon is not; Phobos is.",
        ]
        assert [m.parent_id for m in shown] == [None] + [m.id for m in shown[:-1]]  # across the other's ids
        assert shown[3].stats == {"tokens": 6} and {m.kind for m in shown} == {"message"}
        other = store.messages(otters.id)
        assert [m.status for m in other] == ["complete", "cancelled", "complete", "complete"]
        assert other[-1].sources == [{"title": "otters.md", "page": 1}]
        assert [m.parent_id for m in other] == [None] + [m.id for m in other[:-1]]
        assert store.messages(empty.id) == [] and store.all_messages(empty.id) == []
        after = [(m.id, m.conversation_id, m.role, m.content, m.status) for m in store.all_messages(moon.id)]
        after += [(m.id, m.conversation_id, m.role, m.content, m.status) for m in store.all_messages(otters.id)]
        assert sorted(after) == sorted(before)  # nothing lost
        assert [h.conversation.id for h in store.search("Phobos")] == [moon.id]
        assert [h.conversation.id for h in store.search("otters")] == [otters.id]

        # The upgraded conversation branches and continues like a new one.
        sun = shown[2]
        store.add_message(moon.id, "user", "And Jupiter?", parent_id=shown[1].id)
        assert contents(store.siblings(sun.id)) == ["And the sun?", "And Jupiter?"]
        store.switch_to(sun.id)
        assert store.add_message(moon.id, "user", "And Venus?").parent_id == shown[-1].id
    finally:
        store.close()

    store = HistoryStore(path)  # opened again: nothing migrates twice
    try:
        assert contents(store.messages(moon.id))[-1] == "And Venus?"
        assert store.messages(moon.id)[0].parent_id is None
    finally:
        store.close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 7
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"projects", "assistants"} <= tables
        columns = {r[1] for r in db.execute("PRAGMA table_info(conversations)")}
        assert {"current_leaf", "project_id", "assistant_id", "pinned"} <= columns
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        db.execute("INSERT INTO messages_fts(messages_fts) VALUES ('integrity-check')")


def test_an_answer_asked_again_and_removed_at_once_shows_the_earlier_answer(store):
    """A new version of an answer stopped before it said anything is removed by the writer: the branch
    shows the earlier answer (and what followed it) again, not a question without its answer."""
    c = store.create_conversation()
    q1, a1 = exchange(store, c.id, "first?", "one")
    q2, a2 = exchange(store, c.id, "second?", "two")
    again = store.add_message(c.id, "assistant", "", status="streaming", parent_id=q1.id)
    assert contents(store.messages(c.id)) == ["first?", ""]
    store.delete_message(again.id)
    assert [m.id for m in store.messages(c.id)] == [q1.id, a1.id, q2.id, a2.id]
