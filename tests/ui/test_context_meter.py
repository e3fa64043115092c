"""The context meter, compaction and per-message details in the real window, on the real bundled model."""

from __future__ import annotations

import os

import pytest
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QEnterEvent, QGuiApplication
from PySide6.QtWidgets import QApplication, QPlainTextEdit, QPushButton

import app.settings as settings_mod
from app.paths import resolve_paths
from app.services import build_services
from engine.compaction import SUMMARY_HEADING
from engine.context_meter import source_budget
from ui.main_window import MainWindow
from ui.ops import wait_for_background

MARKDOWN = "Here is **bold** text, a [link](https://example.org) and code:\n\n```python\nprint('hi')\n```\n"
FILLER = "The old harbour had red boats, a stone pier and a lighthouse painted white. " * 6


def make_window(qtbot, locus_home, **values):
    settings = settings_mod.Settings()
    for key, value in {"sampling.max_tokens": 24, "sampling.temperature": 0.0, **values}.items():
        settings = settings.with_value(key, value)
    settings_mod.save(settings, locus_home / "config.toml")
    services = build_services(resolve_paths())
    window = MainWindow(services, "test")
    qtbot.addWidget(window)
    window.resize(900, 640)
    window.show()
    with qtbot.waitSignal(window.bridge.modelLoaded, timeout=120_000):
        window.start()
    return window, services


@pytest.fixture()
def small(qtbot, locus_home):
    """A window whose model has a 1024-token context and compacts automatically."""
    window, services = make_window(qtbot, locus_home, **{"model.context_size": 1024, "chat.auto_compact": True})
    yield window, services
    window.stop()
    wait_for_background()
    services.close()


@pytest.fixture()
def roomy(qtbot, locus_home):
    window, services = make_window(qtbot, locus_home, **{"model.context_size": 2048})
    yield window, services
    window.stop()
    wait_for_background()
    services.close()


def ask(qtbot, window, text: str):
    with qtbot.waitSignal(window.context_meter.measured, timeout=90_000) as measured:
        with qtbot.waitSignal(window.answerFinished, timeout=90_000) as finished:
            qtbot.keyClicks(window.composer, text)
            qtbot.keyClick(window.composer, Qt.Key.Key_Return)
    return finished.args[0], measured.args[0]


def open_saved(qtbot, window, services, turns) -> int:
    cid = services.history.create_conversation().id
    for role, text in turns:
        services.history.add_message(cid, role, text)
    with qtbot.waitSignal(window.context_meter.measured, timeout=30_000):
        window.sidebar.conversationSelected.emit(cid)
    qtbot.waitUntil(lambda: len(window.chat.messages()) == len(turns), timeout=10_000)
    qtbot.waitUntil(lambda: all(w.isVisible() for w in window.chat.messages()), timeout=10_000)
    return cid


def test_the_meter_rises_with_each_turn_and_says_what_it_counts(qtbot, roomy):
    window, _services = roomy
    qtbot.waitUntil(lambda: window.context_meter.usage is not None, timeout=30_000)
    empty = window.context_meter.usage
    assert empty.history == 0 and window.context_meter.bar.label.text().endswith("/ 2k tokens")
    seen = [empty.used]
    for question in ("Name a colour.", "Name a fruit.", "Name a country."):
        _done, usage = ask(qtbot, window, question)
        seen.append(usage.used)
    assert seen == sorted(seen) and len(set(seen)) == 4  # strictly rising
    bar = window.context_meter.bar
    assert bar.label.text() == f"{usage.used} / 2k tokens" and bar.bar.value() == round(usage.fraction * 1000)
    assert "History:" in bar.toolTip() and "6 messages" in bar.toolTip() and bar.level == "ok"
    # What the meter says is what the model was given: the last prompt had the first three messages plus
    # the question, which the meter counted (as an empty next question) after the turn before.
    done = _done
    assert done.stats.prompt_tokens >= seen[-2]


