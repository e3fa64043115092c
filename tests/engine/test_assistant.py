"""Answers over saved conversations: what is saved when, on the real model and a real SQLite file."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading

import pytest

from engine.answer import AnswerEnded, AnswerStarted, Generating, TextDelta
from engine.assistant import Assistant, ChatSettings
from engine.errors import InvalidRequestError, NotFoundError
from engine.history.store import HistoryStore
from engine.runtime.backend import BackendRegistry
from engine.runtime.types import SamplingParams


@pytest.fixture()
def history(tmp_path):
    store = HistoryStore(tmp_path / "locus.sqlite3")
    yield store
    store.close()


@pytest.fixture()
def assistant(runtime, history):
    return Assistant(
        BackendRegistry.of(runtime),
        history,
        ChatSettings("You are brief.", SamplingParams(seed=1, max_tokens=40)),
        save_interval_s=0.05,
    )


def test_question_is_saved_before_generation_starts(assistant, history):
    seen_at_start = []
    events = []

    def on_event(event):
        events.append(event)
        if isinstance(event, Generating):
            seen_at_start.extend((m.role, m.content, m.status) for m in history.messages(events[0].conversation_id))

    answer = assistant.ask("What is a haiku?", on_event=on_event)
    ended = answer.wait(60)
    assert ended.complete and isinstance(events[0], AnswerStarted) and events[-1] is ended
    assert sum(isinstance(e, AnswerEnded) for e in events) == 1
    started = answer.started
    assert seen_at_start == [("user", "What is a haiku?", "complete"), ("assistant", "", "streaming")]
    assert [m.id for m in history.messages(started.conversation_id)] == [
        started.user_message_id,
        started.assistant_message_id,
    ]
    saved = history.messages(started.conversation_id)
    assert saved[1].status == "complete" and saved[1].content == ended.text
    assert ended.text == "".join(e.text for e in events if isinstance(e, TextDelta))
    assert saved[1].stats["completion_tokens"] > 0 and saved[1].stats["model"]
    assert history.conversation(started.conversation_id).title == "What is a haiku?"


def test_follow_up_sees_the_conversation_and_reuses_its_cache(assistant, history):
    first = assistant.ask("My name is Ada. Remember it.")
    first.wait(60)
    second = assistant.ask("What is my name?", first.started.conversation_id)
    done = second.wait(60)
    assert done.stats.reused_prompt_tokens > 20
    context = assistant.context_for(first.started.conversation_id)
    assert [m.role for m in context] == ["system", "user", "assistant", "user", "assistant"]


def test_cancelled_answer_is_kept_as_partial(runtime, history):
    assistant = Assistant(
        BackendRegistry.of(runtime),
        history,
        ChatSettings("", SamplingParams(seed=3, max_tokens=400)),
        save_interval_s=0.05,
    )
    tokens = []
    answer = assistant.ask(
        "Write a long essay about rivers.",
        on_event=lambda e: isinstance(e, TextDelta) and (tokens.append(e), len(tokens) == 8 and answer.cancel()),
    )
    done = answer.wait(60)
    assert done.cancelled and done.stats.finish_reason == "cancelled"
    saved = history.message(answer.started.assistant_message_id)
    assert saved.status == "cancelled" and saved.is_partial
    assert saved.content == done.text and saved.content.strip()
    # The partial answer stays part of the conversation the model sees next time.
    assert assistant.context_for(answer.started.conversation_id)[-1].content == saved.content


def test_cancel_before_any_text_leaves_no_empty_answer(assistant, runtime, history):
    blocker = assistant.ask("Write a long essay about mountains.")
    queued = assistant.ask("Hello?")
    queued.cancel()  # before anything of it was saved: it still ends as asked, and stopped
    blocker.wait(60)
    ended = queued.wait(60)
    assert ended.cancelled and ended.text == ""
    assert [m.role for m in history.messages(queued.started.conversation_id)] == ["user"]


def test_regenerate_replaces_the_last_answer(assistant, history):
    first = assistant.ask("Name a fruit.")
    first.wait(60)
    conversation = first.started.conversation_id
    again = assistant.regenerate(conversation)
    assert again.wait(60).complete
    messages = history.messages(conversation)
    assert [m.role for m in messages] == ["user", "assistant"]
    assert messages[0].id == again.started.user_message_id == first.started.user_message_id
    assert messages[1].id == again.started.assistant_message_id != first.started.assistant_message_id


def test_edit_and_resend_replaces_the_last_exchange(assistant, history):
    first = assistant.ask("Name a colour.")
    first.wait(60)
    edited = assistant.resend_edited(first.started.conversation_id, "Name an animal.")
    edited.wait(60)
    messages = history.messages(first.started.conversation_id)
    assert (messages[0].role, messages[0].content) == ("user", "Name an animal.")
    assert len(messages) == 2 and messages[1].status == "complete"


def test_failures_are_saved_with_their_reason(history):
    from engine.runtime.runtime import Runtime

    rt = Runtime()  # no model loaded
    try:
        answer = Assistant(BackendRegistry.of(rt), history).ask("Anyone there?")
        result = answer.wait(10)
    finally:
        rt.shutdown()
    assert result.failed and "No model is loaded" in result.error.user_text()
    saved = history.message(answer.started.assistant_message_id)
    assert saved.status == "failed" and "No model is loaded" in saved.error


def test_bad_requests_are_refused(assistant):
    with pytest.raises(InvalidRequestError):  # checked at once, on the caller's thread
        assistant.ask("   ")
    unknown = assistant.ask("hello", conversation_id=999).wait(10)
    assert unknown.failed and isinstance(unknown.error, NotFoundError)
    empty = assistant.history.create_conversation().id
    nothing_to_redo = assistant.regenerate(empty)
    assert isinstance(nothing_to_redo.wait(10).error, NotFoundError)
    assert (nothing_to_redo.started.user_message_id, nothing_to_redo.started.assistant_message_id) == (None, None)


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
    events = assistant.ask("Write a very long story about a lighthouse keeper.").events()
    started = next(events)
    while len(history.message(started.assistant_message_id).content) < 80:
        time.sleep(0.02)
    print("SAVED", started.conversation_id, started.assistant_message_id, flush=True)
    time.sleep(60)
""")


