"""Writing parsed conversations into the history: all of them in one transaction, or none."""

from __future__ import annotations

import json
import sqlite3
import time

from engine.history.imports import base
from engine.history.imports.base import Parsed, ParsedConversation, clean_name
from engine.history.projects import NAME_MAX_CHARS
from engine.history.store import HistoryStore

_STATUSES = frozenset({"complete", "cancelled", "failed", "interrupted"})


def _dump(value: object) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


class _Projects:
    """The projects an import puts its conversations in: found by name, or made, MAX_NEW_PROJECTS at most."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db
        self.ids: dict[str, int | None] = {}
        self.made = 0
        self.left_out = 0  # conversations that came in without their project (past the cap)

    def id_of(self, name: str | None) -> int | None:
        """The project of that name (the first one made, when several share it), made when there is none
        and this import has made fewer than MAX_NEW_PROJECTS (past that: None, counted)."""
        name = clean_name(name, NAME_MAX_CHARS)  # one line, no control or bidi characters
        if not name:
            return None
        if name not in self.ids:
            row = self.db.execute("SELECT id FROM projects WHERE name = ? ORDER BY id LIMIT 1", (name,)).fetchone()
            if row is not None:
                self.ids[name] = row[0]
            elif self.made >= base.MAX_NEW_PROJECTS:
                self.ids[name] = None
            else:
                position = self.db.execute("SELECT COALESCE(MAX(position), -1) + 1 FROM projects").fetchone()[0]
                cur = self.db.execute(
                    "INSERT INTO projects(name, created_at, position) VALUES (?, ?, ?)", (name, time.time(), position)
                )
                self.ids[name] = int(cur.lastrowid or 0)
                self.made += 1
        if self.ids[name] is None:
            self.left_out += 1
        return self.ids[name]


def _write_conversation(db: sqlite3.Connection, c: ParsedConversation, projects: _Projects) -> int:
    cur = db.execute(
        "INSERT INTO conversations(title, title_is_auto, created_at, updated_at, collections, backend, tools, "
        "project_id, assistant_id, pinned) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            c.title,
            1 if c.title_is_auto else 0,
            c.created_at,
            c.updated_at,
            None if c.collections is None else json.dumps(sorted(set(c.collections))),
            c.backend,
            json.dumps(c.tools) if c.tools else None,
            projects.id_of(c.project),
            c.assistant_id,
            1 if c.pinned else 0,
        ),
    )
    conversation_id = int(cur.lastrowid or 0)
    ids: dict[str, int] = {}
    for m in c.messages:
        # An answer still being written in the exporting Locus is, here, one that stopped.
        status = m.status if m.status in _STATUSES else "interrupted"
        cur = db.execute(
            "INSERT INTO messages(conversation_id, role, content, status, created_at, stats, error, sources, "
            "parent_id, kind, answered_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                conversation_id,
                m.role,
                m.content,
                status,
                m.created_at,
                _dump(m.stats),
                m.error,
                _dump(m.sources),
                None if m.parent is None else ids[m.parent],
                m.kind,
                _dump(m.answered_by),
            ),
        )
        ids[m.key] = int(cur.lastrowid or 0)
    leaf = ids.get(c.current_leaf) if c.current_leaf is not None else None
    if leaf is not None:
        db.execute("UPDATE conversations SET current_leaf = ? WHERE id = ?", (leaf, conversation_id))
    return conversation_id


def save(store: HistoryStore, parsed: Parsed, notes: dict[str, int] | None = None) -> list[int]:
    """Write every conversation of ``parsed`` in one transaction; their new ids, in the file's order.
    A failure on any of them (a full disk, a constraint) rolls all of them back. ``notes``: what was not
    carried over is counted there (conversations left without a project past MAX_NEW_PROJECTS)."""
    with store.transaction() as db:
        projects = _Projects(db)
        ids = [_write_conversation(db, c, projects) for c in parsed.conversations]
    if projects.left_out and notes is not None:
        key = f"projects past the first {base.MAX_NEW_PROJECTS} new ones (conversations)"
        notes[key] = notes.get(key, 0) + projects.left_out
    return ids
