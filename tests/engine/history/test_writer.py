"""The history writer on a real SQLite file: hand-over never waits, growing text is coalesced, the end is saved."""

from __future__ import annotations

import threading

import pytest

from engine.errors import HistoryError
from engine.history.store import HistoryStore
from engine.history.writer import HistoryWriter, answer_is_kept


class GatedHistory(HistoryStore):
    """The real store, whose partial saves wait at a gate (a database locked by another process) and are counted."""

    def __init__(self, path):
        super().__init__(path)
        self.gate = threading.Event()
        self.gate.set()
        self.waiting = threading.Event()
        self.partial_saves: list[tuple[str, str]] = []  # (content saved, thread)

    def update_message(self, message_id, **changes):
        if set(changes) == {"content"}:
            self.waiting.set()
            self.gate.wait()
            self.partial_saves.append((changes["content"], threading.current_thread().name))
        return super().update_message(message_id, **changes)


@pytest.fixture()
def history(tmp_path):
    store = GatedHistory(tmp_path / "h.sqlite3")
    yield store
    store.close()


def streaming_answer(history):
    conversation = history.create_conversation()
    history.add_message(conversation.id, "user", "Tell me about herons.")
    return history.add_message(conversation.id, "assistant", "", status="streaming").id


def test_pieces_handed_over_while_the_database_is_stuck_are_saved_once_it_is_free(history):
    writer = HistoryWriter(history, save_interval_s=0.0)
    message = streaming_answer(history)
    try:
        history.gate.clear()  # every partial save now waits
        writer.grow(message, "Herons ")
        assert history.waiting.wait(10)  # the writer is stuck in a save...
        for n in range(2000):  # ...and handing over still never waits
            writer.grow(message, f"w{n} ")
        history.gate.set()
        text = "Herons " + "".join(f"w{n} " for n in range(2000))
        writer.finish(message, "complete", text, stats={"completion_tokens": 2001}).result(10)
        saved = history.message(message)
        assert (saved.content, saved.status, saved.stats) == (text, "complete", {"completion_tokens": 2001})
        # The backlog was saved in a few writes, not one per piece, all on the writer's thread.
        assert 1 <= len(history.partial_saves) <= 3
        assert {thread for _, thread in history.partial_saves} == {"locus-history-writer"}
    finally:
        writer.close()


def test_growing_text_is_saved_at_most_once_per_interval_and_the_end_after_it(history):
    writer = HistoryWriter(history, save_interval_s=3600.0)  # no partial save falls due within the test
    message = streaming_answer(history)
    try:
        for piece in ("The ", "grey ", "heron "):
            writer.grow(message, piece)
        writer.finish(message, "cancelled", "The grey heron ", stats={"completion_tokens": 3}).result(10)
        assert history.partial_saves == []
        saved = history.message(message)
        assert (saved.content, saved.status) == ("The grey heron ", "cancelled") and saved.is_partial
    finally:
        writer.close()


def test_an_answer_stopped_before_it_said_anything_is_removed_and_its_question_stays(history):
    writer = HistoryWriter(history)
    message = streaming_answer(history)
    conversation = history.message(message).conversation_id
    try:
        writer.finish(message, "cancelled", "  ").result(10)
        assert [m.role for m in history.messages(conversation)] == ["user"]
        failed = history.add_message(conversation, "assistant", "", status="streaming").id
        writer.finish(failed, "failed", "", error="The model stopped.").result(10)
        assert (history.message(failed).status, history.message(failed).error) == ("failed", "The model stopped.")
    finally:
        writer.close()
    assert answer_is_kept("cancelled", "a word") and answer_is_kept("failed", "") and answer_is_kept("complete", "")
    assert not answer_is_kept("cancelled", "\n")


def test_a_save_that_fails_is_reported_to_the_one_who_waits(history, tmp_path):
    writer = HistoryWriter(history)
    try:
        done = writer.finish(987654, "complete", "text for no message")  # no such row: nothing to update
        assert done.result(10) is None
        history.close()  # the database is gone
        with pytest.raises(HistoryError):
            writer.finish(1, "complete", "text").result(10)
    finally:
        writer.close()
