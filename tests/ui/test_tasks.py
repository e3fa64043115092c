"""Task modes in the real window on the real bundled model: switch modes, summarize, translate, cancel,
edit prompt templates, save code blocks."""

from __future__ import annotations

import json

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox

from engine.answer import TextDelta
from engine.errors import InvalidRequestError
from ui.ops import wait_for_background
from ui.tasks.modes import PLACEHOLDERS

PARAGRAPH = (
    "The town of Harrow Bay built its first lighthouse in 1852 after three ships ran aground on the reef in a "
    "single winter. The tower was made of local granite and its lamp burned whale oil until 1901, when it was "
    "converted to kerosene. In 1938 the light was electrified and the keeper's cottage became a small museum. "
    "Today volunteers open the museum on weekends, and the light still guides fishing boats into the harbour."
)


def click(qtbot, widget):
    qtbot.mouseClick(widget, Qt.MouseButton.LeftButton)


def paste(window, text):
    QApplication.clipboard().setText(text)
    window.composer.setFocus()
    window.composer.paste()


def run_task(qtbot, window, timeout=120_000):
    with qtbot.waitSignal(window.answerFinished, timeout=timeout) as blocker:
        qtbot.keyClick(window.composer, Qt.Key.Key_Return)
    return blocker.args[0]


def test_each_mode_shows_its_own_options_and_placeholder(qtbot, window, services):
    bar = window.task_bar
    seen = {}
    for mode, button in bar.buttons.items():
        click(qtbot, button)
        assert bar.mode == mode and window.composer.placeholderText() == PLACEHOLDERS[mode]
        seen[mode] = [name for name, page in bar.pages.items() if page.isVisible()]
    assert seen == {mode: [mode] for mode in bar.buttons}
    assert len(set(PLACEHOLDERS.values())) == len(PLACEHOLDERS)

    click(qtbot, bar.buttons["chat"])
    assert window.documents_selector.isVisible()  # document Q&A stays in Chat mode
    click(qtbot, bar.buttons["code"])
    assert not window.documents_selector.isVisible()
    assert not bar.error.isVisible()
    bar.action.setCurrentIndex(bar.action.findData("fix"))
    assert bar.error.isVisible() and bar.use_files.isVisible()
    bar.error.setText("TypeError: unsupported operand")
    request = bar.request("def add(a, b):\n    return a + b\n")
    assert request.name == "code" and request.request_text.startswith("Fix the error in this Python code:")
    assert "```python\ndef add(a, b):" in request.request_text and "TypeError" in request.request_text
    bar.use_files.setChecked(True)  # the index is not open in this window: refused in words
    with pytest.raises(InvalidRequestError, match="document index is not open"):
        bar.request("print(1)")
    bar.use_files.setChecked(False)

    click(qtbot, bar.buttons["translate"])
    assert bar.target.currentData() == services.settings.tasks.translate_to
    paste(window, "Bonjour, je m'appelle Marie et j'habite à Paris depuis dix ans avec ma famille.")
    qtbot.waitUntil(lambda: bar.detected_label.text() == "Detected: French", timeout=10_000)

    click(qtbot, bar.buttons["extract"])
    schema = bar.schema
    qtbot.waitUntil(lambda: schema.status.text() == "Valid schema", timeout=10_000)
    schema.text.setPlainText('{"type": "object", "properties": {"name": {"type": "strin"}}')
    qtbot.waitUntil(lambda: schema.error is not None, timeout=10_000)
    assert "not valid JSON" in schema.error and "line 1" in schema.error
    assert schema.example.currentText() == "Custom"
    schema.text.setPlainText('{"type": "object", "properties": {"name": {"type": 5}}}')
    qtbot.waitUntil(lambda: schema.error is not None and "/properties/name/type" in schema.error, timeout=10_000)
    schema.text.setPlainText('{"type": "object", "properties": {"n": {"type": "number", "minimum": 1}}}')
    qtbot.waitUntil(lambda: schema.error is not None and "'minimum'" in schema.error, timeout=10_000)
    # Valid JSON schema, but its grammar would nest past what llama.cpp's parser can take: said here, not at run.
    schema.text.setPlainText('{"type": "object", "properties": {"n": {"type": "string", "maxLength": 20000}}}')
    qtbot.waitUntil(lambda: schema.error is not None and "maxLength" in schema.error, timeout=10_000)
    first = schema.example.itemData(0)
    schema.example.setCurrentIndex(0)
    schema.example.activated.emit(0)
    qtbot.waitUntil(lambda: schema.error is None and schema.status.text() == "Valid schema", timeout=10_000)
    assert schema.schema() == bar.schema.examples[first]


