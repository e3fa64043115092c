"""Branches in the real window with the bundled model: edit an early question (a new version), switch
back and forth with "‹ 2 / 2 ›", answer an early question again, delete a version."""

from __future__ import annotations

import dataclasses
import os

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox, QPushButton, QToolButton

from ui.ops import wait_for_background


def set_sampling(services, **changes):
    chat = services.assistant.settings
    services.assistant.settings = dataclasses.replace(chat, sampling=dataclasses.replace(chat.sampling, **changes))


def ask(qtbot, window, text: str):
    with qtbot.waitSignal(window.answerFinished, timeout=60_000):
        qtbot.keyClicks(window.composer, text)
        qtbot.keyClick(window.composer, Qt.Key.Key_Return)
    wait_for_background()


def shown(window) -> list[str]:
    return [w.text for w in window.chat.messages()]


def switcher_text(widget) -> str | None:
    switcher = getattr(widget, "version_switcher", None)
    return switcher.label.text() if switcher is not None else None


def click(qtbot, widget, name: str, kind=QPushButton):
    button = widget.findChild(kind, name)
    assert button is not None and button.isEnabled(), name
    qtbot.waitUntil(button.isVisible, timeout=5_000)  # a redrawn message is shown by a queued call
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def test_edit_an_early_question_then_switch_back_and_forth(qtbot, loaded_window, services, monkeypatch):
    window, history = loaded_window, services.history
    set_sampling(services, max_tokens=10, seed=5)
    for question in ("Name a fruit.", "Name a colour.", "Name a river."):
        ask(qtbot, window, question)
    conversation = window.conversation_id
    first_branch = shown(window)
    assert len(first_branch) == 6 and all(switcher_text(w) is None for w in window.chat.messages())

    # Edit on the second question (not the last): the composer takes its text, Enter asks it as a new version.
    click(qtbot, window.chat.messages()[2], "editQuestionButton")
    assert window.composer.toPlainText() == "Name a colour." and window.edit_banner.isVisible()
    window.composer.selectAll()
    ask(qtbot, window, "Name a tree.")
    qtbot.waitUntil(lambda: switcher_text(window.chat.messages()[2]) == "2 / 2")
    assert shown(window)[:3] == [*first_branch[:2], "Name a tree."] and len(shown(window)) == 4
    assert not window.edit_banner.isVisible()
    assert [m.content for m in history.messages(conversation)][:3] == shown(window)[:3]

    # ‹ : back to the first version, with all that followed it.
    click(qtbot, window.chat.messages()[2], "versionPrevious", QToolButton)
    qtbot.waitUntil(lambda: shown(window) == first_branch)
    assert switcher_text(window.chat.messages()[2]) == "1 / 2"
    assert switcher_text(window.chat.messages()[0]) is None  # one version only: no switcher
    folder = os.environ.get("LOCUS_SCREENSHOTS")  # docs/screenshots: the README's picture of branches
    if folder:
        window.resize(900, 640)
        qtbot.wait(50)  # a paint before the grab (the screenshot only)
        assert window.grab().save(os.path.join(folder, "branches.png"))

    # › : the edited branch again, and the conversation continues there.
    click(qtbot, window.chat.messages()[2], "versionNext", QToolButton)
    qtbot.waitUntil(lambda: shown(window)[2:3] == ["Name a tree."] and len(shown(window)) == 4)
    ask(qtbot, window, "Name a bird.")
    saved = history.messages(conversation)
    assert [m.content for m in saved][2:5] == ["Name a tree.", saved[3].content, "Name a bird."]
    assert saved[4].parent_id == saved[3].id

    # Regenerate on the first answer: a second version of it, shown alone after its question.
    click(qtbot, window.chat.messages()[1], "regenerateAnswerButton")
    qtbot.waitUntil(lambda: switcher_text(window.chat.messages()[1]) == "2 / 2", timeout=60_000)
    wait_for_background()
    assert len(shown(window)) == 2 and len(history.siblings(window.chat.messages()[1].message_id)) == 2

    # Delete this version (asked first): the first answer and its branches show again.
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a) or QMessageBox.StandardButton.Yes)
    window.chat.messages()[1].version_switcher.delete_action.trigger()
    qtbot.waitUntil(lambda: switcher_text(window.chat.messages()[1]) is None and len(shown(window)) > 2)
    assert asked and len(history.siblings(window.chat.messages()[1].message_id)) == 1
    assert shown(window)[2] in ("Name a tree.", "Name a colour.")
