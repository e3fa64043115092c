"""Tasks on the real model: events in order, cancel, failures, and saving as a conversation turn."""

from __future__ import annotations

import time

import pytest

from engine.answer import AnswerEnded, AnswerStarted, Progress, TextDelta
from engine.assistant import Assistant
from engine.errors import InvalidRequestError
from engine.history.store import HistoryStore
from engine.runtime.backend import BackendRegistry
from engine.runtime.types import ChatMessage, SamplingParams

GREEDY = SamplingParams(temperature=0.0, max_tokens=24, seed=1)


def two_steps(ctx):
    """A small multi-step task: one hidden generation, then one streamed."""
    ctx.progress("Thinking", 0, 2)
    first = ctx.generate([ChatMessage("user", "Name a colour.")], max_tokens=8)
    ctx.progress("Thinking", 1, 2)
    ctx.generate([ChatMessage("user", f"Write a sentence about the colour {first.strip()}.")], stream=True)
    ctx.progress("Thinking", 2, 2)
    return ctx.output


@pytest.mark.slow
def test_events_arrive_in_order_and_done_carries_the_streamed_text(runtime, templates, start):
    handle = start(two_steps, runtime, templates, GREEDY)
    events = list(handle.events())
    kinds = [type(e) for e in events]
    assert kinds[0] is AnswerStarted and kinds[1] is Progress and kinds[-1] is AnswerEnded
    assert kinds.count(AnswerEnded) == 1
    progress = [(e.done, e.total) for e in events if isinstance(e, Progress)]
    assert progress == [(0, 2), (1, 2), (2, 2)]
    streamed = "".join(e.text for e in events if isinstance(e, TextDelta))
    done = events[-1]
    assert streamed.strip() and done.text == streamed and done.complete
    assert done.stats.generations == 2 and done.stats.completion_tokens > 0
    assert all(e.answer_id == handle.answer_id for e in events)


@pytest.mark.slow
def test_cancel_stops_the_running_generation_and_keeps_what_was_streamed(runtime, templates, start):
    def long_task(ctx):
        for i in range(50):
            ctx.progress("Writing", i, 50)
            ctx.generate([ChatMessage("user", "Tell a long story about a lighthouse.")], stream=True, max_tokens=400)
        return ctx.output

    seen = []
    handle = start(long_task, runtime, templates, SamplingParams(temperature=0.8, max_tokens=400), on_event=seen.append)
    deadline = time.monotonic() + 60
    while not any(isinstance(e, TextDelta) for e in seen) and time.monotonic() < deadline:
        time.sleep(0.01)
    handle.cancel()
    streamed_at_cancel = sum(isinstance(e, TextDelta) for e in seen)
    result = handle.wait(30)
    assert result.cancelled
    # Within one token step: at most the token being sampled when cancel came (and a flushed tail).
    assert sum(isinstance(e, TextDelta) for e in seen) - streamed_at_cancel <= 2
    assert result.text == "".join(e.text for e in seen if isinstance(e, TextDelta))
    assert max(e.done for e in seen if isinstance(e, Progress)) == 0  # it never went on to part 2


def test_a_failing_task_reports_the_engine_error(runtime, templates, start):
    def bad(ctx):
        raise InvalidRequestError("There is no text to work on.")

    result = start(bad, runtime, templates, GREEDY).wait(10)
    assert result.failed and "no text" in result.error.user_text()


def test_an_unexpected_exception_becomes_a_readable_failure(runtime, templates, start):
    def buggy(ctx):
        return {}["missing"]

    result = start(buggy, runtime, templates, GREEDY).wait(10)
    assert result.failed and "unexpectedly" in result.error.user_text()
    assert "KeyError" in result.error.detail


@pytest.mark.slow
def test_run_task_saves_the_request_and_its_output_in_a_conversation(runtime, templates, tmp_path):
    history = HistoryStore(tmp_path / "h.sqlite3")
    assistant = Assistant(BackendRegistry.of(runtime), history, templates=templates)
    try:
        handle = assistant.run_task(two_steps, "Colours, please.")
        result = handle.wait(120)
        assert result.complete and handle.started.kind == "task"
        messages = history.messages(handle.started.conversation_id)
        assert [(m.role, m.status) for m in messages] == [("user", "complete"), ("assistant", "complete")]
        assert messages[0].content == "Colours, please." and messages[0].id == handle.started.user_message_id
        assert messages[1].content == result.text and messages[1].id == handle.started.assistant_message_id
        assert messages[1].stats["generations"] == 2
    finally:
        assistant.close()
        history.close()


@pytest.mark.slow
def test_a_cancelled_task_is_saved_as_partial(runtime, templates, tmp_path):
    history = HistoryStore(tmp_path / "h.sqlite3")
    assistant = Assistant(BackendRegistry.of(runtime), history, templates=templates)

    def story(ctx):
        ctx.generate([ChatMessage("user", "Tell a long story about a lighthouse.")], stream=True, max_tokens=400)
        return ctx.output

    try:
        seen = []
        handle = assistant.run_task(story, "A story.", on_event=seen.append)
        deadline = time.monotonic() + 60
        while sum(isinstance(e, TextDelta) for e in seen) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        handle.cancel()
        result = handle.wait(30)
        assert result.cancelled and result.text
        answer = history.messages(handle.started.conversation_id)[-1]
        assert answer.status == "cancelled" and answer.is_partial and answer.content == result.text
    finally:
        assistant.close()
        history.close()


def test_run_task_refuses_an_empty_request(runtime, templates, tmp_path):
    history = HistoryStore(tmp_path / "h.sqlite3")
    try:
        with pytest.raises(InvalidRequestError):
            Assistant(BackendRegistry.of(runtime), history, templates=templates).run_task(two_steps, "   ")
        assert history.conversations() == []
    finally:
        history.close()