def test_compaction_happens_with_a_visible_summary_and_the_next_prompt_uses_it(qtbot, small, tmp_path, gui_guard):
    window, services = small
    turns = []
    for i in range(4):
        turns += [
            ("user", f"Question {i}: tell me about the harbour. {FILLER}"),
            ("assistant", f"Answer {i}. {FILLER}"),
        ]
    cid = open_saved(qtbot, window, services, turns)
    usage = window.context_meter.usage
    assert usage.level in ("warn", "full") and window.context_meter.bar.warning.isVisible()
    assert "oldest messages" in window.context_meter.bar.warning.text()
    window.context_meter.bar.grab().save(str(tmp_path / "meter-warning.png"))

    with gui_guard:  # measuring, compacting and showing the summary: nothing blocking on the GUI thread
        with qtbot.waitSignal(window.context_meter.compacted, timeout=180_000) as compacted:
            ask(qtbot, window, "What colour were the boats?")
        result = compacted.args[0]
        assert result.outcome == "complete", result.error
        qtbot.waitUntil(lambda: any(w.property("summary") for w in window.chat.messages()), timeout=10_000)
        widgets = window.chat.messages()
        summary = next(w for w in widgets if w.property("summary"))
        qtbot.waitUntil(summary.isVisible, timeout=5_000)
        assert summary.author.text() == f"Summary of {result.originals} earlier messages"
        assert summary.role == "system" and summary.text == result.summary.content
        above = widgets[: widgets.index(summary)]
        assert len(above) == result.originals and not any(w.isVisible() for w in above)  # collapsed
        toggle = summary.findChild(QPushButton, "showOriginalsButton")
        qtbot.mouseClick(toggle, Qt.MouseButton.LeftButton)
        assert all(w.isVisible() and w.graphicsEffect() is not None for w in above)  # shown, dimmed
    assert len(services.history.all_messages(cid)) == 11  # originals kept: 8 + question + answer + summary
    qtbot.waitUntil(lambda: window.context_meter.usage.summarized == result.originals, timeout=30_000)
    assert window.context_meter.usage.used < usage.used

    # Editing the summary saves the note's new text.
    qtbot.mouseClick(summary.findChild(QPushButton, "editSummaryButton"), Qt.MouseButton.LeftButton)
    editor = summary.findChild(QPlainTextEdit, "summaryEditor")
    editor.setPlainText("The user asked about a harbour with red boats and a white lighthouse.")
    with gui_guard, qtbot.waitSignal(window.context_meter.measured, timeout=30_000):
        qtbot.mouseClick(summary.findChild(QPushButton, "saveSummaryButton"), Qt.MouseButton.LeftButton)
    assert gui_guard.entered == [], "blocking work on the GUI thread:\n" + "\n".join(gui_guard.entered)
    assert services.history.message(summary.message_id).content.startswith("The user asked about a harbour")

    # The next prompt (in its trace) holds the summary instead of the old turns.
    done, _usage = ask(qtbot, window, "Was there a lighthouse?")
    services.assistant.tracing.flush()
    spans = services.assistant.traces.trace(done.trace_id)
    prompt = next(s.attributes["locus.prompt"] for s in spans if "locus.prompt" in s.attributes)
    assert SUMMARY_HEADING in prompt and "red boats and a white lighthouse" in prompt
    assert "Question 0:" not in prompt and "Answer 2." not in prompt


def test_compact_now_can_be_stopped_and_changes_nothing(qtbot, roomy):
    window, services = roomy
    cid = open_saved(qtbot, window, services, [("user", "Hi " + FILLER), ("assistant", "Hello " + FILLER)] * 2)
    bar = window.context_meter.bar
    assert bar.button.isVisible() and bar.button.text() == "Compact now"
    with qtbot.waitSignal(window.context_meter.compacted, timeout=120_000) as compacted:
        qtbot.mouseClick(bar.button, Qt.MouseButton.LeftButton)
        assert bar.button.text() == "Stop compacting"
        qtbot.mouseClick(bar.button, Qt.MouseButton.LeftButton)
    assert compacted.args[0].outcome == "cancelled"
    assert len(services.history.all_messages(cid)) == 4 and bar.button.text() == "Compact now"


