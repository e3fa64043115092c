"""A conversation's messages as a tree (schema 7): each message follows its ``parent_id``.

Editing an earlier question or answering one again adds a sibling beside the message it replaces, and
the conversation shows one branch: the path from its first message to ``conversations.current_leaf``
(NULL, or a leaf that no longer exists: its newest message). These are the queries over that tree; they
take the store's connection and run inside its lock (and its transaction, for the writes).

Nothing here assumes that a child's id is larger than its parent's (a summary is written after the
messages that come to follow it): paths are ordered by depth and subtrees found by walking the links.
"""

from __future__ import annotations

import sqlite3

from engine.errors import NotFoundError

# The leaf a conversation shows: its current leaf while that still exists in it, else its newest message.
_SHOWN_LEAF = (
    "SELECT COALESCE("
    "(SELECT m.id FROM messages m JOIN conversations c ON c.current_leaf = m.id "
    " WHERE c.id = :conversation AND m.conversation_id = :conversation), "
    "(SELECT MAX(id) FROM messages WHERE conversation_id = :conversation))"
)

# The path from a message up to its conversation's first message (depth 0 = the message itself).
PATH = (
    "WITH RECURSIVE path(id, depth) AS ("
    " SELECT :leaf, 0"
    " UNION ALL SELECT m.parent_id, path.depth + 1 FROM messages m JOIN path ON m.id = path.id"
    " WHERE m.parent_id IS NOT NULL)"
)

# A message and everything that follows it, on every branch.
SUBTREE = (
    "WITH RECURSIVE sub(id) AS ( SELECT :root UNION ALL SELECT m.id FROM messages m JOIN sub ON m.parent_id = sub.id)"
)


def shown_leaf(db: sqlite3.Connection, conversation_id: int) -> int | None:
    """The last message of the branch a conversation shows (None: it has no messages)."""
    return db.execute(_SHOWN_LEAF, {"conversation": conversation_id}).fetchone()[0]


def path_ids(db: sqlite3.Connection, leaf: int | None) -> list[int]:
    """The ids from the first message down to ``leaf``, in order."""
    if leaf is None:
        return []
    rows = db.execute(f"{PATH} SELECT id FROM path ORDER BY depth DESC", {"leaf": leaf}).fetchall()
    return [r[0] for r in rows]


def versions_chosen(db: sqlite3.Connection, leaf: int) -> list[int]:
    """The messages on the path to ``leaf`` that are a later version of another (an edit, an answer asked
    again), first to last: what tells this branch from the others. Stable as the branch grows, and as
    versions are added elsewhere (the first version of a message is never one of them)."""
    rows = db.execute(
        f"{PATH} SELECT path.id FROM path JOIN messages m ON m.id = path.id WHERE EXISTS ("
        " SELECT 1 FROM messages s WHERE s.conversation_id = m.conversation_id AND s.parent_id IS m.parent_id"
        " AND s.role = m.role AND s.id < m.id) ORDER BY depth DESC",
        {"leaf": leaf},
    ).fetchall()
    return [r[0] for r in rows]


def subtree_ids(db: sqlite3.Connection, root: int) -> list[int]:
    """A message and all its descendants, in id order."""
    return [r[0] for r in db.execute(f"{SUBTREE} SELECT id FROM sub ORDER BY id", {"root": root}).fetchall()]


def newest_descendant(db: sqlite3.Connection, root: int) -> int:
    """The most recently written message at or below ``root``: the leaf of the branch last worked on there."""
    return db.execute(f"{SUBTREE} SELECT MAX(id) FROM sub", {"root": root}).fetchone()[0]


def conversation_of(db: sqlite3.Connection, message_id: int) -> tuple[int, int | None]:
    """A message's conversation and parent; NotFoundError when it does not exist."""
    row = db.execute("SELECT conversation_id, parent_id FROM messages WHERE id = ?", (message_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"Message {message_id} does not exist (it may have been deleted).")
    return row[0], row[1]


def sibling_ids(db: sqlite3.Connection, message_id: int) -> list[int]:
    """The versions of a message: those with its parent and role in its conversation (itself included)."""
    rows = db.execute(
        "SELECT s.id FROM messages s JOIN messages m ON m.id = ? "
        "WHERE s.conversation_id = m.conversation_id AND s.parent_id IS m.parent_id AND s.role = m.role "
        "ORDER BY s.id",
        (message_id,),
    ).fetchall()
    return [r[0] for r in rows]


def show(db: sqlite3.Connection, message_id: int) -> int:
    """Show the branch through a message (its newest descendant becomes the current leaf); returns that leaf."""
    conversation_id, _ = conversation_of(db, message_id)
    leaf = newest_descendant(db, message_id)
    db.execute("UPDATE conversations SET current_leaf = ? WHERE id = ?", (leaf, conversation_id))
    return leaf


def delete_subtree(db: sqlite3.Connection, message_id: int) -> int:
    """Delete a message and everything after it on every branch; the conversation goes on showing the branch
    it showed when that is untouched, else a sibling's (the next, or the one before), else the parent's path.
    Returns how many messages went. One statement, so that no trigger recursion is needed however long the
    branch (the parent link has no ON DELETE action; a subtree is removed whole)."""
    conversation_id, parent = conversation_of(db, message_id)
    shown = shown_leaf(db, conversation_id)
    on_shown_path = message_id in path_ids(db, shown)
    siblings = sibling_ids(db, message_id)
    gone = db.execute(f"DELETE FROM messages WHERE id IN ({SUBTREE} SELECT id FROM sub)", {"root": message_id}).rowcount
    if on_shown_path:
        after = [s for s in siblings if s > message_id]
        before = [s for s in siblings if s < message_id]
        instead = after[0] if after else before[-1] if before else parent
        leaf = newest_descendant(db, instead) if instead is not None else None
        db.execute("UPDATE conversations SET current_leaf = ? WHERE id = ?", (leaf, conversation_id))
    return gone