def test_summarize_a_pasted_paragraph_streams_and_is_saved(qtbot, loaded_window, services, gui_guard):
    window = loaded_window
    events = []
    window.bridge.answerEvent.connect(events.append)
    click(qtbot, window.task_bar.buttons["summarize"])
    length = window.task_bar.length
    length.setCurrentIndex(length.findData("one_line"))  # the shortest answer: the quickest test
    paste(window, PARAGRAPH)
    with gui_guard, qtbot.waitSignal(window.answerFinished, timeout=120_000) as blocker:
        qtbot.keyClick(window.composer, Qt.Key.Key_Return)
        assert window.send_button.text() == "Stop" and window.task_progress.isVisible()
        assert window.task_progress.label.text() == "Summarizing…"
    assert gui_guard.entered == [], "blocking work on the GUI thread:\n" + "\n".join(gui_guard.entered)
    done = blocker.args[0]
    assert done.complete and done.text.strip()
    streamed = [e.text for e in events if isinstance(e, TextDelta)]
    assert len(streamed) > 3 and "".join(streamed) == done.text  # it arrived piece by piece
    user, answer = window.chat.messages()
    assert user.text.startswith("Summarize (one line):") and PARAGRAPH in user.text
    assert answer.text == done.text and answer.status == "complete"
    assert window.task_progress.isHidden() and window.send_button.text() == "Send"
    assert "tokens" in window.stats_label.text()
    wait_for_background()
    saved = services.history.messages(window.conversation_id)
    assert [(m.role, m.status) for m in saved] == [("user", "complete"), ("assistant", "complete")]
    assert saved[0].content == user.text and saved[1].content == done.text
    qtbot.waitUntil(lambda: window.sidebar.titles() and window.sidebar.titles()[0].startswith("Summarize"))


def test_translate_markdown_keeps_the_code_block(qtbot, loaded_window, services):
    window = loaded_window
    click(qtbot, window.task_bar.buttons["translate"])
    target = window.task_bar.target
    target.setCurrentIndex(target.findData("French"))
    paste(window, "# Greeting\n\nHello, my friend. How are you today?\n\n```python\nprint('hello world')\n```\n")
    done = run_task(qtbot, window)
    assert done.complete
    user, answer = window.chat.messages()
    assert user.text.startswith("Translate") and " to French:" in user.text.split("\n")[0]
    assert [b.code for b in answer.code_blocks()] == ["print('hello world')"]
    assert [b.language_label.text() for b in answer.code_blocks()] == ["Python"]
    wait_for_background()
    assert services.history.messages(window.conversation_id)[1].content == done.text


def test_stop_cancels_a_long_summary_while_it_shows_progress(qtbot, loaded_window, services):
    window = loaded_window
    long_text = "\n\n".join(
        f"Chapter {i}. " + PARAGRAPH.replace("Harrow Bay", f"Harrow Bay {i}") for i in range(1, 41)
    )  # far beyond the context window: map-reduce in parts
    click(qtbot, window.task_bar.buttons["summarize"])
    window.composer.setPlainText(long_text)
    qtbot.keyClick(window.composer, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: window.task_progress.label.text().startswith("Summarizing part"), timeout=60_000)
    total = window.task_progress.bar.maximum()
    assert total > 1 and window.task_progress.label.text().endswith(f"of {total}")
    with qtbot.waitSignal(window.answerFinished, timeout=60_000) as blocker:
        click(qtbot, window.send_button)
    done = blocker.args[0]
    assert done.cancelled
    assert window.send_button.text() == "Send" and window.task_progress.isHidden()
    # Nothing had been written yet (the parts come first): only the request is left, as saved.
    assert [w.role for w in window.chat.messages()] == ["user"]
    wait_for_background()
    assert [m.role for m in services.history.messages(window.conversation_id)] == ["user"]


