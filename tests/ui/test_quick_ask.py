"""The quick-ask popup on the real window, engine and bundled model (offscreen Qt, pytest-qt)."""

from __future__ import annotations

import dataclasses

import pytest
from PySide6.QtCore import Qt

from ui.ops import wait_for_background
from ui.quick_ask import NO_DOCUMENTS, QuickAsk
from ui.tray import Tray


def set_sampling(services, **changes):
    chat = services.assistant.settings
    services.assistant.settings = dataclasses.replace(chat, sampling=dataclasses.replace(chat.sampling, **changes))


def make_tray(qtbot, window, services) -> Tray:
    tray = Tray(window, services, quit_app=lambda: None)
    qtbot.addWidget(tray.quick_ask)
    return tray


@pytest.fixture()
def tray(qtbot, loaded_window, services):
    tray = make_tray(qtbot, loaded_window, services)
    yield tray
    loaded_window.removeEventFilter(tray)  # the fixtures close the window next: that is no quit


def ask(qtbot, popup: QuickAsk, text: str, timeout: int = 120_000) -> int:
    """Type a question and press Enter; the conversation id once its answer has ended."""
    qtbot.keyClicks(popup.input, text)
    with qtbot.waitSignal(popup.answered, timeout=timeout) as blocker:
        qtbot.keyClick(popup.input, Qt.Key.Key_Return)
    return blocker.args[0]


def test_enter_streams_the_answer_below_and_saves_it_as_a_conversation(qtbot, tray, loaded_window, services, gui_guard):
    set_sampling(services, max_tokens=120, seed=3, temperature=0.0)
    popup = tray.open_quick_ask()
    assert popup.isVisible() and popup.answer.isHidden() and popup.collection.currentText() == NO_DOCUMENTS
    height_before = popup.height()
    with gui_guard, qtbot.waitSignal(popup.answered, timeout=120_000) as blocker:
        qtbot.keyClicks(popup.input, "Explain in a few sentences why the sky is blue.")
        qtbot.keyClick(popup.input, Qt.Key.Key_Return)
        assert popup.stop_button.isVisible() and not popup.continue_button.isVisible()
        qtbot.waitUntil(lambda: len(popup.answer.toPlainText()) > 5 and popup.live is not None, timeout=60_000)
        partial = popup.answer.toPlainText()  # shown while it is still being written
    assert gui_guard.entered == [], "blocking work on the GUI thread:\n" + "\n".join(gui_guard.entered)
    conversation = blocker.args[0]
    final = popup.answer.toPlainText()
    assert final.startswith(partial[:5]) and len(final) > len(partial)
    assert popup.height() > height_before and popup.answer.isVisible()
    assert popup.continue_button.isVisible() and popup.stop_button.isHidden()
    assert popup.status.text().startswith("Saved as a conversation")
    wait_for_background()
    question, answer = services.history.messages(conversation)
    assert question.content == "Explain in a few sentences why the sky is blue."
    assert answer.status == "complete" and answer.content.strip() and answer.content[:20] in popup.text
    assert services.history.conversation(conversation).collections is None  # plain chat


def test_escape_closes_the_popup_and_stops_the_answer(qtbot, tray, services):
    set_sampling(services, max_tokens=600, seed=5)
    popup = tray.open_quick_ask()
    qtbot.keyClicks(popup.input, "Write a long story about a lighthouse keeper and a storm.")
    with qtbot.waitSignal(popup.answered, timeout=120_000) as blocker:
        qtbot.keyClick(popup.input, Qt.Key.Key_Return)
        qtbot.waitUntil(lambda: len(popup.answer.toPlainText()) > 10, timeout=60_000)
        qtbot.keyClick(popup.input, Qt.Key.Key_Escape)
        assert not popup.isVisible()
    wait_for_background()
    _question, answer = services.history.messages(blocker.args[0])
    assert answer.status == "cancelled" and answer.content.strip()  # kept, marked partial
    assert answer.stats["completion_tokens"] < 600

    reopened = tray.open_quick_ask()  # a fresh quick ask, not the stopped one
    assert reopened.isVisible() and reopened.input.text() == "" and reopened.answer.isHidden()
    assert reopened.conversation_id is None


