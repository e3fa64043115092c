"""Conversations and messages in SQLite (WAL), with full-text search.

Every write is its own transaction, committed before the call returns, so a
process killed at any point leaves every earlier write intact. One connection
is shared by the threads of a process behind a lock; other processes (the CLI
beside the window) open their own, which WAL allows.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import cast

from engine.errors import HistoryError, NotFoundError
from engine.history import tree
from engine.history.models import Conversation, Message, MessageKind, MessageStatus, SearchHit, auto_title
from engine.history.schema import SCHEMA_VERSION, upgrade
from engine.runtime.backend import BACKEND_NAMES

UNSET = object()  # an option left out of set_options: it keeps its value
DEFAULT_TITLE = "New conversation"
__all__ = ["DEFAULT_TITLE", "SCHEMA_VERSION", "UNSET", "HistoryStore", "fts_query"]

_CONVERSATION_COLUMNS = (
    "c.id, c.title, c.title_is_auto, c.created_at, c.updated_at, "
    "(SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id), c.collections, c.backend, c.tools, "
    "c.approved_tools, c.current_leaf, c.project_id, c.assistant_id, c.pinned"
)
_CONVERSATION_WIDTH = 14
_MESSAGE_COLUMNS = (
    "id, conversation_id, role, content, status, created_at, stats, error, sources, parent_id, kind, answered_by"
)
MESSAGE_KINDS = ("message", "summary")


def _conversation(row: tuple) -> Conversation:
    return Conversation(
        row[0],
        row[1],
        bool(row[2]),
        row[3],
        row[4],
        row[5],
        json.loads(row[6]) if row[6] is not None else None,
        row[7],
        json.loads(row[8]) if row[8] is not None else None,
        tuple(json.loads(row[9])) if row[9] else (),
        row[10],
        row[11],
        row[12],
        bool(row[13]),
    )


def _message(row: tuple) -> Message:
    return Message(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        json.loads(row[6]) if row[6] else None,
        row[7],
        json.loads(row[8]) if row[8] else None,
        row[9],
        row[10],
        json.loads(row[11]) if row[11] else None,
    )


def fts_query(text: str) -> str | None:
    """Turn what a person typed into an FTS5 query: every word, as a prefix, all required."""
    words = re.findall(r"\w+", text, flags=re.UNICODE)
    return " ".join(f'"{w}"*' for w in words) or None


class HistoryStore:
    """The conversation database."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=10.0, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA secure_delete=ON")  # deleted text is overwritten, not left in free pages
            upgrade(self._db, self.path)
        except sqlite3.DatabaseError as exc:
            raise HistoryError(
                f"The conversation database '{self.path}' cannot be opened: {exc}.",
                hint="If the file is damaged, move it aside and Locus will start a new one.",
            ) from exc

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise HistoryError(f"The conversation database could not be written: {exc}.") from exc

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """One write transaction on the store's connection (for modules that keep their own tables here)."""
        return self._tx()

    def read(self, sql: str, args: tuple = ()) -> list[tuple]:
        """Rows of one query on the store's connection."""
        return self._read(sql, args)

    def _read(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise HistoryError(f"The conversation database could not be read: {exc}.") from exc

    def pragma(self, name: str) -> object:
        """The value of one SQLite setting on this store's connection (journal_mode, foreign_keys,
        secure_delete, ...), for diagnostics; ``name`` must be a plain identifier."""
        if not name.isidentifier():
            raise ValueError(f"not a pragma name: {name!r}")
        rows = self._read(f"PRAGMA {name}")
        return rows[0][0] if rows else None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # Conversations ---------------------------------------------------------------

    def create_conversation(self, title: str | None = None) -> Conversation:
        now = time.time()
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO conversations(title, title_is_auto, created_at, updated_at) VALUES (?, ?, ?, ?)",
                (title or DEFAULT_TITLE, 0 if title else 1, now, now),
            )
            new_id = cur.lastrowid
        assert new_id is not None  # an INSERT's row id
        return self.conversation(new_id)

    def conversation(self, conversation_id: int) -> Conversation:
        rows = self._read(f"SELECT {_CONVERSATION_COLUMNS} FROM conversations c WHERE c.id = ?", (conversation_id,))
        if not rows:
            raise NotFoundError(f"Conversation {conversation_id} does not exist (it may have been deleted).")
        return _conversation(rows[0])

    def conversations(self, limit: int | None = None) -> list[Conversation]:
        """All conversations, most recently active first."""
        sql = f"SELECT {_CONVERSATION_COLUMNS} FROM conversations c ORDER BY c.updated_at DESC, c.id DESC"
        rows = self._read(sql + (" LIMIT ?" if limit else ""), (limit,) if limit else ())
        return [_conversation(r) for r in rows]

    def rename_conversation(self, conversation_id: int, title: str) -> Conversation:
        title = " ".join(title.split())
        if not title:
            raise HistoryError("A conversation title cannot be empty.")
        with self._tx() as db:
            cur = db.execute(
                "UPDATE conversations SET title = ?, title_is_auto = 0 WHERE id = ?", (title, conversation_id)
            )
            if cur.rowcount == 0:
                raise NotFoundError(f"Conversation {conversation_id} does not exist.")
        return self.conversation(conversation_id)

    def set_options(self, conversation_id: int, *, collections=UNSET, backend=UNSET, tools=UNSET) -> Conversation:
        """Save how a conversation answers (what is left out stays as it was): ``collections``, the document
        collections it answers from (None: none, []: all, or names); ``backend``, where its answers are
        generated ('local', 'remote', or None for the default); ``tools``, the tools its answers may call
        (None or []: none, or names, in the order given). The one writer of all three."""
        sets, args = [], []
        if tools is not UNSET:
            names = list(dict.fromkeys(tools or ()))
            if any(not isinstance(n, str) or not n for n in names):
                raise ValueError(f"tool names must be non-empty text, not {tools!r}")
            sets.append("tools = ?")
            args.append(json.dumps(names) if names else None)
        if collections is not UNSET:
            sets.append("collections = ?")
            args.append(None if collections is None else json.dumps(sorted(set(collections))))
        if backend is not UNSET:
            if backend is not None and backend not in BACKEND_NAMES:
                raise ValueError(f"unknown backend {backend!r}")
            sets.append("backend = ?")
            args.append(backend)
        with self._tx() as db:
            if db.execute("SELECT 1 FROM conversations WHERE id = ?", (conversation_id,)).fetchone() is None:
                raise NotFoundError(f"Conversation {conversation_id} does not exist (it may have been deleted).")
            if sets:
                db.execute(f"UPDATE conversations SET {', '.join(sets)} WHERE id = ?", (*args, conversation_id))
        return self.conversation(conversation_id)

    def approve_tool(self, conversation_id: int, name: str) -> Conversation:
        """Remember that the user allowed tool ``name`` for the whole conversation (its calls are asked no more)."""
        with self._tx() as db:
            row = db.execute("SELECT approved_tools FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"Conversation {conversation_id} does not exist (it may have been deleted).")
            approved = json.loads(row[0]) if row[0] else []
            if name not in approved:
                db.execute(
                    "UPDATE conversations SET approved_tools = ? WHERE id = ?",
                    (json.dumps([*approved, name]), conversation_id),
                )
        return self.conversation(conversation_id)

    def forget_tool_approvals(self, conversation_id: int) -> Conversation:
        """Ask again before every call in this conversation (the approvals it remembered are dropped)."""
        with self._tx() as db:
            if (
                db.execute("UPDATE conversations SET approved_tools = NULL WHERE id = ?", (conversation_id,)).rowcount
                == 0
            ):
                raise NotFoundError(f"Conversation {conversation_id} does not exist (it may have been deleted).")
        return self.conversation(conversation_id)

    def delete_conversation(self, conversation_id: int) -> int:
        """Delete a conversation and its messages, leaving no trace of their text in the files (the
        search index and the write-ahead log included); returns how many messages went."""
        with self._tx() as db:
            messages = db.execute(
                "SELECT COUNT(*) FROM messages WHERE conversation_id = ?", (conversation_id,)
            ).fetchone()[0]
            db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))
            # The search index only marks rows deleted until its segments are merged: merge them now.
            db.execute("INSERT INTO messages_fts(messages_fts) VALUES ('optimize')")
            db.execute("INSERT INTO conversations_fts(conversations_fts) VALUES ('optimize')")
        self.checkpoint()
        return messages

    def checkpoint(self) -> bool:
        """Copy the write-ahead log into the database and empty it (after a delete); False when another
        process reading at that moment kept it from being emptied (its next checkpoint will)."""
        with self._lock:
            try:
                return self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
            except sqlite3.Error as exc:
                raise HistoryError(f"The conversation database could not be written: {exc}.") from exc

    # Messages --------------------------------------------------------------------

    def add_message(
        self,
        conversation_id: int,
        role: str,
        content: str,
        status: MessageStatus = "complete",
        *,
        parent_id: int | object | None = UNSET,
        kind: str = "message",
        answered_by: dict | None = None,
    ) -> Message:
        """Add a message after ``parent_id`` (UNSET: after the last message of the branch shown; None: as a
        first message) and show its branch; the first user message titles an untitled conversation."""
        if kind not in MESSAGE_KINDS:
            raise ValueError(f"unknown message kind {kind!r}")
        now = time.time()
        with self._tx() as db:
            row = db.execute(
                "SELECT title_is_auto, title FROM conversations WHERE id = ?", (conversation_id,)
            ).fetchone()
            if row is None:
                raise NotFoundError(f"Conversation {conversation_id} does not exist (it may have been deleted).")
            if parent_id is UNSET:
                parent = tree.shown_leaf(db, conversation_id)
            else:
                parent = cast("int | None", parent_id)
                if parent is not None and tree.conversation_of(db, parent)[0] != conversation_id:
                    raise ValueError(f"message {parent} is not in conversation {conversation_id}")
            cur = db.execute(
                "INSERT INTO messages(conversation_id, role, content, status, created_at, parent_id, kind, answered_by)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    conversation_id,
                    role,
                    content,
                    status,
                    now,
                    parent,
                    kind,
                    json.dumps(answered_by) if answered_by is not None else None,
                ),
            )
            new_id = cur.lastrowid
            assert new_id is not None  # an INSERT's row id
            db.execute(
                "UPDATE conversations SET updated_at = ?, current_leaf = ? WHERE id = ?", (now, new_id, conversation_id)
            )
            if role == "user" and row[0] and row[1] == DEFAULT_TITLE:
                db.execute("UPDATE conversations SET title = ? WHERE id = ?", (auto_title(content), conversation_id))
        return Message(
            new_id,
            conversation_id,
            role,
            content,
            status,
            now,
            parent_id=parent,
            kind=cast(MessageKind, kind),
            answered_by=answered_by,
        )

    def update_message(
        self,
        message_id: int,
        *,
        content: str | None = None,
        status: MessageStatus | None = None,
        stats: dict | None = None,
        error: str | None = None,
        sources: list[dict] | None = None,
        answered_by: dict | None = None,
    ) -> None:
        sets: list[str] = []
        args: list[object] = []
        for column, text in (("content", content), ("status", status), ("error", error)):
            if text is not None:
                sets.append(f"{column} = ?")
                args.append(text)
        for column, value in (("stats", stats), ("sources", sources), ("answered_by", answered_by)):
            if value is not None:
                sets.append(f"{column} = ?")
                args.append(json.dumps(value))
        if not sets:
            return
        with self._tx() as db:
            db.execute(f"UPDATE messages SET {', '.join(sets)} WHERE id = ?", (*args, message_id))

    def message(self, message_id: int) -> Message:
        rows = self._read(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = ?", (message_id,))
        if not rows:
            raise NotFoundError(f"Message {message_id} does not exist.")
        return _message(rows[0])

    def messages(self, conversation_id: int) -> list[Message]:
        """The messages of the branch the conversation shows, first to last."""
        with self._lock:
            try:
                leaf = tree.shown_leaf(self._db, conversation_id)
                rows = self._db.execute(
                    f"{tree.PATH} SELECT {_MESSAGE_COLUMNS} FROM messages JOIN path USING (id) ORDER BY depth DESC",
                    {"leaf": leaf},
                ).fetchall()
            except sqlite3.Error as exc:
                raise HistoryError(f"The conversation database could not be read: {exc}.") from exc
        return [_message(r) for r in rows] if leaf is not None else []

    def path_to(self, message_id: int | None) -> list[Message]:
        """The messages from the first of its conversation down to ``message_id`` (None: none), in order."""
        if message_id is None:
            return []
        with self._lock:
            try:
                tree.conversation_of(self._db, message_id)
                rows = self._db.execute(
                    f"{tree.PATH} SELECT {_MESSAGE_COLUMNS} FROM messages JOIN path USING (id) ORDER BY depth DESC",
                    {"leaf": message_id},
                ).fetchall()
            except sqlite3.Error as exc:
                raise HistoryError(f"The conversation database could not be read: {exc}.") from exc
        return [_message(r) for r in rows]

    def versions_chosen(self, message_id: int) -> list[int]:
        """The later versions (edits, answers asked again) on the path to a message: its branch's mark."""
        with self._lock:
            return tree.versions_chosen(self._db, message_id)

    def branch(self, message_id: int) -> list[Message]:
        """A message and everything that follows it, on every branch (what delete_branch would delete)."""
        with self._lock:
            ids = tree.subtree_ids(self._db, message_id)
        rows = self._read(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id IN ({','.join('?' * len(ids))}) ORDER BY id", tuple(ids)
        )
        return [_message(r) for r in rows]

    def all_messages(self, conversation_id: int) -> list[Message]:
        """Every message of the conversation, on every branch, in the order they were written."""
        rows = self._read(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ? ORDER BY id", (conversation_id,)
        )
        return [_message(r) for r in rows]

    def siblings(self, message_id: int) -> list[Message]:
        """The versions of a message (same parent, same role; itself included), oldest first."""
        with self._lock:
            ids = tree.sibling_ids(self._db, message_id)
        if not ids:
            raise NotFoundError(f"Message {message_id} does not exist (it may have been deleted).")
        rows = self._read(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id IN ({','.join('?' * len(ids))}) ORDER BY id", tuple(ids)
        )
        return [_message(r) for r in rows]

    def switch_to(self, message_id: int) -> list[Message]:
        """Show the branch through a message (down to its newest descendant); returns the messages shown."""
        with self._tx() as db:
            conversation_id, _ = tree.conversation_of(db, message_id)
            tree.show(db, message_id)
        return self.messages(conversation_id)

    def delete_branch(self, message_id: int) -> int:
        """Delete a version of a message and everything that follows it, leaving no trace of their text in the
        files; the conversation shows a remaining version instead. Returns how many messages went."""
        with self._tx() as db:
            gone = tree.delete_subtree(db, message_id)
            db.execute("INSERT INTO messages_fts(messages_fts) VALUES ('optimize')")
        self.checkpoint()
        return gone

    def delete_messages_from(self, conversation_id: int, message_id: int) -> int:
        """Delete a message and every later one in its conversation, on every branch."""
        with self._tx() as db:
            cur = db.execute(
                "DELETE FROM messages WHERE conversation_id = ? AND id >= ?", (conversation_id, message_id)
            )
            return cur.rowcount

    def delete_message(self, message_id: int) -> None:
        """Delete one message that nothing follows (an answer stopped before it said anything); a branch that
        showed it shows its parent."""
        with self._tx() as db:
            row = db.execute("SELECT conversation_id, parent_id FROM messages WHERE id = ?", (message_id,)).fetchone()
            if row is None:
                return
            versions = [v for v in tree.sibling_ids(db, message_id) if v != message_id]
            db.execute("DELETE FROM messages WHERE id = ?", (message_id,))
            # The branch that showed it shows its newest other version (an answer asked again and stopped at
            # once: the earlier answer), else the message before it.
            leaf = tree.newest_descendant(db, versions[-1]) if versions else row[1]
            db.execute(
                "UPDATE conversations SET current_leaf = ? WHERE id = ? AND current_leaf = ?",
                (leaf, row[0], message_id),
            )

    def mark_interrupted(self) -> int:
        """Answers left 'streaming' by a process that died become 'interrupted'; returns how many."""
        with self._tx() as db:
            return db.execute("UPDATE messages SET status = 'interrupted' WHERE status = 'streaming'").rowcount

    # Search ----------------------------------------------------------------------

    def search(self, text: str, limit: int = 50, *, project_id: int | object | None = UNSET) -> list[SearchHit]:
        """Conversations whose title or messages contain every word typed (as word prefixes); within one
        project when ``project_id`` is given (None: the conversations in no project)."""
        query = fts_query(text)
        if query is None:
            return []
        scope, scoped = "", tuple[object, ...]()
        if project_id is None:
            scope = " AND c.project_id IS NULL"
        elif project_id is not UNSET:
            scope, scoped = " AND c.project_id = ?", (project_id,)
        title_rows = self._read(
            f"SELECT {_CONVERSATION_COLUMNS}, highlight(conversations_fts, 0, '[', ']') "
            "FROM conversations_fts JOIN conversations c ON c.id = conversations_fts.rowid "
            f"WHERE conversations_fts MATCH ?{scope} ORDER BY rank LIMIT ?",
            (query, *scoped, limit),
        )
        message_rows = self._read(
            f"SELECT {_CONVERSATION_COLUMNS}, snippet(messages_fts, 0, '[', ']', '…', 12), m.id "
            "FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid "
            "JOIN conversations c ON c.id = m.conversation_id "
            f"WHERE messages_fts MATCH ?{scope} ORDER BY rank LIMIT ?",
            (query, *scoped, limit * 4),
        )
        hits: dict[int, SearchHit] = {}
        w = _CONVERSATION_WIDTH
        for row in title_rows:
            hits[row[0]] = SearchHit(_conversation(row[:w]), row[w], None)
        for row in message_rows:
            if row[0] not in hits:
                hits[row[0]] = SearchHit(_conversation(row[:w]), row[w], row[w + 1])
        return list(hits.values())[:limit]
