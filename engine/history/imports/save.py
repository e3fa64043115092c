"""Writing parsed conversations into the history: all of them in one transaction, or none."""

from __future__ import annotations

import json
import sqlite3
import time

from engine.history.imports.base import Parsed, ParsedConversation
from engine.history.projects import NAME_MAX_CHARS
from engine.history.store import HistoryStore

_STATUSES = frozenset({"complete", "cancelled", "failed", "interrupted"})


def _dump(value: object) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


def _project_id(db: sqlite3.Connection, name: str | None, projects: dict[str, int]) -> int | None:
    """The project of that name (the first one made, when several share it), made when there is none."""
    name = " ".join((name or "").split())[:NAME_MAX_CHARS]  # as engine/history/projects.py names them
    if not name:
        return None
    if name not in projects:
        row = db.execute("SELECT id FROM projects WHERE name = ? ORDER BY id LIMIT 1", (name,)).fetchone()
        if row is None:
            position = db.execute("SELECT COALESCE(MAX(position), -1) + 1 FROM projects").fetchone()[0]
            cur = db.execute(
                "INSERT INTO projects(name, created_at, position) VALUES (?, ?, ?)", (name, time.time(), position)
            )
            projects[name] = int(cur.lastrowid or 0)
        else:
            projects[name] = row[0]
    return projects[name]


def _write_conversation(db: sqlite3.Connection, c: ParsedConversation, projects: dict[str, int]) -> int:
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
            _project_id(db, c.project, projects),
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


def save(store: HistoryStore, parsed: Parsed) -> list[int]:
    """Write every conversation of ``parsed`` in one transaction; their new ids, in the file's order.
    A failure on any of them (a full disk, a constraint) rolls all of them back."""
    projects: dict[str, int] = {}
    with store.transaction() as db:
        return [_write_conversation(db, c, projects) for c in parsed.conversations]
