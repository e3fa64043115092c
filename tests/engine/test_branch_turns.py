"""Branches made by answering: editing an earlier question or asking an answer again adds a version beside
the one it replaces, the conversation continues on the branch shown, and each branch keeps its own cached
model state (switching back reuses it). On the real bundled model and a real SQLite file."""

from __future__ import annotations

import pytest

from engine.assistant import Assistant, ChatSettings
from engine.errors import InvalidRequestError, NotFoundError
from engine.history.store import HistoryStore
from engine.runtime.backend import BackendRegistry
from engine.runtime.kv_states import _file_stem, under
from engine.runtime.runtime import Runtime
from engine.runtime.types import ModelConfig, SamplingParams
from engine.trace.store import TraceFilter, TraceStore
from engine.trace.tracing import Tracing


@pytest.fixture()
def history(tmp_path):
    store = HistoryStore(tmp_path / "locus.sqlite3")
    yield store
    store.close()


def make_assistant(runtime, history) -> Assistant:
    return Assistant(
        BackendRegistry.of(runtime),
        history,
        ChatSettings("You are brief.", SamplingParams(seed=1, max_tokens=12)),
        save_interval_s=0.05,
    )


@pytest.fixture()
def assistant(runtime, history):
    return make_assistant(runtime, history)


def done(handle):
    ended = handle.wait(120)
    assert ended.complete, ended.error
    return handle.started, ended


def texts(messages) -> list[str]:
    return [m.content for m in messages]


def test_editing_an_earlier_question_makes_a_branch_and_the_conversation_continues_there(assistant, history):
    first, _ = done(assistant.ask("Name a fruit."))
    c = first.conversation_id
    second, _ = done(assistant.ask("Name a colour.", c))
    third, _ = done(assistant.ask("Name a river.", c))
    before = texts(history.messages(c))

    edited, _ = done(assistant.resend_edited(c, "Name a tree.", message_id=second.user_message_id))
    shown = history.messages(c)
    assert [m.id for m in shown][:2] == [first.user_message_id, first.assistant_message_id]
    assert [m.id for m in shown][2:] == [edited.user_message_id, edited.assistant_message_id]
    assert shown[2].content == "Name a tree." and shown[2].parent_id == first.assistant_message_id
    assert [m.id for m in history.siblings(second.user_message_id)] == [second.user_message_id, edited.user_message_id]
    assert len(history.all_messages(c)) == 8  # the first branch is all there
    # The model saw the turns before the edited question only.
    assert [m.content for m in assistant.context_for(c)][1:4] == texts(shown)[:3]

    on_branch, _ = done(assistant.ask("Name a bird.", c))  # continues on the branch shown
    assert history.message(on_branch.user_message_id).parent_id == edited.assistant_message_id

    history.switch_to(second.user_message_id)  # back to the first branch, whole
    assert texts(history.messages(c)) == before
    back, _ = done(assistant.ask("Name a mountain.", c))
    assert history.message(back.user_message_id).parent_id == third.assistant_message_id
    assert len(history.messages(c)) == 8


def test_asking_an_earlier_answer_again_adds_a_version_beside_it(assistant, history):
    first, one = done(assistant.ask("Name a fruit."))
    c = first.conversation_id
    second, _ = done(assistant.ask("Name a colour.", c))
    again, _ = done(assistant.regenerate(c, message_id=first.assistant_message_id))
    assert again.user_message_id == first.user_message_id
    assert [m.id for m in history.siblings(first.assistant_message_id)] == [
        first.assistant_message_id,
        again.assistant_message_id,
    ]
    assert [m.id for m in history.messages(c)] == [first.user_message_id, again.assistant_message_id]
    assert history.message(first.assistant_message_id).content == one.text  # the first version stays
    history.switch_to(first.assistant_message_id)
    assert history.messages(c)[-1].id == second.assistant_message_id
    # Asking a question again by its id works too, and the last question is the default.
    by_question, _ = done(assistant.regenerate(c, message_id=second.user_message_id))
    assert len(history.siblings(second.assistant_message_id)) == 2
    last, _ = done(assistant.regenerate(c))
    assert last.user_message_id == by_question.user_message_id
    assert len(history.siblings(second.assistant_message_id)) == 3


