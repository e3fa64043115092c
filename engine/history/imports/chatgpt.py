"""ChatGPT's data export (``conversations.json``): a list of conversations, each a ``mapping`` of nodes
(id -> {message, parent, children}) that is the tree of every version of every message, and
``current_node``, the last message of the branch shown. A message has ``author.role``, ``create_time``
(seconds) and ``content`` (``content_type`` with ``parts``).

What Locus has no place for is left out and counted: tool messages (browsing, code output), the
assistant's calls to tools, hidden system and context messages, reasoning notes; an image in a message
becomes "[image]". Their children join the nearest message kept above them, so no branch is lost.
"""

from __future__ import annotations

import time
from typing import Any

from engine.history.imports import fields
from engine.history.imports.base import (
    MAX_CONVERSATIONS,
    MAX_MESSAGES,
    Checker,
    Parsed,
    ParsedConversation,
    ParsedMessage,
    clean_title,
    refuse,
)

_TEXT_TYPES = frozenset({"text", "multimodal_text"})
_LEFT_OUT_TYPES = frozenset(
    {
        "execution_output",
        "tether_browsing_display",
        "tether_quote",
        "system_error",
        "thoughts",
        "reasoning_recap",
        "user_editable_context",
        "model_editable_context",
    }
)
_STATUS = {
    "finished_successfully": "complete",
    "finished_partial_completion": "cancelled",
    "in_progress": "interrupted",
}
_Kept = tuple[str, str, float | None, str, dict | None]


def is_chatgpt(value: Any) -> bool:
    first = value[0] if isinstance(value, list) and value else value
    return isinstance(first, dict) and isinstance(first.get("mapping"), dict)


def _text(check: Checker, message: dict, where: str, parsed: Parsed) -> str | None:
    """The message's text, or None when it is a kind Locus leaves out."""
    content = check.obj(message.get("content") or {}, f"{where}.content")
    ctype = content.get("content_type", "text")
    if not isinstance(ctype, str):
        raise check.fail(f"{where}.content.content_type", f"expected text, found {type(ctype).__name__}")
    if ctype in _LEFT_OUT_TYPES:
        parsed.skip("tool output, hidden context and reasoning notes")
        return None
    if ctype == "code":
        code = check.text(content.get("text", ""), f"{where}.content.text") or ""
        language = content.get("language")
        fence = language if isinstance(language, str) and language.isalnum() else ""
        return check.joined([f"```{fence}", code, "```"], "\n", f"{where}.content")
    parts = content.get("parts")
    if parts is None and isinstance(content.get("text"), str):
        return check.joined([check.text(content["text"], f"{where}.content.text") or ""], "", f"{where}.content")
    pieces = []
    for i, part in enumerate(check.array(parts if parts is not None else [], f"{where}.content.parts")):
        if isinstance(part, str):
            pieces.append(check.text(part, f"{where}.content.parts[{i}]") or "")
        elif isinstance(part, dict):
            parsed.skip("images and attachments")
            pieces.append("[image]" if "image" in str(part.get("content_type", "")) else "[attachment]")
        else:
            raise check.fail(f"{where}.content.parts[{i}]", "expected text or an object")
    if ctype not in _TEXT_TYPES and not any(p.strip() for p in pieces):
        parsed.skip("messages of kinds Locus does not show")
        return None
    return check.joined(pieces, "\n\n" if ctype == "multimodal_text" else "\n", f"{where}.content")


def _kept(check: Checker, node: dict, where: str, parsed: Parsed) -> _Kept | None:
    """(role, text, time, status, answered_by) of a node's message, or None when it is left out."""
    raw = node.get("message")
    if raw is None:
        return None
    message = check.obj(raw, f"{where}.message")
    author = check.obj(message.get("author") or {}, f"{where}.message.author")
    role = author.get("role")
    raw_metadata = message.get("metadata")
    metadata: dict = raw_metadata if isinstance(raw_metadata, dict) else {}
    if role == "tool":
        parsed.skip("tool messages")
        return None
    if role not in ("user", "assistant", "system"):
        parsed.skip("messages of other roles")
        return None
    recipient = message.get("recipient", "all")
    if role == "assistant" and recipient not in (None, "all"):
        parsed.skip("the assistant's calls to tools")
        return None
    if metadata.get("is_visually_hidden_from_conversation"):
        parsed.skip("hidden system and context messages")
        return None
    text = _text(check, message, f"{where}.message", parsed)
    if text is None or not text.strip():
        if text is not None and role != "system":
            parsed.skip("empty messages")
        return None
    when = check.time(message.get("create_time"), f"{where}.message.create_time", optional=True)
    status = _STATUS.get(str(message.get("status")), "complete")
    model = metadata.get("model_slug")
    answered_by = fields.by_model(model, "ChatGPT") if role == "assistant" else None
    return role, text, when, status, answered_by


