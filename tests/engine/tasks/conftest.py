"""Running a task function the way the terminal does: an answer of the Assistant that is not saved."""

from __future__ import annotations

import pytest

from engine.assistant import Assistant, ChatSettings
from engine.history.store import HistoryStore
from engine.runtime.backend import BackendRegistry


@pytest.fixture()
def start(tmp_path):
    """``start(fn, runtime, templates, sampling, on_event=None, name="task")`` -> AnswerHandle of ``fn`` run as a
    task whose answer is not saved (nothing reaches the history store)."""
    history = HistoryStore(tmp_path / "not-written.sqlite3")
    assistants: list[Assistant] = []

    def run(fn, runtime, templates, sampling, on_event=None, *, name="task"):
        assistant = Assistant(BackendRegistry.of(runtime), history, ChatSettings("", sampling), templates=templates)
        assistants.append(assistant)
        return assistant.run_task(fn, f"({name})", on_event=on_event, name=name, save=False)

    yield run
    for assistant in assistants:
        assistant.close()
    assert history.conversations() == []
    history.close()


@pytest.fixture()
def context():
    """``context(runtime, templates, sampling)`` -> a TaskContext of an answer no one reads (to call a task's
    prompt-building parts directly)."""
    from engine.answer import AnswerStarted
    from engine.answering import AnswerHandle, AnswerStream
    from engine.tasks.base import TaskContext

    def make(runtime, templates, sampling):
        handle = AnswerHandle(lambda _event: None)
        stream = AnswerStream(handle)
        stream.start(AnswerStarted(handle.answer_id, "task", None, None, None, runtime.kind, None))
        return TaskContext(runtime, templates, sampling, stream, handle.cancellation)

    return make
