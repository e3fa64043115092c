"""The GUI-thread guard the window tests rely on: it sees blocking work on the GUI thread, and only there."""

from __future__ import annotations

import sqlite3
import threading

import lancedb

from engine.rag.loaders import load


def test_sqlite_lancedb_and_parsing_on_the_gui_thread_are_recorded_with_their_caller(gui_guard, tmp_path):
    note = tmp_path / "note.md"
    note.write_text("# A note\n\nSome text.\n", encoding="utf-8")
    with gui_guard:
        sqlite3.connect(":memory:").execute("select 1")
        lancedb.connect(tmp_path / "index")
        load(note)
    seams = [line.split(":")[0] for line in gui_guard.entered]
    assert {"SQLite", "LanceDB", "document parsing"} <= set(seams), gui_guard.entered
    assert all("test_gui_guard.py:" in line for line in gui_guard.entered), gui_guard.entered


def test_the_same_work_on_another_thread_is_not_recorded(gui_guard, tmp_path):
    def work():
        sqlite3.connect(":memory:").execute("select 1")
        lancedb.connect(tmp_path / "index")

    with gui_guard:
        worker = threading.Thread(target=work)
        worker.start()
        worker.join()
    assert gui_guard.entered == []


def test_nothing_is_recorded_once_disarmed(gui_guard):
    with gui_guard:
        pass
    sqlite3.connect(":memory:").execute("select 1")
    assert gui_guard.entered == []
