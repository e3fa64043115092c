"""Copies, searches and deletes of projects' conversations: a compacted conversation copied whole, a copy's
traces kept apart from its original's, search within a project past the busiest other conversations, and a
project deleted with the conversations the user confirmed (their traces and spilled model states gone too).
On a real history database, the real bundled model, a real trace store and real spill files."""

from __future__ import annotations

import time

import pytest

from engine.assistant import ChatSettings
from engine.compaction import plan, save_summary
from engine.errors import NotFoundError
from engine.history.projects import Projects
from engine.history.store import HistoryStore
from engine.runtime.types import SamplingParams
from tests.traced_engine import TracedEngine


@pytest.fixture()
def history(tmp_path):
    store = HistoryStore(tmp_path / "locus.sqlite3")
    yield store
    store.close()


@pytest.fixture()
def projects(history):
    return Projects(history)


def wait_for(condition, what: str, timeout_s: float = 120.0):
    deadline = time.monotonic() + timeout_s
    while not (found := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)
    return found


def test_a_compacted_conversation_is_copied_with_its_summary_and_earlier_turns(projects, history):
    original = history.create_conversation("Long talk")
    for text in ("q1", "a1", "q2", "a2"):
        history.add_message(original.id, "user" if text.startswith("q") else "assistant", text)
    found = plan(history.messages(original.id), keep_exchanges=1)
    assert found is not None and found.keep is not None and found.keep.content == "q2"
    summary = save_summary(history, found, "SUM")  # its id is above q2's and a2's, which now follow it
    shown = [m.content for m in history.messages(original.id)]
    assert shown == ["q1", "a1", "SUM", "q2", "a2"]

    copy = projects.duplicate(original.id)

    assert [m.content for m in history.messages(copy.id)] == shown
    copied = {m.content: m for m in history.all_messages(copy.id)}
    assert copied["SUM"].kind == summary.kind and copied["q2"].parent_id == copied["SUM"].id
    assert [m for m in copied.values() if m.parent_id is None] == [copied["q1"]]  # one root, as in the original


def test_search_within_a_project_finds_matches_past_the_busiest_other_conversations(projects, history):
    work = projects.create("Work")
    wanted = history.create_conversation("notes")
    projects.move(wanted.id, work.id)
    history.add_message(wanted.id, "user", "the harbour ledger")
    # Many conversations outside the project mention the word more often (they rank first).
    for n in range(60):
        other = history.create_conversation(f"ledger talk {n}")
        for _ in range(5):
            history.add_message(other.id, "user", "ledger ledger ledger ledger")
    assert [h.conversation.id for h in projects.search("ledger", work.id, limit=5)] == [wanted.id]
    assert [h.conversation.id for h in history.search("ledger", 5, project_id=work.id)] == [wanted.id]
    loose = history.search("ledger", 100, project_id=None)
    assert len(loose) == 60 and wanted.id not in {h.conversation.id for h in loose}


def test_a_project_deleted_with_its_conversations_keeps_one_added_after_the_user_confirmed(projects, history):
    project = projects.create("Old")
    confirmed = history.create_conversation("confirmed")
    projects.move(confirmed.id, project.id)
    ids = projects.conversation_ids(project.id)  # what the confirmation listed
    added = history.create_conversation("added since")
    projects.move(added.id, project.id)

    result = projects.delete(project.id, with_conversations=True, conversations=ids)

    assert result.deleted == 1 and result.moved_out == 1
    with pytest.raises(NotFoundError):
        history.conversation(confirmed.id)
    assert history.conversation(added.id).project_id is None and history.conversation(added.id).title == "added since"


class Traced(TracedEngine):
    """The bundled model with a real trace store, and a context too small to keep an idle conversation's
    state, which goes to a spill file."""

    def __init__(self, root, model_path):
        self.spill = root / "kv"
        super().__init__(
            root,
            model_path,
            ChatSettings("", SamplingParams(seed=1, temperature=0.0, max_tokens=4)),
            config={"n_ctx": 256, "n_parallel": 1, "kv_ram_mb": 0, "kv_spill_dir": str(self.spill)},
            traces=True,
            kv_spill_dir=self.spill,
            save_interval_s=0.05,
        )
        self.projects = Projects(self.history)

    def ask(self, text: str, conversation_id: int | None = None):
        answer = self.assistant.ask(text, conversation_id=conversation_id)
        assert answer.wait(120).complete
        self.tracing.flush()
        return answer

    def stored(self, trace_id: str) -> bool:
        return bool(self.store.list_traces()) and trace_id in {t.trace_id for t in self.store.list_traces()}


@pytest.fixture()
def traced(tmp_path, model_path):
    t = Traced(tmp_path, model_path)
    yield t
    t.close()


def test_a_copy_has_no_trace_of_its_own_and_deleting_its_branch_keeps_the_originals(traced):
    answer = traced.ask("Say hi.")
    original, trace_id = answer.started.conversation_id, answer.started.trace_id
    assert traced.stored(trace_id)
    (reply,) = [m for m in traced.history.messages(original) if m.role == "assistant"]
    assert reply.stats["trace_id"] == trace_id

    copy = traced.projects.duplicate(original)
    copied = [m for m in traced.history.messages(copy.id) if m.role == "assistant"]
    assert copied and "trace_id" not in copied[0].stats  # "Show trace" has nothing to open on the copy
    assert {k: v for k, v in reply.stats.items() if k != "trace_id"} == copied[0].stats

    # Deleting the copy's first question (its whole branch) leaves the original's trace.
    first = traced.history.messages(copy.id)[0]
    messages, traces, _states = traced.assistant.delete_branch(first.id)
    assert messages == 2 and traces == 0 and traced.stored(trace_id)

    # Even a message that names another conversation's trace (a copy made before this fix) cannot delete it.
    assert traced.store.forget_traces([trace_id], copy.id) == 0 and traced.stored(trace_id)
    assert traced.store.forget_traces([trace_id], original) == 1 and not traced.stored(trace_id)


def test_deleting_a_project_with_its_conversations_removes_their_traces_and_spilled_states(traced):
    project = traced.projects.create("Secret")
    # Longer than half the context: while idle, its state is copied to a spill file (another may need the room).
    words = " ".join(f"word{n}" for n in range(40))
    answer = traced.ask(f"The launch code is swordfish. Keep these words: {words}")
    conversation, trace_id = answer.started.conversation_id, answer.started.trace_id
    traced.projects.move(conversation, project.id)
    mine = _stem(conversation) + "-"
    spilled = wait_for(
        lambda: [p for p in traced.spill.rglob("*.kv") if p.name.startswith(mine)], "the conversation's state spilled"
    )
    kept = traced.ask("Say hello.")
    assert traced.stored(trace_id) and traced.stored(kept.started.trace_id)

    result = traced.projects.delete(
        project.id,
        with_conversations=True,
        delete_conversation=traced.assistant.delete_conversation,
        conversations=[conversation],
    )

    assert result.deleted == 1
    assert not traced.stored(trace_id) and traced.stored(kept.started.trace_id)
    assert traced.history.search("swordfish") == []
    assert not any(p.exists() for p in spilled)
    assert not [p for p in traced.spill.rglob("*.kv") if p.name.startswith(mine)]


def _stem(conversation_id: int) -> str:
    from engine.runtime.kv_states import _file_stem
    from engine.turns import branch_key

    return _file_stem(branch_key(conversation_id))
