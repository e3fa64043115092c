"""The real window, driven like a user: pytest-qt on the real engine and bundled model."""

from __future__ import annotations

import dataclasses

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from ui.chat.message import CodeBlock, ProseView
from ui.ops import wait_for_background
from ui.settings_dialog import SettingsDialog


def set_sampling(services, **changes):
    chat = services.assistant.settings
    services.assistant.settings = dataclasses.replace(chat, sampling=dataclasses.replace(chat.sampling, **changes))


def answer_text(window) -> str:
    widget = window.chat.messages()[-1]
    return "".join(w.toPlainText() if isinstance(w, ProseView) else w.code for w in widget.segment_widgets())


def ask(qtbot, window, text: str, timeout=60_000):
    with qtbot.waitSignal(window.answerFinished, timeout=timeout) as blocker:
        qtbot.keyClicks(window.composer, text)
        qtbot.keyClick(window.composer, Qt.Key.Key_Return)
    return blocker.args[0]


def test_type_enter_stream_then_stop_and_the_gui_thread_never_blocks(qtbot, window, services, gui_guard):
    # Loading the model, streaming and stopping: no SQLite, LanceDB, llama.cpp or parsing call is made on
    # the GUI thread meanwhile (how long the GUI stalls under load is measured by bench/gui_stall.py).
    with gui_guard:
        with qtbot.waitSignal(window.bridge.modelLoaded, timeout=120_000):
            window.start()
        qtbot.waitUntil(lambda: window.documents.library is not None, timeout=60_000)  # the index opened too
    assert "SmolLM2" in window.model_label.text() and window.load_bar.isHidden()

    set_sampling(services, max_tokens=600, seed=11)
    with gui_guard:
        qtbot.keyClicks(window.composer, "Write a long story about a dragon who learns to bake bread.")
        qtbot.keyClick(window.composer, Qt.Key.Key_Return)
        assert window.composer.toPlainText() == ""
        assert window.chat.messages()[0].text.startswith("Write a long story")
        assert window.send_button.text() == "Stop"
        qtbot.waitUntil(lambda: len(answer_text(window)) > 10, timeout=30_000)
        first_seen = answer_text(window)
        qtbot.waitUntil(lambda: len(answer_text(window)) > len(first_seen) + 10, timeout=30_000)  # still growing
        with qtbot.waitSignal(window.answerFinished, timeout=10_000) as blocker:
            qtbot.mouseClick(window.send_button, Qt.MouseButton.LeftButton)
    assert gui_guard.entered == [], "blocking work on the GUI thread:\n" + "\n".join(gui_guard.entered)
    done = blocker.args[0]
    assert done.cancelled and done.stats.finish_reason == "cancelled"
    assert done.stats.completion_tokens < 600
    widget = window.chat.messages()[-1]
    assert widget.status == "cancelled" and widget.status_label.text() == "Stopped — partial answer"
    assert window.send_button.text() == "Send"
    assert "tokens/s" in window.stats_label.text() and "first token" in window.stats_label.text()
    wait_for_background()
    saved = services.history.message(widget.message_id)
    assert saved.status == "cancelled" and saved.content == done.text


