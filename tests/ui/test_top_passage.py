"""The top passage beside an answer from documents, in the real window with the bundled model."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def ask(qtbot, window, text: str) -> None:
    with qtbot.waitSignal(window.answerFinished, timeout=180_000):
        qtbot.keyClicks(window.composer, text)
        qtbot.keyClick(window.composer, Qt.Key.Key_Return)


def test_a_which_document_question_shows_the_top_passage_and_a_chat_question_does_not(
    qtbot, loaded_window, services, tmp_path
):
    window = loaded_window
    if os.environ.get("LOCUS_SCREENSHOTS"):  # the window as the app styles it
        from PySide6.QtWidgets import QApplication

        from ui.theme import apply_theme

        app = QApplication.instance()
        before = (app.style().name(), app.palette(), app.styleSheet())
        apply_theme(app, "light")
    qtbot.waitUntil(lambda: window.documents.library is not None, timeout=60_000)
    (tmp_path / "ferry.md").write_text(
        "# Ferry\n\nThe island ferry leaves the pier at 08:15 every weekday.\n", encoding="utf-8"
    )
    (tmp_path / "garden.md").write_text(
        "# Garden\n\nTomatoes need six hours of sun a day and water every morning.\n", encoding="utf-8"
    )
    window.documents.handle_drop([str(tmp_path / "ferry.md"), str(tmp_path / "garden.md")])
    for name in ("ferry.md", "garden.md"):
        qtbot.waitUntil(lambda n=name: (n, "default", "done") in window.documents.panel.rows(), timeout=120_000)
    window.documents_selector.choose([])  # answer from all documents
    chat = services.assistant.settings
    services.assistant.settings = dataclasses.replace(
        chat, sampling=dataclasses.replace(chat.sampling, temperature=0.0, max_tokens=40)
    )

    ask(qtbot, window, "Which document says when the island ferry leaves the pier?")
    answer = window.chat.messages()[-1]
    box = answer.top_passage
    assert box.isVisible()
    top = box.source
    assert top["number"] == 1 and top["path"] == str(tmp_path / "ferry.md")  # the first passage retrieved
    assert box.title() == f"Top passage \u2014 ferry.md \u00b7 {top['location']}" and top["location"]
    assert "08:15" in box.text.text() and box.text.textFormat() == Qt.TextFormat.PlainText
    if os.environ.get("LOCUS_SCREENSHOTS"):
        qtbot.wait(300)
        folder = Path(os.environ["LOCUS_SCREENSHOTS"])
        folder.mkdir(parents=True, exist_ok=True)
        assert window.grab().save(str(folder / "top-passage.png"))
        from PySide6.QtWidgets import QStyleFactory

        app.setStyleSheet(before[2])
        app.setPalette(before[1])
        app.setStyle(QStyleFactory.create(before[0]))

    # Clicking it opens the source viewer at the passage, as a source does.
    with qtbot.waitSignal(window.chat.sourceClicked, timeout=5_000) as clicked:
        qtbot.mouseClick(box, Qt.MouseButton.LeftButton)
    assert clicked.args[0]["path"] == str(tmp_path / "ferry.md")
    viewer = window.documents.viewers[-1]
    qtbot.waitUntil(lambda: viewer.isVisible(), timeout=10_000)
    assert top["line_start"] <= viewer.current_line <= top["line_end"]
    viewer.close()

    # Reopened from history, the answer shows it again.
    conversation = window.conversation_id
    window.new_conversation()
    window.open_conversation(conversation)
    # Widgets added to a shown view are shown by a queued call: wait for it, not only for the widgets.
    qtbot.waitUntil(lambda: len(window.chat.messages()) == 2 and window.chat.messages()[-1].isVisible(), timeout=10_000)
    again = window.chat.messages()[-1].top_passage
    assert again.isVisible() and again.source["path"] == top["path"] and "08:15" in again.text.text()

    # A question asked without documents has no passages: no box, even when it asks "which document".
    window.new_conversation()
    window.documents_selector.choose(None)
    ask(qtbot, window, "Which document is the best one to read first?")
    plain = window.chat.messages()[-1]
    assert plain.role == "assistant" and plain.text and not plain.top_passage.isVisible()


def test_a_saved_answer_resting_on_no_passage_shows_the_first_one_as_plain_text(qtbot, window, services, tmp_path):
    from tests.ui.test_untrusted_text import save_and_reopen

    hostile = '<img src="/dev/zero"><b>Ferries</b> leave at 08:15 & not later.'

    def source(number: int, supported: bool, **extra) -> dict:
        path = tmp_path / f"{number}.md"
        path.write_text(f"# {number}\n\n{hostile}\n", encoding="utf-8")
        return {
            "number": number, "path": str(path), "title": path.name, "kind": "markdown", "page": None,
            "line_start": 1, "line_end": 3, "location": "lines 1–3", "quote": "An older quote.",
            "explicit": False, "supported": supported, **extra,
        }  # fmt: skip

    # The saved question ("What do the documents say?") does not ask for a passage: only an answer that
    # rests on none of its passages shows the top one.
    bare = save_and_reopen(qtbot, window, services, "Hello!", [source(2, False, text=hostile), source(1, False)])
    assert bare.top_passage.isVisible() and bare.top_passage.source["number"] == 1
    assert bare.top_passage.title() == "Top passage \u2014 1.md \u00b7 lines 1–3"
    assert bare.top_passage.text.text() == "An older quote."  # saved before passages kept their text
    again = save_and_reopen(qtbot, window, services, "Hi!", [source(1, False, text=hostile), source(2, False)])
    assert again.top_passage.text.text() == hostile and again.top_passage.text.textFormat() == Qt.TextFormat.PlainText
    rests = save_and_reopen(qtbot, window, services, "At 08:15 [2].", [source(2, True), source(1, False)])
    assert not rests.top_passage.isVisible() and rests.sources.isVisible()


@pytest.mark.parametrize(
    "path", [r"C:\Users\ana\Reports\ferry.md", "/home/ana/Reports/ferry.md", r"\\server\share\Reports\ferry.md"]
)
def test_the_top_passage_names_the_file_of_a_windows_path_as_of_a_posix_one(qtbot, path):
    """A history or answer saved on Windows (or shared from there) names only the file, not its folders."""
    from ui.chat.top_passage import TopPassage

    box = TopPassage()
    qtbot.addWidget(box)
    source = {"number": 1, "path": path, "location": "lines 1–3", "text": "Ferries leave at 08:15.", "supported": False}
    box.show_for("Hello!", [source])
    assert box.title() == "Top passage \u2014 ferry.md \u00b7 lines 1–3"