def test_continue_in_window_opens_the_whole_quick_ask_there(qtbot, tray, loaded_window, services):
    window = loaded_window
    set_sampling(services, max_tokens=40, seed=7)
    popup = tray.open_quick_ask()
    first = ask(qtbot, popup, "What is a haiku?")
    popup.input.clear()
    follow_up = ask(qtbot, popup, "Write one about rain.")
    assert follow_up == first  # a follow-up continues the same conversation
    qtbot.mouseClick(popup.continue_button, Qt.MouseButton.LeftButton)
    assert not popup.isVisible() and window.isVisible()
    qtbot.waitUntil(lambda: window.conversation_id == first and len(window.chat.messages()) == 4, timeout=20_000)
    wait_for_background()
    saved = services.history.messages(first)
    assert [w.text for w in window.chat.messages()] == [m.content for m in saved]
    assert [m.role for m in saved] == ["user", "assistant", "user", "assistant"]
    assert saved[2].content == "Write one about rain."


def test_a_chosen_collection_answers_from_an_indexed_file_and_is_remembered(
    qtbot, tray, loaded_window, services, tmp_path
):
    window = loaded_window
    qtbot.waitUntil(lambda: window.documents.library is not None, timeout=60_000)
    notes = tmp_path / "marsh"
    notes.mkdir()
    (notes / "herons.txt").write_text(
        "Field notes, spring.\n\nThe grey herons of Brackwater marsh fish only at "
        "dawn, standing still among the reeds near the old sluice gate.\n",
        encoding="utf-8",
    )
    with qtbot.waitSignal(window.documents.indexingFinished, timeout=180_000):
        window.documents.add([str(notes)], "marsh")
    popup = tray.open_quick_ask()
    qtbot.waitUntil(lambda: popup.collection.findData("marsh") >= 0, timeout=20_000)

    popup.choose_collection("marsh")
    qtbot.waitUntil(lambda: services.settings.ui.quick_ask_collection == "marsh", timeout=20_000)
    assert 'quick_ask_collection = "marsh"' in services.paths.config_file.read_text(encoding="utf-8")

    set_sampling(services, max_tokens=60, temperature=0.0)
    conversation = ask(qtbot, popup, "When do the grey herons of Brackwater marsh fish?")
    assert services.history.conversation(conversation).collections == ["marsh"]
    wait_for_background()
    answer = services.history.messages(conversation)[-1]
    assert answer.status == "complete"
    assert answer.sources and answer.sources[0]["path"].endswith("herons.txt"), answer.content
    assert popup.sources.isVisible() and "herons" in popup.sources.text()

    later = QuickAsk(services)  # e.g. after a restart: the choice is read back from the settings
    qtbot.addWidget(later)
    assert later.chosen_collection() == "marsh"


def test_errors_are_shown_in_the_popup_in_words(qtbot, window, services):
    """No model loaded and no document index open (the window was never started)."""
    tray = make_tray(qtbot, window, services)
    try:
        popup = tray.open_quick_ask()
        ask(qtbot, popup, "Hello?")
        assert popup.status.property("state") == "error"
        assert popup.status.text().startswith("No model is loaded yet.")

        popup.choose_collection("marsh")
        popup.input.setText("What do herons eat?")
        qtbot.keyClick(popup.input, Qt.Key.Key_Return)
        qtbot.waitUntil(lambda: "document index is not open yet" in popup.status.text(), timeout=20_000)
        assert popup.status.property("state") == "error" and popup.live is None
        assert popup.stop_button.isHidden()  # ready for another question
    finally:
        window.removeEventFilter(tray)


def test_a_quick_ask_is_answered_while_the_window_is_still_answering(qtbot, tray, loaded_window, services):
    """The engine answers both at once (continuous batching): a short quick ask asked while the window
    writes a long answer ends before that answer does, and both are saved whole."""
    window = loaded_window
    set_sampling(services, max_tokens=300, seed=4, temperature=0.0)
    qtbot.keyClicks(window.composer, "Write a long story about a lighthouse keeper and a storm.")
    qtbot.keyClick(window.composer, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: window.live is not None and len(window.live.text) > 5, timeout=60_000)
    long_answer = window.live
    set_sampling(services, max_tokens=12)  # the quick ask's request only: the window's keeps its own
    popup = tray.open_quick_ask()
    conversation = ask(qtbot, popup, "Name one colour.")
    assert long_answer.result is None and window.live is long_answer  # still writing its story
    with qtbot.waitSignal(window.answerFinished, timeout=120_000):
        pass
    wait_for_background()
    quick = services.history.messages(conversation)[1]
    story = services.history.messages(long_answer.conversation_id)[1]
    assert quick.status == "complete" and quick.content.strip()
    assert story.status == "complete" and len(story.content) > 200
