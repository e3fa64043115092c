"""Assistants, projects, pins and copies in the real window: the real history, the bundled model, the prompt
the model saw read back from the trace store.

Set LOCUS_SCREENSHOTS to a folder (docs/screenshots) to save projects.png while these run.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QInputDialog, QMenu

from engine.assistants import Assistants, prompt_digest
from engine.chat_settings import DEFAULT_SYSTEM_PROMPT
from engine.history.projects import Projects
from engine.trace.reading import trace_content
from ui.assistants import AssistantEditor
from ui.ops import wait_for_background
from ui.projects import ProjectSettings


def menu_action(menu: QMenu, text: str):
    """The entry of a menu (or one of its submenus) whose words are ``text``."""
    for action in menu.actions():
        if action.text().replace("&&", "&") == text:
            return action
        if action.menu() is not None:
            found = menu_action(action.menu(), text)
            if found is not None:
                return found
    return None


def ask(qtbot, window, text: str):
    with qtbot.waitSignal(window.answerFinished, timeout=120_000) as finished:
        qtbot.keyClicks(window.composer, text)
        qtbot.keyClick(window.composer, Qt.Key.Key_Return)
    return finished.args[0]


def prompt_of(services, trace_id: str) -> str:
    services.tracing.flush()
    return trace_content(services.traces.trace(trace_id)).prompt or ""


def save_screenshot(qtbot, widget, name: str) -> Path:
    folder = Path(os.environ.get("LOCUS_SCREENSHOTS") or os.environ.get("PYTEST_TMPDIR", "/tmp"))
    folder.mkdir(parents=True, exist_ok=True)
    qtbot.wait(200)
    assert widget.grab().save(str(folder / name))
    return folder / name


def test_an_assistant_chosen_per_conversation_changes_the_prompt_the_model_sees(qtbot, loaded_window, services):
    window = loaded_window
    chat = services.assistant.settings
    services.assistant.settings = dataclasses.replace(
        chat, sampling=dataclasses.replace(chat.sampling, temperature=0.0, max_tokens=12)
    )
    reviewer = Assistants(services.history).get("builtin-code-reviewer")
    selector = window.assistant_selector
    qtbot.waitUntil(lambda: menu_action(selector.button.menu(), "Code reviewer") is not None, timeout=10_000)
    assert selector.button.text() == "Assistant: No assistant"

    # A new conversation with the code reviewer: its prompt is the one the model sees.
    menu_action(selector.button.menu(), "Code reviewer").trigger()
    assert selector.button.text() == "Assistant: Code reviewer"
    reviewed = ask(qtbot, window, "Is x = x + 1 fine?")
    assert reviewed.complete, reviewed
    prompt = prompt_of(services, reviewed.trace_id)
    assert reviewer.system_prompt in prompt and DEFAULT_SYSTEM_PROMPT not in prompt
    first = window.conversation_id
    assert services.history.conversation(first).assistant_id == reviewer.id
    answer = services.history.messages(first)[-1]
    assert answer.answered_by["assistant"] == reviewer.id
    assert answer.answered_by["system_prompt"] == prompt_digest(reviewer.system_prompt)
    assert answer.answered_by["sampling"]["temperature"] == 0.2  # the assistant's

    # Another conversation without one: the settings' prompt.
    qtbot.mouseClick(window.sidebar.new_button, Qt.MouseButton.LeftButton)
    assert selector.button.text() == "Assistant: No assistant"
    plain = ask(qtbot, window, "Say hello.")
    assert DEFAULT_SYSTEM_PROMPT in prompt_of(services, plain.trace_id)
    second = window.conversation_id
    assert second != first and services.history.conversation(second).assistant_id is None

    # Back in the first, the selector shows its assistant; the writing editor chosen now answers next.
    window.sidebar.list.setCurrentItem(window.sidebar.item_for(first))
    qtbot.waitUntil(lambda: selector.button.text() == "Assistant: Code reviewer", timeout=10_000)
    menu_action(selector.button.menu(), "Writing editor").trigger()
    qtbot.waitUntil(
        lambda: services.history.conversation(first).assistant_id == "builtin-writing-editor", timeout=10_000
    )
    edited = ask(qtbot, window, "Fix: their going home.")
    editor_prompt = Assistants(services.history).get("builtin-writing-editor").system_prompt
    prompt = prompt_of(services, edited.trace_id)
    assert editor_prompt in prompt and reviewer.system_prompt not in prompt
    records = [m.answered_by["name"] for m in services.history.messages(first) if m.role == "assistant"]
    assert records == ["Code reviewer", "Writing editor"]  # each answer keeps who answered it


def test_an_assistant_made_in_the_editor_answers_and_names_the_model_it_could_not_use(qtbot, loaded_window, services):
    window = loaded_window
    selector = window.assistant_selector
    qtbot.waitUntil(lambda: menu_action(selector.button.menu(), "Edit assistants…") is not None, timeout=10_000)
    menu_action(selector.button.menu(), "Edit assistants…").trigger()
    editor = window.findChild(AssistantEditor)
    assert editor is not None
    qtbot.waitUntil(lambda: "Writing editor" in editor.names(), timeout=10_000)
    qtbot.mouseClick(editor.new_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "New assistant" in editor.names(), timeout=10_000)
    assert editor.current().name == "New assistant" and editor.delete_button.isEnabled()
    editor.name.setText("Pirate <b>captain</b>")
    editor.prompt.setPlainText("Talk like a pirate & <i>never</i> stop.")
    editor.model.setText("some-other-model.gguf")
    editor.temperature.setValue(0.0)
    qtbot.mouseClick(editor.save_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "Pirate <b>captain</b>" in editor.names(), timeout=10_000)
    assert editor.current().sampling == {"temperature": 0.0}
    # Its name shows as the words typed, in the editor's list and in the selector.
    assert editor.list.currentItem().text() == "Pirate <b>captain</b>"
    qtbot.waitUntil(lambda: menu_action(selector.button.menu(), "Pirate <b>captain</b>") is not None, timeout=10_000)
    editor.close()

    menu_action(selector.button.menu(), "Pirate <b>captain</b>").trigger()
    assert "some-other-model.gguf" in window.statusBar().currentMessage()
    assert "loaded model" in selector.button.toolTip()
    ended = ask(qtbot, window, "Where is the treasure?")
    assert "Talk like a pirate & <i>never</i> stop." in prompt_of(services, ended.trace_id)
    record = services.history.messages(window.conversation_id)[-1].answered_by
    assert record["name"] == "Pirate <b>captain</b>" and record["model_wanted"] == "some-other-model.gguf"
    assert record["model"] == services.backends.resolve(None)[1].model_info.name

    # Duplicated, then the copy deleted; a built-in cannot be deleted, only reset.
    window.assistant_selector.open_editor()
    editor = [e for e in window.findChildren(AssistantEditor) if e.isVisible()][-1]
    qtbot.waitUntil(lambda: "Pirate <b>captain</b>" in editor.names(), timeout=10_000)
    editor.list.setCurrentRow(editor.names().index("Pirate <b>captain</b>"))
    qtbot.mouseClick(editor.duplicate_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "Pirate <b>captain</b> (copy)" in editor.names(), timeout=10_000)
    assert editor.current().name == "Pirate <b>captain</b> (copy)"
    editor.delete(ask=False)
    qtbot.waitUntil(lambda: "Pirate <b>captain</b> (copy)" not in editor.names(), timeout=10_000)
    editor.list.setCurrentRow(editor.names().index("Code reviewer"))
    assert not editor.delete_button.isEnabled() and not editor.reset_button.isEnabled()
    editor.prompt.setPlainText("Review harder.")
    qtbot.mouseClick(editor.save_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: editor.reset_button.isEnabled(), timeout=10_000)
    assert editor.current().system_prompt == "Review harder."
    qtbot.mouseClick(editor.reset_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: editor.current().system_prompt.startswith("You are an experienced code reviewer"))
    editor.close()


def drop_on(widget_list, conversation_item, target_item) -> None:
    """What dragging a conversation row onto another row sends the list: the drag's own data, entering,
    moving over the target and dropping there (a real drag needs a window system's pointer)."""
    mime = widget_list.mimeData([conversation_item])
    at = widget_list.visualItemRect(target_item).center()
    move, button, none = Qt.DropAction.MoveAction, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    viewport = widget_list.viewport()
    assert QApplication.sendEvent(viewport, QDragEnterEvent(at, move, mime, button, none))
    assert QApplication.sendEvent(viewport, QDragMoveEvent(at, move, mime, button, none))
    assert QApplication.sendEvent(viewport, QDropEvent(QPointF(at), move, mime, button, none))


def test_projects_group_conversations_and_pins_come_first(qtbot, window, services):
    history = services.history
    made = {}
    for title, words in (
        ("Cabinet colours", "Which tiles go with oak cabinets?"),
        ("Budget review", "Budget for tiles and paint"),
        ("Trip notes", "Opening hours of the harbour tiles museum"),
    ):
        made[title] = history.create_conversation(title).id
        history.add_message(made[title], "user", words)
    window.refresh_conversations()
    sidebar = window.sidebar
    qtbot.waitUntil(lambda: sidebar.titles() == ["Trip notes", "Budget review", "Cabinet colours"], timeout=10_000)
    assert not sidebar.scope.isVisible()

    qtbot.mouseClick(sidebar.new_project_button, Qt.MouseButton.LeftButton)
    asked = window.findChild(QInputDialog, "projectNameDialog")
    asked.setTextValue("Kitchen  renovation ")
    asked.accept()
    qtbot.waitUntil(lambda: ("project", "Kitchen renovation") in sidebar.outline(), timeout=10_000)
    assert sidebar.scope.isVisible()
    project = Projects(history).all()[0]
    assert sidebar.project_item(project.id).text() == "Kitchen renovation  (0)"

    # Keyboard users: "Move to project" in the conversation's menu.
    menu = sidebar.menu_for(sidebar.item_for(made["Budget review"]))
    menu_action(menu, "Kitchen renovation").trigger()
    qtbot.waitUntil(
        lambda: (
            sidebar.outline()
            == [
                ("project", "Kitchen renovation"),
                ("conversation", "Budget review"),
                ("conversation", "Trip notes"),
                ("conversation", "Cabinet colours"),
            ]
        ),
        timeout=10_000,
    )
    # A drag onto the project's folder moves one too.
    drop_on(sidebar.list, sidebar.item_for(made["Cabinet colours"]), sidebar.project_item(project.id))
    qtbot.waitUntil(lambda: history.conversation(made["Cabinet colours"]).project_id == project.id, timeout=10_000)
    qtbot.waitUntil(
        lambda: (
            sidebar.outline()[:3]
            == [
                ("project", "Kitchen renovation"),
                ("conversation", "Budget review"),
                ("conversation", "Cabinet colours"),
            ]
        ),
        timeout=10_000,
    )
    assert sidebar.project_item(project.id).text() == "Kitchen renovation  (2)"

    # Pin: a pinned conversation comes first in its group.
    menu_action(sidebar.menu_for(sidebar.item_for(made["Cabinet colours"])), "Pin to top").trigger()
    qtbot.waitUntil(lambda: sidebar.outline()[1] == ("conversation", "*Cabinet colours"), timeout=10_000)
    assert history.conversation(made["Cabinet colours"]).pinned
    assert menu_action(sidebar.menu_for(sidebar.item_for(made["Cabinet colours"])), "Unpin") is not None

    # Search within the project.
    sidebar.set_scope(project.id)
    qtbot.keyClicks(sidebar.search, "tiles")
    qtbot.waitUntil(lambda: sorted(sidebar.titles()) == ["Budget review", "Cabinet colours"], timeout=10_000)
    sidebar.set_scope("all")  # every conversation: the one outside the project matches too
    qtbot.waitUntil(lambda: len(sidebar.titles()) == 3, timeout=10_000)
    assert "project" not in dict(sidebar.outline())  # search results are a flat, ranked list
    sidebar.search.clear()
    qtbot.waitUntil(lambda: ("project", "Kitchen renovation") in sidebar.outline(), timeout=10_000)

    # The folder folds shut and opens again.
    folder = sidebar.project_item(project.id)
    qtbot.mouseClick(
        sidebar.list.viewport(), Qt.MouseButton.LeftButton, pos=sidebar.list.visualItemRect(folder).center()
    )
    assert sidebar.outline() == [("project", "Kitchen renovation"), ("conversation", "Trip notes")]
    sidebar.toggle_project(project.id)
    assert len(sidebar.outline()) == 4

    # Duplicate: the copy sits beside the original, in the same project.
    menu_action(sidebar.menu_for(sidebar.item_for(made["Budget review"])), "Duplicate").trigger()
    qtbot.waitUntil(lambda: "Budget review (copy)" in sidebar.titles(), timeout=10_000)
    copy = next(c for c in history.conversations() if c.title == "Budget review (copy)")
    assert copy.project_id == project.id
    assert [m.content for m in history.messages(copy.id)] == ["Budget for tiles and paint"]

    # The project's defaults (set in its settings) apply to a new chat started in it.
    menu_action(sidebar.menu_for(sidebar.project_item(project.id)), "Project settings…").trigger()
    qtbot.waitUntil(lambda: window.findChild(ProjectSettings) is not None, timeout=10_000)
    settings = window.findChild(ProjectSettings)
    assert settings.name.text() == "Kitchen renovation"
    settings.assistant.setCurrentIndex(settings.assistant.findText("Research with my documents"))
    settings.documents.setCurrentIndex(settings.documents.findData("all"))
    settings.accept()
    qtbot.waitUntil(lambda: Projects(history).get(project.id).assistant_id is not None, timeout=10_000)
    assert Projects(history).get(project.id).collections == []
    menu_action(sidebar.menu_for(sidebar.project_item(project.id)), "New chat in this project").trigger()
    qtbot.waitUntil(
        lambda: window.assistant_selector.button.text() == "Assistant: Research with my documents", timeout=10_000
    )
    fresh = history.conversation(window.conversation_id)
    assert fresh.project_id == project.id and fresh.collections == [] and fresh.assistant_id is not None
    assert window.documents_selector.value == []
    qtbot.waitUntil(lambda: sidebar.item_for(fresh.id) is not None, timeout=10_000)

    # How it looks: a project with its conversations, one open with its assistant.
    budget = made["Budget review"]
    history.add_message(budget, "assistant", "Tiles: about 1,200. Paint: about 300. Keep 10% for surprises.")
    Assistants(history).choose(budget, "builtin-writing-editor")
    window.sidebar.list.setCurrentItem(window.sidebar.item_for(budget))
    qtbot.waitUntil(lambda: window.assistant_selector.button.text() == "Assistant: Writing editor", timeout=10_000)
    qtbot.waitUntil(lambda: len(window.chat.messages()) == 2, timeout=10_000)
    window.documents.dock.hide()
    wait_for_background()
    shot = save_screenshot(qtbot, window, "projects.png")
    assert shot.exists()

    # Deleting the project keeps its conversations, moved out.
    box = window.projects.ask_delete(Projects(history).get(project.id), Projects(history).conversation_ids(project.id))
    box.show()
    box.findChild(type(box.buttons()[0]), "deleteProjectKeep").click()
    qtbot.waitUntil(lambda: not any(kind == "project" for kind, _ in sidebar.outline()), timeout=10_000)
    assert len(history.conversations()) == 5 and all(c.project_id is None for c in history.conversations())
    assert sidebar.outline()[0] == ("conversation", "*Cabinet colours")  # still pinned, first


def test_deleting_a_project_with_its_conversations_removes_them(qtbot, window, services):
    history = services.history
    keep = history.create_conversation("Keep me").id
    project = Projects(history).create("Old <i>work</i>")
    gone = history.create_conversation("Secret plan").id
    history.add_message(gone, "user", "the password is swordfish")
    Projects(history).move(gone, project.id)
    window.refresh_conversations()
    qtbot.waitUntil(lambda: ("conversation", "Secret plan") in window.sidebar.outline(), timeout=10_000)
    assert window.sidebar.project_item(project.id).text() == "Old <i>work</i>  (1)"  # the words, not markup
    menu_action(window.sidebar.menu_for(window.sidebar.project_item(project.id)), "Rename project…").trigger()
    qtbot.waitUntil(lambda: window.findChild(QInputDialog, "projectNameDialog") is not None, timeout=10_000)
    renamed = window.findChild(QInputDialog, "projectNameDialog")
    assert renamed.textValue() == "Old <i>work</i>"
    renamed.setTextValue("Older <i>work</i>")
    renamed.accept()
    qtbot.waitUntil(lambda: ("project", "Older <i>work</i>") in window.sidebar.outline(), timeout=10_000)
    project = Projects(history).get(project.id)
    window.sidebar.list.setCurrentItem(window.sidebar.item_for(gone))
    qtbot.waitUntil(lambda: window.conversation_id == gone, timeout=10_000)
    box = window.projects.ask_delete(project, [gone])
    box.show()
    box.findChild(type(box.buttons()[0]), "deleteProjectAll").click()
    qtbot.waitUntil(lambda: window.sidebar.outline() == [("conversation", "Keep me")], timeout=10_000)
    assert window.conversation_id is None  # the open one closed first
    assert [c.id for c in history.conversations()] == [keep] and history.search("swordfish") == []
    assert "Older <i>work</i>" in window.statusBar().currentMessage()
