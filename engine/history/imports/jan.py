"""Jan's threads: a folder per thread holding ``thread.json`` (``id``, ``object: "thread"``, ``title`` — or
``summary`` in its first specification — ``created``/``updated``, ``assistants`` with the model) and
``messages.jsonl``, one ``thread.message`` a line (``role``, ``content``: text parts
``{"type": "text", "text": {"value": ...}}``, ``created_at`` or ``created``, in seconds or milliseconds,
``status``). Either file, or the folder, may be given; a thread is one branch, in time order.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from engine.history.imports import fields
from engine.history.imports.base import (
    MAX_FILE_BYTES,
    MAX_MESSAGES,
    Checker,
    ImportRefused,
    Parsed,
    ParsedConversation,
    ParsedMessage,
    clean_title,
    load_json,
    read_bytes,
    refuse,
)

THREAD_FILE, MESSAGES_FILE = "thread.json", "messages.jsonl"
_STATUS = {"ready": "complete", "error": "failed", "stopped": "cancelled", "pending": "interrupted"}


def is_jan_thread(value: Any) -> bool:
    return isinstance(value, dict) and value.get("object") == "thread"


def is_jan_path(path: Path) -> bool:
    return path.is_dir() or path.name.endswith(".jsonl")


def _content(check: Checker, raw: Any, where: str, parsed: Parsed) -> str:
    if isinstance(raw, str):
        return check.joined([check.text(raw, where) or ""], "", where)
    pieces = []
    for i, part in enumerate(check.array(raw if raw is not None else [], where)):
        part = check.obj(part, f"{where}[{i}]")
        text = part.get("text")
        if part.get("type") == "text" and isinstance(text, dict):
            pieces.append(check.text(text.get("value", ""), f"{where}[{i}].text.value") or "")
        elif part.get("type") == "text" and isinstance(text, str):
            pieces.append(check.text(text, f"{where}[{i}].text") or "")
        else:
            parsed.skip("images and attachments")
            pieces.append("[attachment]")
    return check.joined(pieces, "\n", where)


def parse_thread(thread: dict | None, lines: list[Any], name: str) -> Parsed:
    check = Checker(name)
    parsed = Parsed("Jan", [])
    if len(lines) > MAX_MESSAGES:
        raise refuse(name, f"it holds more than {MAX_MESSAGES} messages.")
    thread = thread or {}
    created = check.time(thread.get("created"), "thread.created", optional=True)
    model = None
    assistants = thread.get("assistants")
    if isinstance(assistants, list) and assistants and isinstance(assistants[0], dict):
        m = assistants[0].get("model")
        model = m.get("id") if isinstance(m, dict) else None
    rows = []
    for i, raw in enumerate(lines):
        where = f"message {i + 1}"
        item = check.obj(raw, where)
        role = item.get("role")
        if role not in ("user", "assistant", "system"):
            parsed.skip("messages of other roles")
            continue
        stamp = item.get("created_at", item.get("created"))
        when = check.time(stamp, f"{where}.created_at", optional=True)
        text = _content(check, item.get("content"), f"{where}.content", parsed)
        if not text.strip():
            parsed.skip("empty messages")
            continue
        status = _STATUS.get(str(item.get("status")), "complete")
        by = fields.by_model(model, "Jan") if role == "assistant" else None
        rows.append((when if when is not None else created, i, role, text, status, by))
    rows.sort(key=lambda r: (r[0] if r[0] is not None else 0.0, r[1]))  # time order, the file's order in ties
    start = created if created is not None else next((r[0] for r in rows if r[0] is not None), time.time())
    messages: list[ParsedMessage] = []
    for when, i, role, text, status, by in rows:
        parent = messages[-1].key if messages else None
        messages.append(ParsedMessage(str(i), parent, role, text, when or start, status, answered_by=by))
    title = thread.get("title") if isinstance(thread.get("title"), str) else thread.get("summary")
    parsed.conversations.append(
        ParsedConversation(
            title=clean_title(title if isinstance(title, str) else None),
            created_at=start,
            updated_at=check.time(thread.get("updated"), "thread.updated", optional=True) or start,
            messages=messages,
        )
    )
    return parsed


def read_lines(data: bytes, name: str) -> list[Any]:
    """The JSON values of a .jsonl file, one a line (blank lines ignored)."""
    out = []
    for n, line in enumerate(data.splitlines(), 1):
        if line.strip():
            try:
                out.append(load_json(line, name))
            except ImportRefused as exc:
                raise refuse(name, f"line {n} is not a JSON message ({exc.detail})") from None
    return out


def parse_path(path: Path) -> Parsed:
    """A Jan thread from its folder, its thread.json or its messages.jsonl (the other file read beside it)."""
    folder = path if path.is_dir() else path.parent
    thread_path, messages_path = folder / THREAD_FILE, folder / MESSAGES_FILE
    if not path.is_dir() and path.name.endswith(".jsonl"):
        messages_path = path
    if not messages_path.is_file():
        raise refuse(path.name, f"a Jan thread needs its {MESSAGES_FILE}, and there is none beside it.")
    data = read_bytes(messages_path)
    thread = None
    if thread_path.is_file():
        thread = load_json(read_bytes(thread_path, MAX_FILE_BYTES // 16), thread_path.name)
        if not is_jan_thread(thread) and not isinstance(thread, dict):
            raise refuse(thread_path.name, "it is not a Jan thread.")
    return parse_thread(thread, read_lines(data, messages_path.name), messages_path.name)
