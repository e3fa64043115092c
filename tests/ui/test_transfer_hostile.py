"""The real window opens imported conversations whose answers carry stats of the wrong types: every message is
shown, no error. Stats an older import saved as they were are shown without the figures that are not numbers."""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtWidgets import QMessageBox

from ui.chat.message_details import stats_line

DATA = Path(__file__).resolve().parents[1] / "data" / "imports"
HOSTILE = {
    "prompt_tokens": "12",
    "completion_tokens": 5,
    "total_s": "2",
    "generations": "2",
    "generation_s": [],
    "tokens_per_s": "fast",
    "trace_id": "0123456789abcdef0123456789abcdef",
    "details": {"tool_calls": [{"id": "1", "name": "calculator", "step": "²", "status": "ok"}]},
}


def _error_boxes(window) -> list[QMessageBox]:
    return [b for b in window.findChildren(QMessageBox, "errorBox") if b.isVisible()]


def test_stats_line_ignores_figures_that_are_not_numbers():
    assert stats_line(HOSTILE) == "0 prompt + 5 answer tokens"
    assert stats_line({"prompt_tokens": 3, "completion_tokens": 2, "total_s": 1.0, "generation_s": 0.5}) == (
        "3 prompt + 2 answer tokens · 1.0 s · 4.0 tokens/s"
    )
    assert stats_line({"completion_tokens": float("nan")}) == ""


def test_the_window_shows_an_imported_conversation_with_hostile_stats(qtbot, window, monkeypatch, tmp_path):
    data = json.loads((DATA / "locus-two.json").read_text(encoding="utf-8"))
    data["conversations"][1]["messages"][1]["stats"] = HOSTILE
    path = tmp_path / "hostile.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    monkeypatch.setattr(window.transfer, "ask_open_path", lambda: path)
    window.transfer.import_action.trigger()
    qtbot.waitUntil(lambda: "Imported 2 conversations" in window.statusBar().currentMessage(), timeout=20_000)
    history = window.services.history
    second = next(c for c in history.conversations() if c.title == "Second")
    assert "trace_id" not in (history.all_messages(second.id)[1].stats or {})
    window.open_conversation(second.id)
    qtbot.waitUntil(lambda: [w.text for w in window.chat.messages()] == ["What is 2+2?", "4", "Thanks"], timeout=20_000)
    assert not _error_boxes(window)


def test_the_window_shows_stats_an_older_import_saved_as_they_were(qtbot, window):
    history = window.services.history
    c = history.create_conversation("Older import")
    q = history.add_message(c.id, "user", "Hi")
    a = history.add_message(c.id, "assistant", "Hello", parent_id=q.id)
    history.update_message(a.id, stats={k: v for k, v in HOSTILE.items() if k != "details"})
    window.open_conversation(c.id)
    qtbot.waitUntil(lambda: [w.text for w in window.chat.messages()] == ["Hi", "Hello"], timeout=20_000)
    assert window.chat.messages()[1].details.stats_text == "0 prompt + 5 answer tokens"
    assert not _error_boxes(window)
    window.grab().save("/tmp/transfer-hostile-stats.png")


def test_an_imported_source_keeps_its_file_only_when_it_is_indexed_here(qtbot, window, monkeypatch, tmp_path):
    from tests.ui.test_documents import drop

    window.start()
    qtbot.waitUntil(lambda: window.documents.library is not None, timeout=60_000)
    library, panel = window.documents.library, window.documents.panel
    note = tmp_path / "tea.txt"
    note.write_text("Green tea steeps for two to three minutes at about 80 degrees.", encoding="utf-8")
    drop(window, [note])
    qtbot.waitUntil(lambda: ("tea.txt", "default", "done") in set(panel.rows()), timeout=180_000)
    doc = next(d for d in library.documents() if d.path.endswith("tea.txt"))
    data = json.loads((DATA / "locus-two.json").read_text(encoding="utf-8"))
    data["conversations"][1]["messages"][1]["sources"] = [
        {"number": 1, "path": doc.path, "doc_id": doc.doc_id, "title": "tea.txt", "quote": "two to three"},
        {"number": 2, "path": "/proc/self/environ", "doc_id": doc.doc_id, "title": "environ", "quote": "x"},
    ]
    data["conversations"][1]["settings"]["collections"] = ["default", "elsewhere"]
    path = tmp_path / "sources.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    monkeypatch.setattr(window.transfer, "ask_open_path", lambda: path)
    window.transfer.import_action.trigger()
    qtbot.waitUntil(lambda: "Imported 2 conversations" in window.statusBar().currentMessage(), timeout=20_000)
    assert "links to documents not indexed here (1)" in window.statusBar().currentMessage()
    history = window.services.history
    second = next(c for c in history.conversations() if c.title == "Second")
    assert history.conversation(second.id).collections == ["default"]
    kept, dropped = history.all_messages(second.id)[1].sources
    assert (kept["path"], kept["doc_id"]) == (doc.path, doc.doc_id)
    assert dropped == {"number": 2, "path": "", "title": "environ", "quote": "x", "imported": True}
