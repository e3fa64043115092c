"""Locus's own JSON export ("locus-conversations", engine/history/export.py), read back whole: the tree of
every conversation, its settings, and each message's status, stats, sources and who answered it."""

from __future__ import annotations

from typing import Any

from engine.history.imports import fields
from engine.history.imports.base import (
    MAX_CONVERSATIONS,
    MAX_MESSAGES,
    ROLES,
    Checker,
    Parsed,
    ParsedConversation,
    ParsedMessage,
    clean_title,
    order_tree,
    refuse,
)

FORMAT = "locus-conversations"
VERSION = 1
_STATUSES = frozenset({"complete", "streaming", "cancelled", "failed", "interrupted"})
_KINDS = frozenset({"message", "summary"})
_BACKENDS = frozenset({"local", "remote"})


def is_locus(value: Any) -> bool:
    return isinstance(value, dict) and value.get("format") == FORMAT


def _key(check: Checker, value: Any, where: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)) or (isinstance(value, str) and len(value) > 200):
        raise check.fail(where, "expected a message id (a number)")
    return str(value)


# The fields of a saved source (engine/rag/cite.py Citation.to_dict), by type; others are dropped.
_SOURCE_TEXT = ("title", "kind", "heading", "place", "place_label", "place_within", "quote", "doc_id", "location")
_SOURCE_INT = ("page", "line_start", "line_end")
_SOURCE_BOOL = ("explicit", "supported")


def _source(check: Checker, raw: Any, where: str) -> dict:
    """A source of an answer, with the fields the window reads checked: a number and a path at least."""
    s = check.obj(raw, where)
    number = s.get("number")
    if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number < 10_000:
        raise check.fail(f"{where}.number", "expected a source number")
    out: dict[str, Any] = {"number": number, "path": check.text(s.get("path"), f"{where}.path", limit=4096)}
    for key in _SOURCE_TEXT:
        if key in s:
            out[key] = check.text(s[key], f"{where}.{key}", optional=True, limit=100_000)
    for key in _SOURCE_INT:
        if key in s and s[key] is not None and (isinstance(s[key], bool) or not isinstance(s[key], int)):
            raise check.fail(f"{where}.{key}", "expected a whole number")
        if key in s:
            out[key] = s[key]
    for key in _SOURCE_BOOL:
        if key in s and not isinstance(s[key], bool):
            raise check.fail(f"{where}.{key}", "expected true or false")
        if key in s:
            out[key] = s[key]
    if "chunk_ids" in s:
        out["chunk_ids"] = check.string_list(s["chunk_ids"], f"{where}.chunk_ids")
    return out


def _optional_obj(check: Checker, value: Any, where: str) -> dict | None:
    return None if value is None else check.obj(value, where)


def _message(check: Checker, raw: Any, where: str) -> ParsedMessage:
    m = check.obj(raw, where)
    role = check.choice(m.get("role"), ROLES, f"{where}.role", "system, user or assistant")
    kind = check.choice(m.get("kind"), _KINDS, f"{where}.kind", "message or summary", default="message")
    if kind == "summary" and role != "system":
        raise check.fail(f"{where}.kind", "a summary of earlier messages is a system message")
    status = check.choice(m.get("status"), _STATUSES, f"{where}.status", "a message status", default="complete")
    sources = m.get("sources")
    if sources is not None:
        items = check.array(sources, f"{where}.sources")
        sources = [_source(check, s, f"{where}.sources[{i}]") for i, s in enumerate(items)]
    return ParsedMessage(
        key=str(_key(check, m.get("id"), f"{where}.id")),
        parent=_key(check, m.get("parent"), f"{where}.parent", optional=True),
        role=role,
        content=check.joined([str(check.text(m.get("content"), f"{where}.content"))], "", f"{where}.content"),
        created_at=float(check.time(m.get("created_at"), f"{where}.created_at") or 0.0),
        status=status,
        kind=kind,
        stats=fields.stats(_optional_obj(check, m.get("stats"), f"{where}.stats")),
        error=check.text(m.get("error"), f"{where}.error", optional=True, limit=10_000),
        sources=sources,
        answered_by=fields.answered_by(_optional_obj(check, m.get("answered_by"), f"{where}.answered_by")),
    )


def _conversation(check: Checker, raw: Any, where: str) -> ParsedConversation:
    c = check.obj(raw, where)
    settings = check.obj(c.get("settings", {}), f"{where}.settings")
    backend = settings.get("backend")
    if backend is not None:
        backend = check.choice(backend, _BACKENDS, f"{where}.settings.backend", "local or remote")
    pinned = settings.get("pinned", False)
    if not isinstance(pinned, bool):
        raise check.fail(f"{where}.settings.pinned", "expected true or false")
    title_is_auto = c.get("title_is_auto", False)
    if not isinstance(title_is_auto, bool):
        raise check.fail(f"{where}.title_is_auto", "expected true or false")
    raw_messages = check.array(c.get("messages"), f"{where}.messages")
    messages = [_message(check, m, f"{where}.messages[{i}]") for i, m in enumerate(raw_messages)]
    messages = order_tree(messages, check.name, where)
    leaf = _key(check, c.get("current_leaf"), f"{where}.current_leaf", optional=True)
    if leaf is not None and leaf not in {m.key for m in messages}:
        raise check.fail(f"{where}.current_leaf", f"message {leaf} is not in the conversation")
    created = check.time(c.get("created_at"), f"{where}.created_at")
    return ParsedConversation(
        title=clean_title(check.text(c.get("title"), f"{where}.title", limit=2000)),
        title_is_auto=title_is_auto,
        created_at=float(created or 0.0),
        updated_at=float(check.time(c.get("updated_at"), f"{where}.updated_at", optional=True) or created or 0.0),
        messages=messages,
        current_leaf=leaf,
        collections=check.string_list(settings.get("collections"), f"{where}.settings.collections", optional=True),
        backend=backend,
        tools=check.string_list(settings.get("tools"), f"{where}.settings.tools", optional=True),
        assistant_id=check.text(settings.get("assistant"), f"{where}.settings.assistant", optional=True, limit=200),
        project=check.text(settings.get("project"), f"{where}.settings.project", optional=True, limit=200),
        pinned=pinned,
    )


def parse(value: Any, name: str) -> Parsed:
    check = Checker(name)
    top = check.obj(value, "the file")
    version = top.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise check.fail("version", "expected a whole number")
    if version > VERSION:
        raise refuse(name, f"it was written by a newer Locus (format version {version}; this one reads {VERSION}).")
    if version < 1:
        raise check.fail("version", f"{version} is not a version of the format")
    items = check.array(top.get("conversations"), "conversations")
    if len(items) > MAX_CONVERSATIONS:
        raise refuse(name, f"it holds more than {MAX_CONVERSATIONS} conversations.")
    count = sum(len(c["messages"]) for c in items if isinstance(c, dict) and isinstance(c.get("messages"), list))
    if count > MAX_MESSAGES:
        raise refuse(name, f"it holds more than {MAX_MESSAGES} messages.")
    return Parsed("Locus", [_conversation(check, c, f"conversations[{i}]") for i, c in enumerate(items)])
