"""An assistant's task templates in the real window: the task bar offers only the modes (and code actions) of
the conversation's assistant, the editor ticks templates from the library, and an offered task runs on the
bundled model. Real history, real template library, real window."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from engine.assistants import Assistants
from engine.tasks.code import ACTIONS
from ui.ops import wait_for_background
from ui.tasks.modes import MODES

REVIEWER = "builtin-code-reviewer"


def menu_action(menu, text: str):
    return next((a for a in menu.actions() if a.text().replace("&&", "&") == text), None)


def offered(window) -> list[str]:
    """The mode buttons a person can see."""
    return [mode for mode, button in window.task_bar.buttons.items() if button.isVisibleTo(window)]


def actions(window) -> list[str]:
    combo = window.task_bar.action
    return [combo.itemData(i) for i in range(combo.count())]


def choose(qtbot, window, name: str) -> None:
    selector = window.assistant_selector
    qtbot.waitUntil(lambda: menu_action(selector.button.menu(), name) is not None, timeout=10_000)
    menu_action(selector.button.menu(), name).trigger()


def open_conversation(qtbot, window, conversation_id: int) -> None:
    with qtbot.waitSignal(window.chat.shown, timeout=10_000):
        window.open_conversation(conversation_id)


def test_the_code_reviewer_offers_chat_and_its_four_code_actions_and_no_assistant_offers_all(qtbot, window, services):
    bar = window.task_bar
    assert offered(window) == list(MODES) and actions(window) == list(ACTIONS)
    qtbot.mouseClick(bar.buttons["translate"], Qt.MouseButton.LeftButton)
    assert bar.mode == "translate"

    choose(qtbot, window, "Code reviewer")
    assert offered(window) == ["chat", "code"]
    assert bar.mode == "chat"  # Translate is not offered any more
    assert actions(window) == ["review", "explain", "fix", "tests"] and bar.action.currentData() == "review"

    plain = services.history.create_conversation("No assistant here").id
    reviewed = services.history.create_conversation("Reviewed").id
    Assistants(services.history).choose(reviewed, REVIEWER)
    open_conversation(qtbot, window, plain)
    assert offered(window) == list(MODES) and actions(window) == list(ACTIONS)
    open_conversation(qtbot, window, reviewed)
    assert offered(window) == ["chat", "code"] and actions(window) == ["review", "explain", "fix", "tests"]
    qtbot.mouseClick(bar.buttons["code"], Qt.MouseButton.LeftButton)
    open_conversation(qtbot, window, plain)
    assert bar.mode == "code"  # still offered: the choice stays
    window.new_conversation()
    assert offered(window) == list(MODES)

    folder = os.environ.get("LOCUS_SCREENSHOTS")
    if folder:
        open_conversation(qtbot, window, reviewed)
        Path(folder).mkdir(parents=True, exist_ok=True)
        assert window.grab().save(str(Path(folder) / "assistant-templates.png"))


def test_the_editor_lists_the_library_templates_and_saves_the_ticked_ones(qtbot, window, services):
    editor = window.assistant_selector.open_editor()
    qtbot.waitUntil(lambda: "Writing editor" in editor.names() and editor.template_list.count() > 0, timeout=10_000)
    editor.list.setCurrentRow(editor.names().index("Writing editor"))
    rows = [editor.template_list.item(i) for i in range(editor.template_list.count())]
    items = {item.data(Qt.ItemDataRole.UserRole): item for item in rows}
    assert "summarize_part" not in items
    assert items["code_review"].text() == "Review code"  # the library's title
    ticked = {name for name, item in items.items() if item.checkState() == Qt.CheckState.Checked}
    assert ticked == {"summarize", "translate"}

    items["translate"].setCheckState(Qt.CheckState.Unchecked)
    items["extract_json"].setCheckState(Qt.CheckState.Checked)
    with qtbot.waitSignal(editor.changed, timeout=10_000):
        qtbot.mouseClick(editor.save_button, Qt.MouseButton.LeftButton)
    assert Assistants(services.history).get("builtin-writing-editor").templates == ["summarize", "extract_json"]

    # The conversation's assistant now offers what was ticked.
    editor.close()
    choose(qtbot, window, "Writing editor")
    qtbot.waitUntil(lambda: offered(window) == ["chat", "summarize", "extract"], timeout=10_000)


def test_the_offered_code_review_runs_on_the_bundled_model(qtbot, loaded_window, services):
    window = loaded_window
    chat = services.assistant.settings
    services.assistant.settings = dataclasses.replace(
        chat, sampling=dataclasses.replace(chat.sampling, temperature=0.0, max_tokens=24)
    )
    choose(qtbot, window, "Code reviewer")
    qtbot.mouseClick(window.task_bar.buttons["code"], Qt.MouseButton.LeftButton)
    assert window.task_bar.action.currentData() == "review"
    QApplication.clipboard().setText("def add(a, b):\n    return a - b\n")
    window.composer.setFocus()
    window.composer.paste()
    with qtbot.waitSignal(window.answerFinished, timeout=120_000) as finished:
        qtbot.keyClick(window.composer, Qt.Key.Key_Return)
    done = finished.args[0]
    assert done.complete and done.text.strip()
    wait_for_background()
    question, answer = services.history.messages(window.conversation_id)
    assert question.content.startswith("Review this Python code:") and answer.content == done.text
