"""Chat over saved conversations: what is saved when, on the real model and a real SQLite file."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading

import pytest

from engine.assistant import Assistant, ChatSettings
from engine.errors import InvalidRequestError, NotFoundError
from engine.history.store import HistoryStore
from engine.runtime.backend import BackendRegistry
from engine.runtime.types import Done, Failed, SamplingParams, Started, Token


@pytest.fixture()
def history(tmp_path):
    store = HistoryStore(tmp_path / "locus.sqlite3")
    yield store
    store.close()


@pytest.fixture()
def assistant(runtime, history):
    return Assistant(BackendRegistry.of(runtime), history, ChatSettings("You are brief.", SamplingParams(seed=1, max_tokens=40)),
                     save_interval_s=0.05)


def test_question_is_saved_before_generation_starts(assistant, history):
    seen_at_start = []

    def on_event(event):
        if isinstance(event, Started):
            seen_at_start.extend((m.role, m.content, m.status) for m in history.messages(answer.conversation_id))

    gate = threading.Lock()
    with gate:  # hold events until `answer` exists
        answer = assistant.ask("What is a haiku?", on_event=lambda e: (gate.acquire(), gate.release(), on_event(e)))
    assert isinstance(answer.wait(60), Done)
    assert seen_at_start == [("user", "What is a haiku?", "complete"), ("assistant", "", "streaming")]
    saved = history.messages(answer.conversation_id)
    assert saved[1].status == "complete" and saved[1].content == answer.request.result.text
    assert saved[1].stats["completion_tokens"] > 0 and saved[1].stats["model"]
    assert history.conversation(answer.conversation_id).title == "What is a haiku?"


def test_follow_up_sees_the_conversation_and_reuses_its_cache(assistant, history):
    first = assistant.ask("My name is Ada. Remember it.")
    first.wait(60)
    second = assistant.ask("What is my name?", first.conversation_id)
    done = second.wait(60)
    assert done.stats.reused_prompt_tokens > 20
    context = assistant.context_for(first.conversation_id)
    assert [m.role for m in context] == ["system", "user", "assistant", "user", "assistant"]


def test_cancelled_answer_is_kept_as_partial(runtime, history):
    assistant = Assistant(BackendRegistry.of(runtime), history, ChatSettings("", SamplingParams(seed=3, max_tokens=400)),
                          save_interval_s=0.05)
    tokens = []
    answer = assistant.ask("Write a long essay about rivers.",
                           on_event=lambda e: isinstance(e, Token) and (tokens.append(e), len(tokens) == 8
                                                                        and answer.cancel()))
    done = answer.wait(60)
    assert done.stats.finish_reason == "cancelled"
    saved = history.message(answer.assistant_message_id)
    assert saved.status == "cancelled" and saved.is_partial
    assert saved.content == done.text and saved.content.strip()
    # The partial answer stays part of the conversation the model sees next time.
    assert assistant.context_for(answer.conversation_id)[-1].content == saved.content


def test_cancel_before_any_text_leaves_no_empty_answer(assistant, runtime, history):
    blocker = assistant.ask("Write a long essay about mountains.")
    queued = assistant.ask("Hello?")
    queued.cancel()
    blocker.wait(60)
    assert queued.wait(60).stats.finish_reason == "cancelled"
    assert [m.role for m in history.messages(queued.conversation_id)] == ["user"]


def test_regenerate_replaces_the_last_answer(assistant, history):
    first = assistant.ask("Name a fruit.")
    first.wait(60)
    again = assistant.regenerate(first.conversation_id)
    assert isinstance(again.wait(60), Done)
    messages = history.messages(first.conversation_id)
    assert [m.role for m in messages] == ["user", "assistant"]
    assert messages[1].id == again.assistant_message_id != first.assistant_message_id


def test_edit_and_resend_replaces_the_last_exchange(assistant, history):
    first = assistant.ask("Name a colour.")
    first.wait(60)
    edited = assistant.resend_edited(first.conversation_id, "Name an animal.")
    edited.wait(60)
    messages = history.messages(first.conversation_id)
    assert [(m.role, m.content) for m in messages][0] == ("user", "Name an animal.")
    assert len(messages) == 2 and messages[1].status == "complete"


def test_failures_are_saved_with_their_reason(history):
    from engine.runtime.runtime import Runtime

    rt = Runtime()  # no model loaded
    try:
        answer = Assistant(BackendRegistry.of(rt), history).ask("Anyone there?")
        result = answer.wait(10)
    finally:
        rt.shutdown()
    assert isinstance(result, Failed)
    saved = history.message(answer.assistant_message_id)
    assert saved.status == "failed" and "No model is loaded" in saved.error


def test_bad_requests_are_refused(assistant):
    with pytest.raises(InvalidRequestError):
        assistant.ask("   ")
    with pytest.raises(NotFoundError):
        assistant.ask("hello", conversation_id=999)
    with pytest.raises(NotFoundError):
        assistant.regenerate(assistant.history.create_conversation().id)


CHILD = textwrap.dedent("""
    import sys, time
    from engine.assistant import Assistant, ChatSettings
    from engine.history.store import HistoryStore
    from engine.runtime.backend import BackendRegistry
    from engine.runtime.runtime import Runtime
    from engine.runtime.types import ModelConfig, SamplingParams
    db, model = sys.argv[1], sys.argv[2]
    history = HistoryStore(db)
    earlier = history.create_conversation("Earlier chat")
    history.add_message(earlier.id, "user", "an earlier question")
    history.add_message(earlier.id, "assistant", "an earlier answer")
    runtime = Runtime()
    runtime.load(ModelConfig(model, n_ctx=4096)).result()
    assistant = Assistant(BackendRegistry.of(runtime), history, ChatSettings("", SamplingParams(seed=1, max_tokens=3000,
                          temperature=1.0)), save_interval_s=0.05)
    answer = assistant.ask("Write a very long story about a lighthouse keeper.")
    while len(history.message(answer.assistant_message_id).content) < 80:
        time.sleep(0.02)
    print("SAVED", answer.conversation_id, answer.assistant_message_id, flush=True)
    time.sleep(60)