def test_sigkill_mid_answer_loses_nothing_saved(tmp_path, model_path):
    db = tmp_path / "locus.sqlite3"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db), model_path],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
    )
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
        earlier = next(c for c in store.conversations() if c.title == "Earlier chat")
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
    history.set_options(conversation.id, collections=[])  # answers from documents, but no index is open
    for _ in range(2):
        answer = assistant.ask("Anything in my files?", conversation.id)
        assert isinstance(answer.wait(10).error, DocumentsUnavailable)
        assert answer.started.conversation_id == conversation.id and answer.started.user_message_id is None
    assert history.messages(conversation.id) == []
    new = assistant.ask("A new conversation that fails", collections=[])
    assert isinstance(new.wait(10).error, DocumentsUnavailable) and new.started.conversation_id is None
    assert [c.id for c in history.conversations()] == [conversation.id]  # the failed new one is gone


class WatchedHistory(HistoryStore):
    """The real store, noting which thread made each call that reads or writes it."""

    WRITES = (
        "create_conversation",
        "set_options",
        "add_message",
        "update_message",
        "delete_message",
        "delete_messages_from",
        "delete_conversation",
    )
    READS = ("conversation", "conversations", "messages", "message")

    def __init__(self, path):
        super().__init__(path)
        self.calls: list[tuple[str, str]] = []  # (method, thread name)


def _watched(name):
    def call(self, *args, **kwargs):
        self.calls.append((name, threading.current_thread().name))
        return getattr(HistoryStore, name)(self, *args, **kwargs)

    return call


for _name in WatchedHistory.WRITES + WatchedHistory.READS:
    setattr(WatchedHistory, _name, _watched(_name))