def test_shift_enter_adds_a_line_and_enter_sends_both(qtbot, loaded_window, services):
    set_sampling(services, max_tokens=8)
    qtbot.keyClicks(loaded_window.composer, "first line")
    qtbot.keyClick(loaded_window.composer, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClicks(loaded_window.composer, "second line")
    assert loaded_window.live is None and loaded_window.composer.toPlainText() == "first line\nsecond line"
    with qtbot.waitSignal(loaded_window.answerFinished, timeout=60_000):
        qtbot.keyClick(loaded_window.composer, Qt.Key.Key_Return)
    wait_for_background()
    [conversation] = services.history.conversations()
    assert services.history.messages(conversation.id)[0].content == "first line\nsecond line"


def test_sidebar_new_search_rename_delete(qtbot, loaded_window, services, monkeypatch):
    window = loaded_window
    set_sampling(services, max_tokens=8)
    ask(qtbot, window, "Tell me about volcanoes")
    qtbot.waitUntil(lambda: window.sidebar.titles() == ["Tell me about volcanoes"])
    first_id = window.conversation_id
    qtbot.mouseClick(window.sidebar.new_button, Qt.MouseButton.LeftButton)
    assert window.conversation_id is None and window.chat.messages() == []
    ask(qtbot, window, "Recipe for pancakes")
    qtbot.waitUntil(lambda: window.sidebar.titles() == ["Recipe for pancakes", "Tell me about volcanoes"])

    qtbot.keyClicks(window.sidebar.search, "volc")
    qtbot.waitUntil(lambda: window.sidebar.titles() == ["Tell me about volcanoes"])
    window.sidebar.search.clear()
    qtbot.waitUntil(lambda: len(window.sidebar.titles()) == 2)

    window.sidebar.item_for(first_id).setText("Volcano notes")  # what finishing an inline edit does
    qtbot.waitUntil(lambda: services.history.conversation(first_id).title == "Volcano notes")
    qtbot.waitUntil(
        lambda: (
            window.sidebar.titles() == ["Volcano notes", "Recipe for pancakes"]
            or window.sidebar.titles() == ["Recipe for pancakes", "Volcano notes"]
        )
    )

    window.sidebar.list.setCurrentItem(window.sidebar.item_for(first_id))
    qtbot.waitUntil(
        lambda: (
            window.conversation_id == first_id
            and len(window.chat.messages()) == 2
            and window.chat.messages()[0].text == "Tell me about volcanoes"
        )
    )

    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    window.sidebar.deleteRequested.emit(first_id)
    qtbot.waitUntil(lambda: window.sidebar.titles() == ["Recipe for pancakes"])
    assert window.conversation_id is None and window.chat.messages() == []


def test_regenerate_and_edit_last_question(qtbot, loaded_window, services):
    window = loaded_window
    set_sampling(services, max_tokens=12, temperature=1.0)
    ask(qtbot, window, "Name an animal")
    assert window.regenerate_button.isEnabled()
    with qtbot.waitSignal(window.answerFinished, timeout=60_000):
        qtbot.mouseClick(window.regenerate_button, Qt.MouseButton.LeftButton)
    wait_for_background()
    assert [w.role for w in window.chat.messages()] == ["user", "assistant"]
    saved = services.history.messages(window.conversation_id)
    assert [m.role for m in saved] == ["user", "assistant"] and saved[1].id == window.chat.messages()[1].message_id

    qtbot.mouseClick(window.edit_button, Qt.MouseButton.LeftButton)
    assert window.composer.toPlainText() == "Name an animal" and window.edit_banner.isVisible()
    window.composer.selectAll()
    with qtbot.waitSignal(window.answerFinished, timeout=60_000):
        qtbot.keyClicks(window.composer, "Name a plant")
        qtbot.keyClick(window.composer, Qt.Key.Key_Return)
    wait_for_background()
    assert window.chat.messages()[0].text == "Name a plant"
    assert len(window.chat.messages()) == 2 and not window.edit_banner.isVisible()
    assert services.history.messages(window.conversation_id)[0].content == "Name a plant"


def test_code_blocks_are_highlighted_and_copyable(qtbot, window):
    answer = (
        "Here you go:\n\n```python\ndef add(a, b):\n    return a + b\n```\n\nAnd a shell line:\n\n```bash\nls -la\n```"
    )
    widget = window.chat.add_message("assistant", answer)
    blocks = widget.code_blocks()
    assert [b.language_label.text() for b in blocks] == ["Python", "Bash"]
    assert "<span" in blocks[0].view.toHtml()  # pygments colours survived into Qt's rich text
    qtbot.mouseClick(blocks[0].copy_button, Qt.MouseButton.LeftButton)
    assert QApplication.clipboard().text() == "def add(a, b):\n    return a + b"
    assert blocks[0].copy_button.text() == "Copied"
    assert isinstance(widget.segment_widgets()[0], ProseView)


def test_streaming_markdown_reuses_widgets_and_shows_open_fences_as_code(qtbot, window):
    widget = window.chat.add_message("assistant", "", "streaming")
    text = "Intro **bold**\n\n```js\nconst x = 1;\n"
    widget.set_text(text)
    first_prose, code = widget.segment_widgets()
    assert isinstance(code, CodeBlock) and code.code == "const x = 1;" and "bold" in first_prose.toPlainText()
    widget.set_text(text + "const y = 2;\n```\nDone.")
    prose_again, same_code, tail = widget.segment_widgets()
    assert prose_again is first_prose and same_code is code
    assert code.code == "const x = 1;\nconst y = 2;" and tail.toPlainText() == "Done."


def test_a_model_that_will_not_load_gives_a_message_and_questions_fail_politely(qtbot, window, services, corrupt_model):
    services.update_settings(lambda settings: settings.with_value("model.path", str(corrupt_model)))
    with qtbot.waitSignal(window.bridge.modelLoadFailed, timeout=60_000):
        window.start()
    qtbot.waitUntil(lambda: window.findChild(QMessageBox, "errorBox") is not None)
    box = window.findChild(QMessageBox, "errorBox")
    assert "could not load 'truncated.gguf'" in box.text()
    assert window.model_label.text() == "Model failed to load"
    box.close()
    failed = ask(qtbot, window, "Hello?")
    assert failed.failed
    widget = window.chat.messages()[-1]
    assert widget.status == "failed" and "failed to load" in widget.error_label.text()
    assert "Traceback" not in widget.error_label.text()


def test_settings_problems_are_shown_at_start(qtbot, locus_home):
    (locus_home / "config.toml").write_text("[model]\ncontext_size = 3\n", encoding="utf-8")
    from app.services import build_services
    from ui.main_window import MainWindow

    services = build_services()
    try:
        window = MainWindow(services, "test")
        qtbot.addWidget(window)
        window.show()
        with qtbot.waitSignal(window.bridge.modelLoaded, timeout=120_000):
            window.start()

        def texts():
            return [b.text() for b in window.findChildren(QMessageBox, "errorBox")]

        qtbot.waitUntil(lambda: any("model.context_size" in t for t in texts()), timeout=10_000)
        assert any("256 to 262144" in t for t in texts()), texts()
        assert services.backends.resolve("local")[1].model_info.n_ctx == 4096  # started on the default
    finally:
        wait_for_background()
        services.close()


def test_settings_dialog_saves_and_reloads_the_model(qtbot, loaded_window, services, locus_home):
    window = loaded_window

    def fill_dialog():
        dialog = QApplication.activeModalWidget()
        if not isinstance(dialog, SettingsDialog):  # not open yet on a busy machine: look again soon
            QTimer.singleShot(50, fill_dialog)
            return
        dialog.editors["model.context_size"].setValue(1024)
        dialog.editors["sampling.temperature"].setValue(0.3)
        dialog.editors["ui.theme"].setCurrentText("dark")
        dialog.accept()

    QTimer.singleShot(0, fill_dialog)
    with qtbot.waitSignal(window.bridge.modelLoaded, timeout=120_000) as blocker:
        window.open_settings()
    assert blocker.args[0].info.n_ctx == 1024
    config = (locus_home / "config.toml").read_text(encoding="utf-8")
    assert "context_size = 1024" in config and 'theme = "dark"' in config and "temperature = 0.3" in config
    assert services.assistant.settings.sampling.temperature == 0.3
    assert QApplication.palette().window().color().lightness() < 128


def test_reopening_a_conversation_shows_partial_answers_marked(qtbot, window, services):
    conversation = services.history.create_conversation()
    services.history.add_message(conversation.id, "user", "Question from yesterday")
    services.history.add_message(conversation.id, "assistant", "A half", status="interrupted")
    window.refresh_conversations()
    qtbot.waitUntil(lambda: window.sidebar.titles() == ["Question from yesterday"])
    window.sidebar.list.setCurrentRow(0)
    qtbot.waitUntil(lambda: len(window.chat.messages()) == 2)
    assert window.chat.messages()[1].status_label.text() == "Interrupted — partial answer"


def test_settings_dialog_round_trips_every_value_unchanged(qtbot):
    from app import settings as st

    values = st.to_values(
        st.Settings()
        .with_value("sampling.stop", ["\nUser:", "a\\b", "###"])
        .with_value("sampling.seed", 2**31 - 1)
        .with_value("sampling.temperature", 0.125)
    )
    dialog = SettingsDialog(st.SPECS, values)
    qtbot.addWidget(dialog)
    assert dialog.values() == values


def test_leaving_a_conversation_while_it_streams_keeps_the_window_working(qtbot, loaded_window, services):
    window = loaded_window
    set_sampling(services, max_tokens=300, seed=4)
    qtbot.keyClicks(window.composer, "Write a long story about a lighthouse.")
    qtbot.keyClick(window.composer, Qt.Key.Key_Return)
    qtbot.waitUntil(
        lambda: window.live is not None and window.live.started is not None and len(window.live.text) > 5,
        timeout=30_000,
    )
    streaming_id = window.live.conversation_id
    qtbot.mouseClick(window.sidebar.new_button, Qt.MouseButton.LeftButton)  # leave while it streams
    assert window.conversation_id is None and window.chat.messages() == []
    with qtbot.waitSignal(window.answerFinished, timeout=60_000):
        window.stop()
    assert window.send_button.text() == "Send" and window.chat.messages() == []
    window.sidebar.list.setCurrentItem(window.sidebar.item_for(streaming_id))  # back to it: all saved
    qtbot.waitUntil(lambda: len(window.chat.messages()) == 2, timeout=10_000)
    assert window.chat.messages()[1].status == "cancelled" and window.chat.messages()[1].text
    qtbot.mouseClick(window.sidebar.new_button, Qt.MouseButton.LeftButton)
    window.sidebar.list.setCurrentItem(window.sidebar.item_for(streaming_id))  # the one just left opens again
    qtbot.waitUntil(lambda: window.conversation_id == streaming_id and len(window.chat.messages()) == 2)


def test_settings_say_where_embeddings_run(qtbot, loaded_window, services):
    from app import settings as st

    qtbot.waitUntil(lambda: services.library is not None, timeout=60_000)
    before = SettingsDialog(st.SPECS, st.to_values(services.settings))
    qtbot.addWidget(before)
    before.show_embedding_device(services.embedding_device(start=False))  # the worker has not started
    assert "decided when the embedding model first starts" in before.notes["documents"].text()

    services.library.embedder.embed(["start the worker"])  # indexing starts it (a question alone does not)
    dialog = SettingsDialog(st.SPECS, st.to_values(services.settings))
    qtbot.addWidget(dialog)
    dialog.show_embedding_device(services.embedding_device(start=False))
    # No GPU here: torch has neither CUDA nor MPS, so the embedding worker runs on the CPU in float32.
    assert dialog.notes["documents"].text() == "Embeddings run on: CPU (float32)"