""")


def test_sigkill_mid_answer_loses_nothing_saved(tmp_path, model_path):
    db = tmp_path / "locus.sqlite3"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(db), model_path], stdout=subprocess.PIPE, text=True,
                             cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    try:
        line = child.stdout.readline().split()
        assert line and line[0] == "SAVED", "the child never saved a partial answer"
        conversation_id, message_id = int(line[1]), int(line[2])
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(10) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
    raw = sqlite3.connect(db)
    assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    raw.close()
    store = HistoryStore(db)
    try:
        earlier = [c for c in store.conversations() if c.title == "Earlier chat"][0]
        assert [m.content for m in store.messages(earlier.id)] == ["an earlier question", "an earlier answer"]
        question, answer = store.messages(conversation_id)
        assert question.content == "Write a very long story about a lighthouse keeper."
        assert answer.id == message_id and answer.status == "streaming" and len(answer.content) >= 80
        assert store.mark_interrupted() == 1
        assert store.message(message_id).status == "interrupted"
    finally:
        store.close()


def test_a_question_that_cannot_be_answered_is_not_left_behind(assistant, history):
    from engine.assistant import DocumentsUnavailable

    conversation = history.create_conversation()
    history.set_collections(conversation.id, [])  # answers from documents, but no index is open
    for _ in range(2):
        with pytest.raises(DocumentsUnavailable):
            assistant.ask("Anything in my files?", conversation.id)
    assert history.messages(conversation.id) == []
    with pytest.raises(DocumentsUnavailable):
        assistant.ask("A new conversation that fails", collections=[])
    assert [c.id for c in history.conversations()] == [conversation.id]  # the failed new one is gone