def test_the_runtime_thread_and_the_callers_never_touch_the_history(runtime, tmp_path, templates):
    """Answers that stream and finish, stop mid-way, stop before any text, fail on the runtime thread, and a
    task: every history call happens on an answer's thread or the history writer's, none on the thread that
    decodes (locus-runtime) and none on the thread that asked."""
    from engine.runtime.backend import LOCAL, REMOTE, BackendSet
    from engine.runtime.runtime import Runtime
    from engine.runtime.types import ChatMessage

    unloaded = Runtime()  # its requests fail on its own runtime thread
    history = WatchedHistory(tmp_path / "h.sqlite3")
    registry = BackendRegistry(BackendSet(LOCAL, {LOCAL: runtime, REMOTE: unloaded}))
    assistant = Assistant(
        registry,
        history,
        ChatSettings("", SamplingParams(seed=2, max_tokens=120)),
        templates=templates,
        save_interval_s=0.01,
    )
    caller = threading.current_thread().name
    try:
        finished = assistant.ask("Write a short poem about the sea.")
        pieces = []
        stopped = assistant.ask(
            "Write a long essay about rivers.",
            on_event=lambda e: isinstance(e, TextDelta) and (pieces.append(e), len(pieces) == 6 and stopped.cancel()),
        )
        early = assistant.ask("Hello?")
        early.cancel()
        failed = assistant.ask("Anyone there?", backend=REMOTE)
        task = assistant.run_task(
            lambda ctx: ctx.generate([ChatMessage("user", "Name three birds.")], stream=True),
            "Birds, please.",
            name="birds",
        )
        outcomes = [h.wait(120) for h in (finished, stopped, early, failed, task)]
        calls = list(history.calls)  # before this test reads the history itself
        assert [e.outcome for e in outcomes] == ["complete", "cancelled", "cancelled", "failed", "complete"]
        assert outcomes[1].text.strip() and outcomes[3].error is not None
        threads = {thread for _, thread in calls}
        assert not [c for c in calls if c[1].startswith("locus-runtime") or c[1] == caller], calls
        # The growing answers were saved as they grew, by the writer.
        partial_saves = [c for c in calls if c == ("update_message", "locus-history-writer")]
        assert len(partial_saves) > 5 and "locus-history-writer" in threads
        assert history.message(outcomes[3] and failed.started.assistant_message_id).status == "failed"
        assert [m.role for m in history.messages(early.started.conversation_id)] == ["user"]
    finally:
        assistant.close()
        unloaded.shutdown()
        history.close()


def test_an_answer_that_is_not_saved_leaves_no_conversation(assistant, history):
    answer = assistant.ask("Say hello.", save=False, sampling=SamplingParams(seed=1, max_tokens=6))
    ended = answer.wait(60)
    assert ended.complete and ended.text.strip() and ended.stats.completion_tokens <= 6
    started = answer.started
    assert (started.conversation_id, started.user_message_id, started.assistant_message_id) == (None, None, None)
    assert history.conversations() == []
    assert assistant.settings.sampling.max_tokens == 40  # the call's sampling changed nothing shared
    with pytest.raises(InvalidRequestError):
        assistant.ask("Continue, unsaved?", history.create_conversation().id, save=False)


def test_closing_while_an_answer_streams_saves_it_as_partial(model_path, history):
    """What Locus does at exit: the backends stop first (the answer ends stopped), then close() waits for the
    answer and its last save."""
    from engine.runtime.runtime import Runtime
    from engine.runtime.types import ModelConfig

    runtime = Runtime()
    runtime.load(ModelConfig(model_path, n_ctx=2048)).result(timeout=120)
    assistant = Assistant(
        BackendRegistry.of(runtime), history, ChatSettings("", SamplingParams(seed=3, max_tokens=400))
    )
    said = threading.Event()
    answer = assistant.ask(
        "Write a long essay about rivers.", on_event=lambda e: isinstance(e, TextDelta) and said.set()
    )
    assert said.wait(60)
    runtime.shutdown()
    assistant.close()
    saved = history.message(answer.started.assistant_message_id)
    assert saved.status == "cancelled" and saved.content.strip() and saved.content == answer.result.text
