"""The conversation database's tables (schema 7) and the steps that bring an older file there."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

from engine.errors import HistoryError

SCHEMA_VERSION = 7

_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,  -- ids are never reused
    title         TEXT NOT NULL,
    title_is_auto INTEGER NOT NULL DEFAULT 1,
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL,
    collections   TEXT,  -- JSON: null = no documents, [] = all collections, ["a", ...] = these
    backend       TEXT,  -- null = the default backend; 'local' = this computer; 'remote' = the model server
    tools         TEXT,  -- JSON: null = no tools, ["calculator", "server/tool", ...] = the tools its answers may call
    approved_tools TEXT,  -- JSON: tools the user allowed for this conversation (asked no more in it)
    current_leaf  INTEGER,  -- the last message of the branch shown (null, or gone: the newest message)
    project_id    INTEGER REFERENCES projects(id) ON DELETE SET NULL,
    assistant_id  TEXT,  -- null = no assistant (the settings' system prompt and sampling)
    pinned        INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS messages (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    role            TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
    content         TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'complete'
                    CHECK (status IN ('complete', 'streaming', 'cancelled', 'failed', 'interrupted')),
    created_at      REAL NOT NULL,
    stats           TEXT,
    error           TEXT,
    sources         TEXT,  -- JSON list of citations for answers from documents
    -- The message this one follows (null: a first message). No ON DELETE action: a branch is deleted whole,
    -- in one statement (engine/history/tree.py), which a cascade could not do past SQLite's trigger depth.
    parent_id       INTEGER REFERENCES messages(id),
    kind            TEXT NOT NULL DEFAULT 'message',  -- 'message' | 'summary' (a system note of earlier turns)
    answered_by     TEXT  -- JSON: the assistant, model, sampling and system prompt that answered
);
CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages(conversation_id, id);
CREATE INDEX IF NOT EXISTS messages_by_parent ON messages(parent_id);
CREATE TABLE IF NOT EXISTS projects (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT NOT NULL,
    created_at    REAL NOT NULL,
    assistant_id  TEXT,
    collections   TEXT,  -- JSON, as conversations.collections
    position      INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS assistants (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    system_prompt TEXT NOT NULL,
    model         TEXT,
    sampling      TEXT,  -- JSON
    collections   TEXT,  -- JSON
    tools         TEXT,  -- JSON
    templates     TEXT,  -- JSON
    builtin       INTEGER NOT NULL DEFAULT 0,
    updated_at    REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS conversations_by_update ON conversations(updated_at DESC);

CREATE VIRTUAL TABLE IF NOT EXISTS messages_fts USING fts5(
    content, content='messages', content_rowid='id', tokenize='unicode61 remove_diacritics 2');
-- The search index follows a message's final text only: an answer still streaming is saved again and
-- again as it grows, and re-indexing all of it on every save would cost more each time.
CREATE TRIGGER IF NOT EXISTS messages_ai AFTER INSERT ON messages WHEN new.status != 'streaming' BEGIN
    INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
END;
CREATE TRIGGER IF NOT EXISTS messages_ad AFTER DELETE ON messages WHEN old.status != 'streaming' BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
END;
CREATE TRIGGER IF NOT EXISTS messages_au AFTER UPDATE OF content, status ON messages BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, content) SELECT 'delete', old.id, old.content
        WHERE old.status != 'streaming';
    INSERT INTO messages_fts(rowid, content) SELECT new.id, new.content WHERE new.status != 'streaming';
END;

CREATE VIRTUAL TABLE IF NOT EXISTS conversations_fts USING fts5(
    title, content='conversations', content_rowid='id', tokenize='unicode61 remove_diacritics 2');
CREATE TRIGGER IF NOT EXISTS conversations_ai AFTER INSERT ON conversations BEGIN
    INSERT INTO conversations_fts(rowid, title) VALUES (new.id, new.title);
END;
CREATE TRIGGER IF NOT EXISTS conversations_ad AFTER DELETE ON conversations BEGIN
    INSERT INTO conversations_fts(conversations_fts, rowid, title) VALUES ('delete', old.id, old.title);
END;
CREATE TRIGGER IF NOT EXISTS conversations_au AFTER UPDATE OF title ON conversations BEGIN
    INSERT INTO conversations_fts(conversations_fts, rowid, title) VALUES ('delete', old.id, old.title);
    INSERT INTO conversations_fts(rowid, title) VALUES (new.id, new.title);
END;
"""