def test_template_editor_names_an_unknown_variable_and_saves_to_the_user_folder(
    qtbot, loaded_window, services, monkeypatch
):
    window = loaded_window
    tools_menu = next(a for a in window.menuBar().actions() if a.text() == "&Tools").menu()
    [action] = [a for a in tools_menu.actions() if a.text() == "&Prompt templates…"]
    action.trigger()
    editor = window.tasks.template_editor
    qtbot.waitUntil(lambda: "summarize" in editor.names())
    editor.list.setCurrentRow(editor.names().index("summarize"))
    qtbot.waitUntil(lambda: editor.name == "summarize" and "{{ text }}" in editor.editor.toPlainText())
    qtbot.waitUntil(lambda: "tokens" in editor.token_label.text() and "Counting" not in editor.token_label.text())
    # The preview is the exact prompt the loaded model's chat template makes, counted with its tokenizer.
    assert "<|im_start|>user" in editor.preview.toPlainText()
    assert "as its chat template renders the prompt" in editor.token_label.text()
    original = editor.editor.toPlainText()

    editor.editor.setPlainText(original.replace("{{ text }}", "{{ txet }}"))
    qtbot.waitUntil(lambda: editor.error_label.isVisible(), timeout=5_000)
    assert "unknown variable 'txet'" in editor.error_label.text() and "'text'" in editor.error_label.text()
    assert not editor.save_button.isEnabled()

    edited = original.replace("Use only facts from the text.", "Use only facts from the text. Be brief.")
    assert edited != original
    editor.editor.setPlainText(edited)
    qtbot.waitUntil(lambda: not editor.error_label.isVisible(), timeout=5_000)
    assert "Be brief." in editor.preview.toPlainText() and "Harrow" not in editor.preview.toPlainText()
    editor.samples["text"].setPlainText(PARAGRAPH)
    qtbot.waitUntil(lambda: "Harrow Bay" in editor.preview.toPlainText(), timeout=5_000)
    click(qtbot, editor.save_button)
    user_file = services.paths.config_dir / "prompts" / "summarize.toml"
    qtbot.waitUntil(
        lambda: (
            user_file.is_file()
            and "summarize  (edited)" in [editor.list.item(i).text() for i in range(editor.list.count())]
        ),
        timeout=5_000,
    )
    assert user_file.read_text(encoding="utf-8") == edited
    assert "Be brief." in services.templates.get("summarize").system  # the tasks use it from now on

    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    click(qtbot, editor.reset_button)
    qtbot.waitUntil(lambda: not user_file.exists() and editor.editor.toPlainText() == original, timeout=5_000)
    editor.reject()


def test_a_code_block_saves_to_a_file_named_for_its_language(qtbot, window, tmp_path, monkeypatch):
    widget = window.chat.add_message("assistant", "Try:\n\n```python\ndef add(a, b):\n    return a + b\n```")
    [block] = widget.code_blocks()
    asked = []
    target = tmp_path / "add.py"

    def choose(parent, caption, default, *args, **kwargs):
        asked.append(default)
        return str(target), ""

    monkeypatch.setattr(QFileDialog, "getSaveFileName", choose)
    with qtbot.waitSignal(block.saved, timeout=5_000):
        click(qtbot, block.save_button)
    assert asked[0].endswith("snippet.py")
    assert target.read_text(encoding="utf-8") == "def add(a, b):\n    return a + b\n"
    assert block.save_button.text() == "Saved"


def test_extract_json_follows_the_schema_and_shows_as_json(qtbot, loaded_window):
    window = loaded_window
    click(qtbot, window.task_bar.buttons["extract"])
    schema = window.task_bar.schema
    schema.load_example("Contact")
    qtbot.waitUntil(lambda: schema.status.text() == "Valid schema", timeout=10_000)
    paste(window, "Please write to Dana Ortiz at dana@example.com; she runs Lyon Bikes.")
    done = run_task(qtbot, window)
    assert done.complete
    value = json.loads(done.text)
    assert {"name", "email"} <= set(value)
    user, answer = window.chat.messages()
    assert user.text.startswith("Extract JSON (Contact):")
    [block] = answer.code_blocks()
    assert block.language == "json" and json.loads(block.code) == value