def test_a_message_of_another_conversation_or_an_answer_to_edit_is_refused(assistant, history):
    first, _ = done(assistant.ask("Name a fruit."))
    other, _ = done(assistant.ask("Name a colour."))
    wrong = assistant.regenerate(first.conversation_id, message_id=other.assistant_message_id).wait(30)
    assert wrong.failed and isinstance(wrong.error, NotFoundError)
    answer = assistant.resend_edited(first.conversation_id, "x", message_id=first.assistant_message_id).wait(30)
    assert answer.failed and isinstance(answer.error, InvalidRequestError)
    assert len(history.all_messages(first.conversation_id)) == 2  # nothing was added


FACTS = " ".join(f"Fact {i}: the sea is calm today." for i in range(8))


@pytest.mark.parametrize("n_ctx", [2048, 256])
def test_switching_back_to_a_branch_reuses_its_cached_state(model_path, history, n_ctx):
    """In a large context the branch's cache stays in its own idle slot; in a small one the other branch
    pushes it out (saved) and it is put back on return. Either way the turn after switching back reuses the
    whole earlier prompt of its branch, not just the part both branches share."""
    rt = Runtime()
    rt.load(ModelConfig(model_path, n_ctx=n_ctx)).result(timeout=120)
    try:
        assistant = make_assistant(rt, history)
        first, _ = done(assistant.ask(f"My name is Ada and I live in a small town by the sea. {FACTS}"))
        c = first.conversation_id
        second, on_a = done(assistant.ask("Tell me about lighthouses on rocky coasts in winter.", c))
        edited, on_b = done(assistant.resend_edited(c, "What is a harbour?", message_id=second.user_message_id))
        shared = on_b.stats.reused_prompt_tokens  # the fork reused what both branches share
        assert 0 < shared < on_a.stats.prompt_tokens

        history.switch_to(second.user_message_id)
        _, back = done(assistant.ask("And in summer?", c))
        assert back.stats.reused_prompt_tokens >= on_a.stats.prompt_tokens > shared
        if n_ctx == 256:
            assert rt._generator.slots.restored >= 1  # it came back from the saved states

        history.switch_to(edited.user_message_id)
        _, back_b = done(assistant.ask("Is it deep?", c))
        assert back_b.stats.reused_prompt_tokens >= on_b.stats.prompt_tokens
    finally:
        rt.shutdown()


def test_deleting_a_branch_drops_its_traces_and_every_cached_state_of_the_conversation(model_path, history, tmp_path):
    """A small context and no RAM budget: the branch pushed out goes to a spill file. Deleting a branch
    removes the traces of its answers and every state of the conversation's branches, in the runtime and
    on disk; the other branch's traces stay, and the conversation goes on."""
    spill = tmp_path / "kv"
    traces = TraceStore(tmp_path / "traces.sqlite3")
    tracing = Tracing(traces, capture_content=True, schedule_delay_ms=50)
    rt = Runtime(tracing)
    rt.load(ModelConfig(model_path, n_ctx=256, kv_ram_mb=0, kv_spill_dir=str(spill))).result(timeout=120)
    try:
        assistant = make_assistant(rt, history)
        assistant.kv_spill_dir = spill
        first, _ = done(assistant.ask(f"My name is Ada. {FACTS}"))
        c = first.conversation_id
        second, gone = done(assistant.ask("What does quagga7 mean?", c))
        _, kept = done(assistant.resend_edited(c, "What is a harbour?", message_id=second.user_message_id))
        gen = rt._generator
        gen.store.flush()
        stem = _file_stem(f"conversation:{c}")
        assert [p for p in spill.rglob("*.kv") if p.name.startswith(stem)]  # the first branch, pushed out
        tracing.flush()
        assert traces.list_traces(TraceFilter(text="quagga7"))

        messages, traced, states = assistant.delete_branch(second.user_message_id)
        assert (messages, traced) == (2, 1) and states >= 2  # its spilled state and the shown branch's slot
        assert not [p for p in spill.rglob("*.kv") if p.name.startswith(stem)]
        keys = [s.key for s in gen.slots.slots] + list(gen.store._ram) + list(gen.store._disk)
        assert not any(k and under(k, f"conversation:{c}") for k in keys)
        assert history.search("quagga7") == [] and traces.list_traces(TraceFilter(text="quagga7")) == []
        assert b"quagga7" not in b"".join(p.read_bytes() for p in tmp_path.glob("*.sqlite3*"))
        assert {t.trace_id for t in traces.list_traces()} >= {kept.trace_id, first.trace_id}
        assert gone.trace_id not in {t.trace_id for t in traces.list_traces()}
        assert texts(history.messages(c))[-2] == "What is a harbour?"
        done(assistant.ask("Is it deep?", c))
    finally:
        rt.shutdown()
        tracing.shutdown()
        traces.close()
