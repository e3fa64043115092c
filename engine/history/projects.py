"""Projects, pins and copies of conversations, over the history store.

A project groups conversations (``conversations.project_id``) and gives new conversations in it a
default assistant and documents collection. Deleting a project keeps its conversations (moved out of
it) unless asked to delete them too; those go through the caller's ``delete_conversation`` (the
Assistant's, which also removes their traces and cached model states). A pinned conversation is listed
first. Duplicating a conversation copies its whole tree, its settings with it, under a new id.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from engine.errors import HistoryError, InvalidRequestError, NotFoundError
from engine.history.models import Conversation, SearchHit
from engine.history.store import UNSET, HistoryStore

NAME_MAX_CHARS = 80
COPY_SUFFIX = " (copy)"


@dataclass(frozen=True)
class Project:
    id: int
    name: str
    created_at: float
    assistant_id: str | None = None  # the assistant new conversations in it start with (None: none)
    collections: list[str] | None = None  # their documents (None: none, []: all, or names)
    position: int = 0


@dataclass(frozen=True)
class ProjectDeleted:
    project_id: int
    name: str
    moved_out: int  # conversations kept, now in no project
    deleted: int  # conversations deleted with it

    def describe(self) -> str:
        if self.deleted:
            return f"Deleted project \u201c{self.name}\u201d and its {self.deleted} conversation(s)."
        return f"Deleted project \u201c{self.name}\u201d; its {self.moved_out} conversation(s) are kept."


def _project(row: tuple) -> Project:
    return Project(row[0], row[1], row[2], row[3], json.loads(row[4]) if row[4] is not None else None, row[5])


def _clean_name(name: object) -> str:
    text = " ".join(name.split()) if isinstance(name, str) else ""
    if not text:
        raise InvalidRequestError("A project needs a name.")
    if len(text) > NAME_MAX_CHARS:
        raise InvalidRequestError(f"A project's name is at most {NAME_MAX_CHARS} characters.")
    return text


def _collections_json(collections: object) -> str | None:
    if collections is None:
        return None
    if isinstance(collections, str) or not isinstance(collections, (list, tuple, set)):
        raise InvalidRequestError("A project's documents are a list of collection names.")
    if not all(isinstance(c, str) and c for c in collections):
        raise InvalidRequestError("A project's documents are a list of collection names.")
    return json.dumps(sorted(set(collections)))


def pinned_first(conversations: Sequence[Conversation]) -> list[Conversation]:
    """Pinned conversations first, each group in the order given (the newest activity first)."""
    return sorted(conversations, key=lambda c: not getattr(c, "pinned", False))


_PROJECT_COLUMNS = "id, name, created_at, assistant_id, collections, position"


class Projects:
    """Projects, pins and duplicates over one history store."""

    def __init__(self, history: HistoryStore):
        self.history = history

    # Projects -----------------------------------------------------------------------------------

    def all(self) -> list[Project]:
        rows = self.history.read(f"SELECT {_PROJECT_COLUMNS} FROM projects ORDER BY position, name COLLATE NOCASE, id")
        return [_project(r) for r in rows]

    def get(self, project_id: int) -> Project:
        rows = self.history.read(f"SELECT {_PROJECT_COLUMNS} FROM projects WHERE id = ?", (project_id,))
        if not rows:
            raise NotFoundError(f"Project {project_id} does not exist (it may have been deleted).")
        return _project(rows[0])

    def create(self, name: str, *, assistant_id: str | None = None, collections: list[str] | None = None) -> Project:
        name, saved = _clean_name(name), _collections_json(collections)
        with self.history.transaction() as db:
            position = db.execute("SELECT COALESCE(MAX(position), -1) + 1 FROM projects").fetchone()[0]
            cur = db.execute(
                "INSERT INTO projects(name, created_at, assistant_id, collections, position) VALUES (?, ?, ?, ?, ?)",
                (name, time.time(), assistant_id, saved, position),
            )
            new_id = cur.lastrowid
        assert new_id is not None  # an INSERT's row id
        return self.get(new_id)

    def rename(self, project_id: int, name: str) -> Project:
        name = _clean_name(name)
        with self.history.transaction() as db:
            if db.execute("UPDATE projects SET name = ? WHERE id = ?", (name, project_id)).rowcount == 0:
                raise NotFoundError(f"Project {project_id} does not exist (it may have been deleted).")
        return self.get(project_id)

    def set_defaults(self, project_id: int, *, assistant_id=UNSET, collections=UNSET) -> Project:
        """The assistant and documents new conversations in the project start with (left out: unchanged)."""
        sets, args = [], []
        if assistant_id is not UNSET:
            if assistant_id is not None and not isinstance(assistant_id, str):
                raise InvalidRequestError(f"An assistant is named by its id, not {assistant_id!r}.")
            sets.append("assistant_id = ?")
            args.append(assistant_id)
        if collections is not UNSET:
            sets.append("collections = ?")
            args.append(_collections_json(collections))
        with self.history.transaction() as db:
            if db.execute("SELECT 1 FROM projects WHERE id = ?", (project_id,)).fetchone() is None:
                raise NotFoundError(f"Project {project_id} does not exist (it may have been deleted).")
            if sets:
                db.execute(f"UPDATE projects SET {', '.join(sets)} WHERE id = ?", (*args, project_id))
        return self.get(project_id)

    def conversation_ids(self, project_id: int) -> list[int]:
        rows = self.history.read("SELECT id FROM conversations WHERE project_id = ? ORDER BY id", (project_id,))
        return [r[0] for r in rows]

    def delete(
        self,
        project_id: int,
        *,
        with_conversations: bool = False,
        delete_conversation: Callable[[int], object] | None = None,
        conversations: Sequence[int] | None = None,
    ) -> ProjectDeleted:
        """Delete a project. Its conversations are kept (in no project) unless ``with_conversations``: then
        each goes through ``delete_conversation`` (the Assistant's, which removes its traces and cached states
        too; the store's own when none is given), before the project. ``conversations``: the ids the user
        confirmed (read when asked): only those still in it are deleted, any added since are kept (None: all)."""
        project = self.get(project_id)
        deleted = 0
        if with_conversations:
            remove = delete_conversation or self.history.delete_conversation
            ids = self.conversation_ids(project_id)
            if conversations is not None:  # those confirmed and still in it
                ids = [c for c in dict.fromkeys(conversations) if c in set(ids)]
            for conversation_id in ids:
                try:
                    remove(conversation_id)
                except NotFoundError:  # deleted meanwhile
                    continue
                deleted += 1
        with self.history.transaction() as db:
            moved = db.execute(
                "UPDATE conversations SET project_id = NULL WHERE project_id = ?", (project_id,)
            ).rowcount
            db.execute("DELETE FROM projects WHERE id = ?", (project_id,))
        return ProjectDeleted(project_id, project.name, moved, deleted)

    # Conversations --------------------------------------------------------------------------------

    def move(self, conversation_id: int, project_id: int | None) -> Conversation:
        """Put a conversation in a project (None: in none)."""
        with self.history.transaction() as db:
            if (
                project_id is not None
                and db.execute("SELECT 1 FROM projects WHERE id = ?", (project_id,)).fetchone() is None
            ):
                raise NotFoundError(f"Project {project_id} does not exist (it may have been deleted).")
            cur = db.execute("UPDATE conversations SET project_id = ? WHERE id = ?", (project_id, conversation_id))
            if cur.rowcount == 0:
                raise NotFoundError(f"Conversation {conversation_id} does not exist (it may have been deleted).")
        return self.history.conversation(conversation_id)

    def pin(self, conversation_id: int, pinned: bool = True) -> Conversation:
        with self.history.transaction() as db:
            cur = db.execute("UPDATE conversations SET pinned = ? WHERE id = ?", (int(pinned), conversation_id))
            if cur.rowcount == 0:
                raise NotFoundError(f"Conversation {conversation_id} does not exist (it may have been deleted).")
        return self.history.conversation(conversation_id)

    def listed(self) -> list[Conversation]:
        """Every conversation as the sidebar lists it: pinned first, then the most recently active."""
        return pinned_first(self.history.conversations())

    def search(self, text: str, project_id: int | None = UNSET, limit: int = 50) -> list[SearchHit]:  # type: ignore[assignment]
        """Search like ``HistoryStore.search``, within one project when ``project_id`` is given (None: the
        conversations in no project)."""
        return self.history.search(text, limit, project_id=project_id)

    def duplicate(self, conversation_id: int) -> Conversation:
        """A copy of a conversation: every message of its tree (parents, branches and the branch shown
        kept), its settings, project, assistant and pin; a new id, titled "… (copy)"."""
        with self.history.transaction() as db:
            conversation_columns = _columns(db, "conversations")
            row = db.execute(
                f"SELECT {', '.join(conversation_columns)} FROM conversations WHERE id = ?", (conversation_id,)
            ).fetchone()
            if row is None:
                raise NotFoundError(f"Conversation {conversation_id} does not exist (it may have been deleted).")
            values = dict(zip(conversation_columns, row, strict=True))
            now = time.time()
            values.pop("id")
            values |= {"title": _copy_title(values["title"]), "title_is_auto": 0, "created_at": now, "updated_at": now}
            leaf = values.pop("current_leaf", None)
            names = list(values)
            cur = db.execute(
                f"INSERT INTO conversations({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                tuple(values[n] for n in names),
            )
            new_id = cur.lastrowid
            assert new_id is not None  # an INSERT's row id
            message_columns = [c for c in _columns(db, "messages") if c not in ("id", "conversation_id")]
            rows = db.execute(
                f"SELECT id, {', '.join(message_columns)} FROM messages WHERE conversation_id = ? ORDER BY id",
                (conversation_id,),
            ).fetchall()
            new_ids: dict[int, int] = {}
            insert = (
                f"INSERT INTO messages(conversation_id, {', '.join(message_columns)}) "
                f"VALUES (?, {', '.join('?' * len(message_columns))})"
            )
            parents: dict[int, int] = {}
            for old_id, *fields in rows:  # in id order, parents linked once all are in (compaction's summary
                # has a higher id than the turns that follow it)
                message = dict(zip(message_columns, fields, strict=True))
                if message.get("parent_id") is not None:
                    parents[old_id] = message["parent_id"]
                    message["parent_id"] = None
                if message.get("status") == "streaming":  # an answer still being written: copied as it stands
                    message["status"] = "interrupted"
                if message.get("stats"):  # the original's trace stays the original's
                    message["stats"] = _without_trace(message["stats"])
                cur = db.execute(insert, (new_id, *(message[c] for c in message_columns)))
                assert cur.lastrowid is not None
                new_ids[old_id] = cur.lastrowid
            db.executemany(
                "UPDATE messages SET parent_id = ? WHERE id = ?",
                [(new_ids[parent], new_ids[old]) for old, parent in parents.items() if parent in new_ids],
            )
            if leaf is not None and leaf in new_ids:
                db.execute("UPDATE conversations SET current_leaf = ? WHERE id = ?", (new_ids[leaf], new_id))
        return self.history.conversation(new_id)


def _columns(db: sqlite3.Connection, table: str) -> list[str]:
    columns = [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
    if not columns:
        raise HistoryError(f"The conversation database has no {table} table.")
    return columns


def _without_trace(stats: str) -> str:
    try:
        saved = json.loads(stats)
    except ValueError:
        return stats
    if isinstance(saved, dict) and "trace_id" in saved:
        saved.pop("trace_id")
        return json.dumps(saved)
    return stats


def _copy_title(title: str) -> str:
    return title + COPY_SUFFIX
