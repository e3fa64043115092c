"""File › Import conversations… and Export conversation… in the real window (real services, temp LOCUS_HOME).
The file dialogs are the one thing answered by the test (their own methods on TransferActions)."""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

import pypdf
from PySide6.QtWidgets import QMessageBox

DATA = Path(__file__).resolve().parents[1] / "data" / "imports"


def _titles(window) -> list[str]:
    items = window.sidebar.list
    return [items.item(i).text() for i in range(items.count())]


def _error_boxes(window) -> list[QMessageBox]:
    return [b for b in window.findChildren(QMessageBox, "errorBox") if b.isVisible()]


def test_import_action_brings_conversations_into_the_list_and_opens_one(qtbot, window, monkeypatch):
    actions = window.transfer
    menu_texts = [a.text() for a in window.menuBar().actions()[0].menu().actions()]
    assert "&Import conversations…" in menu_texts and "&Export conversation…" in menu_texts
    monkeypatch.setattr(actions, "ask_open_path", lambda: DATA / "chatgpt-conversations.json")
    actions.import_action.trigger()
    qtbot.waitUntil(lambda: "Imported 2 conversations" in window.statusBar().currentMessage(), timeout=20_000)
    qtbot.waitUntil(lambda: any("Haiku about rain" in t for t in _titles(window)), timeout=20_000)
    assert any("Boiling point at altitude" in t for t in _titles(window))
    qtbot.waitUntil(lambda: window.conversation_id is not None, timeout=20_000)
    assert window.services.history.conversation(window.conversation_id).title == "Boiling point at altitude"
    window.grab().save("/tmp/transfer-import.png")


def test_a_refused_import_shows_why_and_saves_nothing(qtbot, window, monkeypatch, tmp_path):
    bad = tmp_path / "conversations.json"
    data = json.loads((DATA / "chatgpt-conversations.json").read_text(encoding="utf-8"))
    data[1]["mapping"]["q2"]["message"]["content"]["parts"] = [42]
    bad.write_text(json.dumps(data), encoding="utf-8")
    monkeypatch.setattr(window.transfer, "ask_open_path", lambda: bad)
    window.transfer.import_action.trigger()
    qtbot.waitUntil(lambda: bool(_error_boxes(window)), timeout=20_000)
    text = _error_boxes(window)[0].text()
    assert "'conversations.json' was not imported" in text and "expected text or an object" in text
    assert "Nothing was saved." in text
    assert window.services.history.conversations() == []


def test_export_conversation_as_pdf(qtbot, window, monkeypatch, tmp_path):
    history = window.services.history
    c = history.create_conversation("Tea")
    history.add_message(c.id, "user", "How long should green tea steep?")
    history.add_message(c.id, "assistant", "Two to three minutes, at about 80 °C.")
    window.open_conversation(c.id)
    qtbot.waitUntil(lambda: window.conversation_id == c.id, timeout=20_000)
    out = tmp_path / "tea.pdf"
    asked = []
    monkeypatch.setattr(window.transfer, "ask_save_path", lambda stem: asked.append(stem) or (out, "pdf"))
    window.transfer.export_conversation_action.trigger()
    qtbot.waitUntil(lambda: "Exported to" in window.statusBar().currentMessage(), timeout=30_000)
    assert asked == [f"{c.id}-Tea"]
    text = " ".join(page.extract_text() for page in pypdf.PdfReader(str(out)).pages)
    text = re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text))
    assert "Tea" in text and "Two to three minutes, at about 80 °C." in text


def test_export_project_as_json(qtbot, window, monkeypatch, tmp_path):
    from engine.history.imports import import_file

    import_file(window.services.history, DATA / "locus-two.json")  # its second conversation is in "Work"
    out = tmp_path / "work.json"
    monkeypatch.setattr(window.transfer, "ask_project", lambda names: names[names.index("Work")])
    monkeypatch.setattr(window.transfer, "ask_save_path", lambda stem: (out, "json"))
    window.transfer.export_project_action.trigger()
    qtbot.waitUntil(lambda: "Exported to" in window.statusBar().currentMessage(), timeout=20_000)
    exported = json.loads(out.read_text(encoding="utf-8"))
    assert [c["title"] for c in exported["conversations"]] == ["Second"]
    assert exported["conversations"][0]["settings"]["project"] == "Work"


def test_an_imported_answer_with_odd_stats_and_sources_opens(qtbot, window, monkeypatch, tmp_path):
    """A Locus file may carry stats and sources no Locus wrote: the window opens the conversation anyway."""
    data = json.loads((DATA / "locus-two.json").read_text(encoding="utf-8"))
    answer = data["conversations"][1]["messages"][1]
    answer["stats"] = {"details": {"tool_calls": "none"}, "trace_id": 5, "tokens_per_s": "fast", "total_s": []}
    answer["sources"] = [{"number": 1, "path": "/nowhere/a.pdf", "page": 2, "extra": {"x": [1]}, "supported": False}]
    answer["answered_by"] = {"assistant": 12, "model": ["x"]}
    path = tmp_path / "odd.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    monkeypatch.setattr(window.transfer, "ask_open_path", lambda: path)
    window.transfer.import_action.trigger()
    qtbot.waitUntil(lambda: "Imported 2 conversations" in window.statusBar().currentMessage(), timeout=20_000)
    second = next(c for c in window.services.history.conversations() if c.title == "Second")
    window.open_conversation(second.id)
    qtbot.waitUntil(lambda: window.conversation_id == second.id, timeout=20_000)
    qtbot.waitUntil(lambda: [w.text for w in window.chat.messages()] == ["What is 2+2?", "4", "Thanks"], timeout=20_000)
    saved = window.services.history.all_messages(second.id)[1]
    assert saved.sources == [{"number": 1, "path": "", "page": 2, "supported": False, "imported": True}]
    assert not _error_boxes(window)