def test_copy_as_markdown_hover_details_and_keyboard_navigation(qtbot, roomy):
    window, services = roomy
    stats = {"prompt_tokens": 412, "completion_tokens": 96, "total_s": 3.1, "generation_s": 3.0, "generations": 1}
    cid = open_saved(qtbot, window, services, [("user", "Show me code"), ("assistant", MARKDOWN)])
    answer_id = services.history.messages(cid)[1].id
    services.history.update_message(answer_id, stats=stats)
    window.chat.show_messages(services.history.messages(cid))
    user, answer = window.chat.messages()
    qtbot.waitUntil(answer.isVisible, timeout=5_000)

    # Copy puts the raw Markdown of the whole answer on the clipboard.
    qtbot.mouseClick(answer.details.copy_button, Qt.MouseButton.LeftButton)
    assert QGuiApplication.clipboard().text() == MARKDOWN

    # Tokens and time show on hover.
    line = answer.details.stats_label
    assert not line.isVisible()
    QApplication.sendEvent(answer, QEnterEvent(QPointF(5, 5), QPointF(5, 5), QPointF(5, 5)))
    assert line.isVisible() and line.text().startswith("412 prompt + 96 answer tokens · 3.1 s")
    QApplication.sendEvent(answer, QEvent(QEvent.Type.Leave))
    assert not line.isVisible()

    # Alt+Up from the composer goes to the last message, on to the one above; Alt+Down comes back down and
    # past the last one returns to the composer.
    window.activateWindow()
    window.composer.setFocus()
    qtbot.waitUntil(lambda: window.composer.hasFocus(), timeout=5_000)
    qtbot.keyClick(window.composer, Qt.Key.Key_Up, Qt.KeyboardModifier.AltModifier)
    assert answer.hasFocus() and line.isVisible()  # the focused message shows its details too
    qtbot.keyClick(answer, Qt.Key.Key_Up, Qt.KeyboardModifier.AltModifier)
    assert user.hasFocus()
    qtbot.keyClick(user, Qt.Key.Key_Down, Qt.KeyboardModifier.AltModifier)
    assert answer.hasFocus()
    QGuiApplication.clipboard().clear()
    qtbot.keyClick(answer, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    assert QGuiApplication.clipboard().text() == MARKDOWN
    qtbot.keyClick(answer, Qt.Key.Key_Down, Qt.KeyboardModifier.AltModifier)
    assert window.composer.hasFocus()


def test_the_meter_warns_in_amber_before_old_messages_stop_fitting(qtbot, small):
    """The warning state as the README's screenshot shows it (saved when LOCUS_SCREENSHOTS names a folder)."""
    window, services = small
    from ui.theme import apply_theme

    app = QApplication.instance()
    style, palette, sheet = app.style().name(), app.palette(), app.styleSheet()
    apply_theme(app, "light")
    try:
        turns = []
        for i in range(4):
            turns += [("user", f"Question {i} about the harbour. {FILLER}"), ("assistant", f"Answer {i}. {FILLER}")]
        open_saved(qtbot, window, services, turns)
        bar = window.context_meter.bar
        assert bar.level == "warn" and bar.warning.isVisible()
        window.refresh_conversations()
        window.chat.scroll_to_bottom()
        folder = os.environ.get("LOCUS_SCREENSHOTS")
        if folder:
            qtbot.wait(500)  # let the list and the view paint (nothing is asserted on it)
            window.grab().save(os.path.join(folder, "context-meter.png"))
    finally:  # the next tests get the application as it was
        app.setStyleSheet(sheet)
        app.setPalette(palette)
        app.setStyle(style)


def test_the_meter_counts_the_system_prompt_of_the_conversations_assistant(qtbot, roomy):
    window, services = roomy
    open_saved(qtbot, window, services, [("user", "Hello"), ("assistant", "Hello! How can I help?")])
    plain = window.context_meter.usage
    long_prompt = "You are an exacting copy editor. " * 20
    preset = services.assistant.presets.create("Long-winded editor", long_prompt)
    window.assistant_selector.reload()
    qtbot.waitUntil(lambda: any(p.id == preset.id for p in window.assistant_selector.known), timeout=10_000)
    with qtbot.waitSignal(window.context_meter.measured, timeout=30_000) as measured:
        window.assistant_selector.choose(preset.id)  # what its menu does
    usage = measured.args[0]
    assert usage.history == plain.history
    backend = services.backends.resolve(None)[1]
    grown = backend.count_tokens(long_prompt) - backend.count_tokens(services.assistant.settings.system_prompt)
    assert abs((usage.system - plain.system) - grown) <= 2  # the assistant's prompt, not the settings'


def test_choosing_documents_adds_what_the_document_path_reserves(qtbot, roomy):
    window, services = roomy
    open_saved(qtbot, window, services, [("user", "Hello"), ("assistant", "Hello! How can I help?")])
    plain = window.context_meter.usage
    assert plain.documents == 0
    with qtbot.waitSignal(window.context_meter.measured, timeout=30_000) as measured:
        window.documents_selector.valueChanged.emit([])  # "All documents"
    usage = measured.args[0]
    assert usage.documents > source_budget(2048) and usage.history == plain.history
    assert "Documents (sources reserved)" in window.context_meter.bar.toolTip()
