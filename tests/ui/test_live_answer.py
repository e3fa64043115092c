"""The one component that follows a live answer (ui/chat/live_answer.py), on the real Assistant and model."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QCoreApplication, QTimer

from engine.answer import TextDelta
from engine.assistant import Assistant, ChatSettings
from engine.errors import InvalidRequestError
from engine.history.store import HistoryStore
from engine.runtime.backend import BackendRegistry
from engine.runtime.types import SamplingParams
from ui.bridge import EngineBridge
from ui.chat.live_answer import LiveAnswer


@pytest.fixture()
def assistant(runtime, tmp_path):
    history = HistoryStore(tmp_path / "h.sqlite3")
    assistant = Assistant(BackendRegistry.of(runtime), history, ChatSettings("", SamplingParams(seed=5, max_tokens=80)))
    yield assistant
    assistant.close()
    history.close()


def test_an_answer_is_followed_from_its_start_to_its_one_end(qtbot, assistant):
    bridge = EngineBridge()
    deltas = []
    bridge.answerEvent.connect(lambda e: isinstance(e, TextDelta) and deltas.append(e))
    live = LiveAnswer(bridge, "Thinking…")
    statuses, texts, ends = [], [], []
    live.statusChanged.connect(statuses.append)
    live.textChanged.connect(texts.append)
    live.answerEnded.connect(ends.append)
    with qtbot.waitSignals(
        [live.answerStarted, live.statusChanged, live.textChanged, live.answerEnded], order="simple", timeout=60_000
    ):
        handle = live.start(lambda sink: assistant.ask("Write a short poem about rain.", None, sink))
        assert live.status == "Thinking…" and live.started is None  # asked, and back at once
    ended = ends[0]
    assert ends == [ended] and ended.complete and live.result is ended and live.finished
    assert live.started.assistant_message_id is not None and live.conversation_id == handle.started.conversation_id
    assert statuses[0] == "Answering…" and live.trace_id == ended.trace_id
    assert texts[-1] == live.text == ended.text == "".join(d.text for d in deltas)
    assert len(texts) < len(deltas)  # repaints are coalesced, not one per piece
    # Nothing more after the end: no repaint left pending, and a late piece changes nothing.
    assert handle.wait(10) is not None and not any(t.isActive() for t in live.findChildren(QTimer))
    with qtbot.assertNotEmitted(live.textChanged), qtbot.assertNotEmitted(live.answerEnded):
        bridge.answer_sink(TextDelta(handle.answer_id, " late"))
        QCoreApplication.processEvents()
    assert live.text == ended.text and ends == [ended]


def test_a_stop_before_the_answer_started_ends_it_stopped(qtbot, assistant):
    live = LiveAnswer(EngineBridge(), "Thinking…")
    with qtbot.waitSignal(live.answerEnded, timeout=60_000) as ended:
        live.start(lambda sink: assistant.ask("Tell me a very long story.", None, sink))
        live.cancel()
    assert ended.args[0].cancelled and live.text == ""


def test_a_question_refused_at_once_raises_and_follows_nothing(assistant):
    live = LiveAnswer(EngineBridge(), "Thinking…")
    with pytest.raises(InvalidRequestError):
        live.start(lambda sink: assistant.ask("   ", None, sink))
    assert live.handle is None and live.result is None
