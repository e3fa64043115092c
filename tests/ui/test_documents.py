"""Documents in the real window: drop files, watch them index, ask, open the cited page."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess

from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from engine.rag.store import DocumentRecord
from tests.app.helpers import LOCUS
from tests.conftest import PDF_ODDITIES
from ui.ops import wait_for_background

CORPUS = PDF_ODDITIES


def drop(widget, paths):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    enter = QDragEnterEvent(
        QPoint(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    QApplication.sendEvent(widget, enter)
    assert enter.isAccepted()
    event = QDropEvent(
        QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    QApplication.sendEvent(widget, event)
    assert event.isAccepted()


def test_drop_index_ask_and_open_the_cited_page(qtbot, loaded_window, services, tmp_path, gui_guard):
    window = loaded_window
    qtbot.waitUntil(lambda: window.documents.library is not None, timeout=60_000)
    # The embedding model loads on the first document (importing it takes seconds): that too must
    # not run on the GUI thread, so it is inside the guard's watch below.
    folder = tmp_path / "papers"
    folder.mkdir()
    shutil.copy(CORPUS / "pdflatex-outline.pdf", folder)
    (folder / "ferry.md").write_text(
        "# Ferry\n\nThe island ferry leaves the pier at 08:15 every weekday.\n", encoding="utf-8"
    )
    shutil.copy(CORPUS / "r4-user-password.pdf", folder)
    shutil.copy(CORPUS / "Seige_of_Vicksburg_Sample_OCR.pdf", folder)
    with gui_guard:
        drop(
            window,
            [
                folder / "pdflatex-outline.pdf",
                folder / "ferry.md",
                folder / "r4-user-password.pdf",
                folder / "Seige_of_Vicksburg_Sample_OCR.pdf",
            ],
        )
        panel = window.documents.panel
        qtbot.waitUntil(
            lambda: (
                sorted(panel.rows())
                == [
                    ("Seige_of_Vicksburg_Sample_OCR.pdf", "default", "done"),
                    ("ferry.md", "default", "done"),
                    ("pdflatex-outline.pdf", "default", "done"),
                    ("r4-user-password.pdf", "default", "failed: password protected"),
                ]
            ),
            timeout=180_000,
        )
    assert gui_guard.entered == [], "blocking work on the GUI thread:\n" + "\n".join(gui_guard.entered)
    qtbot.waitUntil(lambda: "Collection: default" in [a.text() for a in window.documents_selector.menu().actions()])

    window.documents_selector.choose([])  # all documents
    chat = services.assistant.settings
    services.assistant.settings = dataclasses.replace(
        chat, sampling=dataclasses.replace(chat.sampling, temperature=0.0, max_tokens=60)
    )
    with qtbot.waitSignal(window.answerFinished, timeout=120_000) as blocker:
        qtbot.keyClicks(window.composer, "What time does the island ferry leave the pier?")
        qtbot.keyClick(window.composer, Qt.Key.Key_Return)
    assert blocker.args[0].complete
    answer = window.chat.messages()[-1]
    buttons = answer.sources.buttons()
    assert buttons, f"no sources under: {answer.text!r}"
    assert "ferry.md" in buttons[0].text()
    qtbot.mouseClick(buttons[0], Qt.MouseButton.LeftButton)
    viewer = window.documents.viewers[-1]
    assert viewer.current_line == 3 and "08:15" in viewer.text_view.textCursor().block().text()
    viewer.close()
    wait_for_background()
    saved = services.history.messages(window.conversation_id)[-1]
    assert saved.sources and saved.sources[0]["path"].endswith("ferry.md")

    # A fact on page 3 of a scanned-and-OCRed PDF: its source opens the viewer at page 3.
    with qtbot.waitSignal(window.answerFinished, timeout=120_000):
        qtbot.keyClicks(window.composer, "What is cannister shot filled with?")
        qtbot.keyClick(window.composer, Qt.Key.Key_Return)
    buttons = window.chat.messages()[-1].sources.buttons()
    pdf_buttons = [b for b in buttons if "Vicksburg" in b.text() or "Binder1" in b.text()]
    assert pdf_buttons and "page 3" in pdf_buttons[0].text(), [b.text() for b in buttons]
    qtbot.mouseClick(pdf_buttons[0], Qt.MouseButton.LeftButton)
    viewer = window.documents.viewers[-1]
    qtbot.waitUntil(lambda: viewer.current_page == 3)


def test_a_pdf_source_opens_at_its_page(qtbot, window):
    viewer = window.documents.open_source(
        {
            "path": str(CORPUS / "pdflatex-outline.pdf"),
            "kind": "pdf",
            "page": 2,
            "location": "page 2",
            "title": "outline",
        }
    )
    qtbot.waitUntil(lambda: viewer.current_page == 2)
    assert viewer.pdf_view is not None and viewer.document.pageCount() >= 2
    missing = window.documents.open_source({"path": "/nowhere/gone.pdf", "kind": "pdf", "page": 1})
    assert "no longer at" in missing.error


def test_paused_indexing_says_so_in_the_window_and_goes_on_when_resumed(qtbot, window, tmp_path):
    window.start()
    qtbot.waitUntil(lambda: window.documents.library is not None, timeout=60_000)
    library, panel, status = window.documents.library, window.documents.panel, window.statusBar()
    note = tmp_path / "tide.md"
    note.write_text("# Tides\n\nHigh tide at the harbour is at 14:20 today.\n", encoding="utf-8")
    library.pause_indexing()
    drop(window, [note])
    qtbot.waitUntil(lambda: panel.progress_label.text().startswith("Indexing paused"), timeout=60_000)
    assert status.currentMessage().startswith("Indexing paused")
    library.resume_indexing()
    qtbot.waitUntil(lambda: ("tide.md", "default", "done") in panel.rows(), timeout=180_000)
    qtbot.waitUntil(lambda: not status.currentMessage().startswith("Indexing paused"), timeout=10_000)


def test_documents_indexed_and_removed_by_another_process_show_without_a_restart(qtbot, window, locus_home, tmp_path):
    """`locus index` and `locus docs remove` run as their own processes on the same data folder while the
    window is open: the panel and the Documents selector follow, with nothing clicked."""
    window.documents.open()
    qtbot.waitUntil(lambda: window.documents.library is not None, timeout=60_000)
    panel, selector = window.documents.panel, window.documents_selector
    note = tmp_path / "harbour.md"
    note.write_text("# Harbour\n\nThe harbour master's office opens at 07:30.\n", encoding="utf-8")
    env = dict(os.environ, LOCUS_HOME=str(locus_home))

    def run_locus(*args: str) -> subprocess.Popen:
        return subprocess.Popen([LOCUS, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    indexing = run_locus("index", str(note), "--collection", "harbour")
    qtbot.waitUntil(lambda: indexing.poll() is not None, timeout=240_000)  # the window keeps running meanwhile
    assert indexing.returncode == 0, indexing.stdout.read()
    qtbot.waitUntil(lambda: ("harbour.md", "harbour", "done") in panel.rows(), timeout=30_000)
    qtbot.waitUntil(lambda: "Collection: harbour" in [a.text() for a in selector.menu().actions()], timeout=10_000)

    removing = run_locus("docs", "remove", str(note))
    qtbot.waitUntil(lambda: removing.poll() is not None, timeout=120_000)
    assert removing.returncode == 0, removing.stdout.read()
    qtbot.waitUntil(lambda: all(row[0] != "harbour.md" for row in panel.rows()), timeout=30_000)
    qtbot.waitUntil(lambda: "Collection: harbour" not in [a.text() for a in selector.menu().actions()], timeout=10_000)


def record(doc_id: str, status: str = "done", collection: str = "default") -> DocumentRecord:
    return DocumentRecord(
        doc_id=doc_id,
        path=f"/docs/{doc_id}.md",
        collection=collection,
        title="",
        kind="markdown",
        status=status,
        reason="",
        message="",
        content_hash="",
        size=1,
        mtime=0.0,
        n_chunks=2,
        pages=0,
        updated_at=0.0,
    )


def test_the_list_read_again_keeps_the_selection_and_changes_only_rows_that_changed(qtbot, window):
    """The list is read again whenever any process changes the index, even while the user works in it."""
    panel = window.documents.panel
    panel.set_documents([record("a"), record("b")])
    chosen = panel.item_for("b")
    panel.tree.setCurrentItem(chosen)
    unchanged = panel.item_for("a")
    panel.set_documents([record("a"), record("b", status="failed"), record("c")])
    assert panel.item_for("b") is chosen and chosen.isSelected() and panel.tree.currentItem() is chosen
    assert panel.item_for("a") is unchanged
    assert panel.rows() == [("a.md", "default", "done"), ("b.md", "default", "failed"), ("c.md", "default", "done")]
    panel.set_documents([record("b", status="failed"), record("c")])  # "a" removed by another process
    assert [row[0] for row in panel.rows()] == ["b.md", "c.md"] and chosen.isSelected()


def test_an_answer_lists_every_passage_it_was_given_and_says_when_it_rests_on_none(qtbot, window, services, tmp_path):
    from PySide6.QtWidgets import QLabel

    from tests.ui.test_untrusted_text import save_and_reopen

    def source(number: int, name: str, supported: bool) -> dict:
        path = tmp_path / name
        path.write_text(f"# {name}\n\nSome words.\n", encoding="utf-8")
        return {
            "number": number, "path": str(path), "title": name, "kind": "markdown", "page": None,
            "line_start": 3, "line_end": 3, "location": "line 3", "quote": "Some words.", "explicit": False,
            "supported": supported,
        }  # fmt: skip

    def note(widget) -> list[str]:
        return [
            label.text() for label in widget.sources.findChildren(QLabel) if label.objectName() == "sourcesUnsupported"
        ]

    rests = save_and_reopen(
        qtbot, window, services, "Ferries leave at 08:15 [2].", [source(2, "b.md", True), source(1, "a.md", False)]
    )
    assert [b.text() for b in rests.sources.buttons()] == ["[2]  b.md · line 3", "[1]  a.md · line 3 · not cited"]
    assert note(rests) == []
    bare = save_and_reopen(qtbot, window, services, "Hello!", [source(1, "a.md", False), source(2, "b.md", False)])
    assert [b.text() for b in bare.sources.buttons()] == ["[1]  a.md · line 3", "[2]  b.md · line 3"]
    assert note(bare) == ["The answer may not rest on these passages: none of its sentences matched one of them."]