def _unindex_streaming(db: sqlite3.Connection) -> None:
    """Take the answers still streaming out of the search index (schema 4 indexed every partial save)."""
    if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'messages_fts'").fetchone():
        db.execute(
            "INSERT INTO messages_fts(messages_fts, rowid, content) SELECT 'delete', id, content "
            "FROM messages WHERE status = 'streaming'"
        )


def _add_columns(db: sqlite3.Connection, table: str, columns: tuple[str, ...]) -> None:
    """Add the columns a table lacks (a database marked older than its tables are is upgraded all the same)."""
    have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
    if not have:
        return  # no such table yet: the schema makes it whole
    for column in columns:
        if column.split()[0] not in have:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column}")


def _to_tree(db: sqlite3.Connection) -> None:
    """Schema 7: each message follows the one before it in its conversation (one branch, as it was shown)."""
    _add_columns(
        db,
        "conversations",
        (
            "current_leaf INTEGER",
            "project_id INTEGER REFERENCES projects(id) ON DELETE SET NULL",
            "assistant_id TEXT",
            "pinned INTEGER NOT NULL DEFAULT 0",
        ),
    )
    linked = {row[1] for row in db.execute("PRAGMA table_info(messages)")}
    _add_columns(
        db,
        "messages",
        ("parent_id INTEGER REFERENCES messages(id)", "kind TEXT NOT NULL DEFAULT 'message'", "answered_by TEXT"),
    )
    if not linked or "parent_id" in linked:
        return  # no messages table yet, or its messages are linked already (nothing to guess)
    db.execute(
        "UPDATE messages SET parent_id = (SELECT MAX(p.id) FROM messages p "
        "WHERE p.conversation_id = messages.conversation_id AND p.id < messages.id) WHERE parent_id IS NULL"
    )


_MIGRATIONS: dict[int, list[str | Callable[[sqlite3.Connection], None]]] = {
    # version reached -> statements that bring the previous version there
    2: ["ALTER TABLE conversations ADD COLUMN collections TEXT", "ALTER TABLE messages ADD COLUMN sources TEXT"],
    3: ["ALTER TABLE conversations ADD COLUMN backend TEXT"],
    4: ["UPDATE conversations SET backend = 'remote' WHERE backend = 'server'"],  # the model server's new name
    # The search index leaves answers that are still streaming out (the schema's triggers, made anew).
    5: [
        _unindex_streaming,
        "DROP TRIGGER IF EXISTS messages_ai",
        "DROP TRIGGER IF EXISTS messages_ad",
        "DROP TRIGGER IF EXISTS messages_au",
    ],
    6: [lambda db: _add_columns(db, "conversations", ("tools TEXT", "approved_tools TEXT"))],  # tools and approvals
    7: [_to_tree],  # branches, projects, assistants, pins
}


def _statements(script: str) -> Iterator[str]:
    """The statements of a script one by one (executescript would commit the transaction they run in)."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            if pending.strip():
                yield pending
            pending = ""


def upgrade(db: sqlite3.Connection, path: Path) -> None:
    """Bring the file to this schema in one transaction (a process killed midway leaves it as it was;
    another process opening it at the same time waits, then finds it done)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise HistoryError(
                f"The conversation database '{path}' was written by a newer Locus "
                f"(schema {version}); this version reads schema {SCHEMA_VERSION}.",
                hint="Update Locus, or set LOCUS_HOME to use another data folder.",
            )
        if version:
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS.get(target, []):
                    if callable(statement):
                        statement(db)
                    else:
                        db.execute(statement)
        for statement in _statements(_SCHEMA):
            db.execute(statement)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