def test_summarize_a_document_from_the_documents_panel(qtbot, loaded_window, services, tmp_path):
    window = loaded_window
    note = tmp_path / "harrow.md"
    note.write_text("# Harrow Bay lighthouse\n\n" + PARAGRAPH + "\n", encoding="utf-8")
    qtbot.waitUntil(lambda: window.documents.library is not None, timeout=60_000)
    window.documents.add([str(note)])
    panel = window.documents.panel
    qtbot.waitUntil(lambda: panel.rows() == [("harrow.md", "default", "done")], timeout=120_000)
    window.task_bar.length.setCurrentIndex(window.task_bar.length.findData("one_line"))
    menu = panel.menu_for(panel.tree.topLevelItem(0))
    [submenu] = [a.menu() for a in menu.actions() if a.text() == "Summarize"]
    actions = {a.text(): a for a in submenu.actions()}
    assert "Collection \u201cdefault\u201d, in a new chat" in actions
    with qtbot.waitSignal(window.answerFinished, timeout=120_000) as blocker:
        actions["This document, in a new chat"].trigger()
    done = blocker.args[0]
    assert done.complete and done.text.strip()
    user, answer = window.chat.messages()
    assert user.text == "Summarize (one line): Harrow Bay lighthouse" and answer.text == done.text
    wait_for_background()
    assert [m.content for m in services.history.messages(window.conversation_id)] == [user.text, done.text]


def select(view, text):
    """Select ``text`` in a text view, as dragging over it would."""
    from PySide6.QtGui import QTextCursor

    cursor = view.textCursor()
    start = view.toPlainText().index(text)
    cursor.setPosition(start)
    cursor.setPosition(start + len(text), QTextCursor.MoveMode.KeepAnchor)
    view.setTextCursor(cursor)


def selection_actions(menu):
    return {a.objectName(): a for a in menu.actions() if a.objectName().startswith("selection_")}


def test_selected_text_in_an_answer_can_be_summarized_from_its_context_menu(qtbot, loaded_window):
    from PySide6.QtGui import QTextCursor

    window = loaded_window
    message = window.chat.add_message("assistant", f"Some history.\n\n{PARAGRAPH}\n\nThe end.")
    [prose] = [w for w in message.segment_widgets() if w.objectName() == "prose"]
    select(prose, PARAGRAPH)

    menu = prose.context_menu(prose.viewport().rect().center())
    actions = selection_actions(menu)
    assert set(actions) == {"selection_summarize", "selection_translate", "selection_code"}
    assert menu.actions()[0].text()  # Qt's own entries (Copy, Select All) come first
    with qtbot.waitSignal(window.answerFinished, timeout=120_000) as blocker:
        actions["selection_summarize"].trigger()
    assert window.task_bar.mode == "summarize"
    done = blocker.args[0]
    assert done.complete and done.text.strip()
    user = window.chat.messages()[-2]
    assert user.role == "user" and user.text.startswith("Summarize (") and PARAGRAPH in user.text
    assert "Some history." not in user.text  # only the selection was sent

    # Nothing selected: the menu has only the standard entries.
    prose.setTextCursor(QTextCursor(prose.document()))
    assert selection_actions(prose.context_menu(prose.viewport().rect().center())) == {}


def test_text_selected_in_a_source_viewer_can_be_translated(qtbot, loaded_window, tmp_path):
    window = loaded_window
    target = window.task_bar.target
    target.setCurrentIndex(target.findData("French"))  # the default target, English, is the text's own
    path = tmp_path / "notes.md"
    wanted = "The garden is green and the sky is blue."
    path.write_text(f"# Notes\n\n{wanted}\n\nSee https://example.com/a?b=c for more.\n", encoding="utf-8")
    viewer = window.documents.open_source({"path": str(path), "location": "line 3", "line_start": 3})
    view = viewer.text_view
    select(view, wanted)
    actions = selection_actions(viewer.context_menu(view.viewport().rect().center()))
    with qtbot.waitSignal(window.answerFinished, timeout=120_000) as blocker:
        actions["selection_translate"].trigger()
    assert window.task_bar.mode == "translate"
    done = blocker.args[0]
    assert done.complete and done.text.strip()
    user = window.chat.messages()[-2]
    assert wanted in user.text and "example.com" not in user.text  # just the selection
    viewer.close()