def _conversation(check: Checker, raw: Any, where: str, parsed: Parsed, budget: list[int]) -> ParsedConversation:
    c = check.obj(raw, where)
    mapping = check.obj(c.get("mapping"), f"{where}.mapping")
    budget[0] -= len(mapping)
    if budget[0] < 0:
        raise refuse(check.name, f"it holds more than {MAX_MESSAGES} messages.")
    created = check.time(c.get("create_time"), f"{where}.create_time", optional=True)
    nodes: dict[str, dict] = {}
    for key, node in mapping.items():
        if len(key) > 200:
            raise check.fail(f"{where}.mapping", "a node id is too long")
        nodes[key] = check.obj(node, f"{where}.mapping[{key!r}]")
    roots = []
    for key, node in nodes.items():
        parent = node.get("parent")
        if parent is None:
            roots.append(key)
        elif not isinstance(parent, str) or parent not in nodes:
            raise check.fail(f"{where}.mapping[{key!r}].parent", f"{parent!r} is not a node of the conversation")
    messages: list[ParsedMessage] = []
    kept_at: dict[str, str | None] = {}  # node -> the key of the nearest message kept at or above it
    times: dict[str | None, float] = {None: created if created is not None else time.time()}
    seen: set[str] = set()
    # Depth first through ``children`` (their order is the order of the versions), checked against ``parent``.
    stack: list[tuple[str, str | None]] = [(r, None) for r in reversed(roots)]
    while stack:
        key, above = stack.pop()
        if key in seen:
            raise check.fail(f"{where}.mapping", f"node {key!r} is reached twice (the tree loops)")
        seen.add(key)
        node = nodes[key]
        kept = _kept(check, node, f"{where}.mapping[{key!r}]", parsed)
        here = above
        if kept is not None:
            role, text, when, status, answered_by = kept
            stamp = when if when is not None else times[above]
            messages.append(ParsedMessage(key, above, role, text, stamp, status, answered_by=answered_by))
            times[key] = stamp
            here = key
        kept_at[key] = here
        children = check.array(node.get("children", []), f"{where}.mapping[{key!r}].children")
        for child in reversed(children):
            if not isinstance(child, str) or child not in nodes or nodes[child].get("parent") != key:
                raise check.fail(f"{where}.mapping[{key!r}].children", f"{child!r} is not a child of this node")
            stack.append((child, here))
    if len(seen) != len(nodes):
        raise check.fail(f"{where}.mapping", "some nodes cannot be reached from the first message (the tree loops)")
    current = c.get("current_node")
    leaf = kept_at.get(current) if isinstance(current, str) else None
    start = created if created is not None else min((m.created_at for m in messages), default=times[None])
    return ParsedConversation(
        title=clean_title(c.get("title") if isinstance(c.get("title"), str) else None),
        created_at=start,
        updated_at=check.time(c.get("update_time"), f"{where}.update_time", optional=True) or start,
        messages=messages,
        current_leaf=leaf,
    )


def parse(value: Any, name: str) -> Parsed:
    check = Checker(name)
    items = value if isinstance(value, list) else [value]
    if len(items) > MAX_CONVERSATIONS:
        raise refuse(name, f"it holds more than {MAX_CONVERSATIONS} conversations.")
    parsed = Parsed("ChatGPT", [])
    budget = [MAX_MESSAGES]
    for i, item in enumerate(items):
        parsed.conversations.append(_conversation(check, item, f"conversation {i + 1}", parsed, budget))
    return parsed
