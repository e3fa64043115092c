"""LM Studio's conversation files (``~/.lmstudio/conversations/*.conversation.json``): ``name``,
``createdAt`` (milliseconds), ``pinned``, ``systemPrompt`` and ``messages``, each a list of ``versions``
(the answers regenerated, the questions edited) with the one shown in ``currentlySelected``. A version is
``singleStep`` (``role`` and ``content`` parts) or, for answers, ``multiStep`` (``steps``: content blocks
with their generation stats, tool and debug steps). The versions shown make the branch shown; each other
version becomes a sibling of the shown one. Messages carry no time of their own: the conversation's is
used. Older files whose messages are plain ``{"role", "content"}`` are read too.
"""

from __future__ import annotations

import time
from typing import Any

from engine.history.imports import fields
from engine.history.imports.base import (
    MAX_MESSAGES,
    ROLES,
    Checker,
    Parsed,
    ParsedConversation,
    ParsedMessage,
    clean_title,
    refuse,
)


def is_lmstudio(value: Any) -> bool:
    if not isinstance(value, dict) or not isinstance(value.get("messages"), list):
        return False
    first = value["messages"][0] if value["messages"] else None
    if first is None:
        return "createdAt" in value and "name" in value
    return isinstance(first, dict) and (
        "versions" in first or ("role" in first and "createdAt" in value and "content" in first)
    )


def _parts(check: Checker, content: Any, where: str, parsed: Parsed, *, message: bool = True) -> str:
    """The text of ``content`` (text, or a list of parts); ``message``: it is a message's whole text."""
    if isinstance(content, str):
        return check.joined([check.text(content, where) or ""], "", where, message=message)
    pieces = []
    for i, part in enumerate(check.array(content if content is not None else [], where)):
        part = check.obj(part, f"{where}[{i}]")
        if part.get("type") == "text":
            pieces.append(check.text(part.get("text", ""), f"{where}[{i}].text") or "")
        else:
            parsed.skip("images and attachments")
            pieces.append("[attachment]")
    return check.joined(pieces, "\n", where, message=message)


def _stats(gen_info: Any) -> dict | None:
    stats = gen_info.get("stats") if isinstance(gen_info, dict) else None
    if not isinstance(stats, dict):
        return None
    names = {
        "promptTokensCount": "prompt_tokens",
        "predictedTokensCount": "completion_tokens",
        "timeToFirstTokenSec": "time_to_first_token_s",
        "tokensPerSecond": "tokens_per_s",
        "totalTimeSec": "total_s",
        "stopReason": "finish_reason",
    }
    out = {ours: stats[theirs] for theirs, ours in names.items() if theirs in stats}
    return fields.stats(out)


def _version(check: Checker, raw: Any, where: str, parsed: Parsed) -> tuple[str, str, dict | None, dict | None]:
    """(role, text, stats, answered_by) of one version of a message."""
    v = check.obj(raw, where)
    role = check.choice(v.get("role"), ROLES, f"{where}.role", "system, user or assistant")
    stats = None
    if v.get("type") == "multiStep":
        pieces = []
        for i, step in enumerate(check.array(v.get("steps"), f"{where}.steps")):
            step = check.obj(step, f"{where}.steps[{i}]")
            if step.get("type") != "contentBlock":
                parsed.skip("tool and debug steps")
                continue
            style = step.get("style")
            if isinstance(style, dict) and style.get("type") == "thinking":
                parsed.skip("reasoning notes")
                continue
            pieces.append(_parts(check, step.get("content"), f"{where}.steps[{i}].content", parsed, message=False))
            stats = _stats(step.get("genInfo")) or stats
        text = check.joined([p for p in pieces if p], "\n\n", where)
    else:
        text = _parts(check, v.get("content"), f"{where}.content", parsed)
    sender = v.get("senderInfo")
    model = sender.get("senderName") if isinstance(sender, dict) else None
    answered_by = fields.by_model(model, "LM Studio") if role == "assistant" else None
    return role, text, stats, answered_by


def parse(value: Any, name: str) -> Parsed:
    check = Checker(name)
    c = check.obj(value, "the file")
    parsed = Parsed("LM Studio", [])
    created = check.time(c.get("createdAt"), "createdAt", optional=True)
    items = check.array(c.get("messages"), "messages")
    if len(items) > MAX_MESSAGES:
        raise refuse(name, f"it holds more than {MAX_MESSAGES} messages.")
    start = float(created) if created is not None else time.time()
    messages: list[ParsedMessage] = []
    parent: str | None = None
    system = c.get("systemPrompt")
    if isinstance(system, str) and system.strip():
        prompt = check.joined([check.text(system, "systemPrompt") or ""], "", "systemPrompt")
        messages.append(ParsedMessage("system", None, "system", prompt, start))
        parent = "system"
    count = 0
    for i, raw in enumerate(items):
        item = check.obj(raw, f"messages[{i}]")
        if "versions" not in item:  # the older format: one plain message
            versions, selected = [item], 0
        else:
            versions = check.array(item.get("versions"), f"messages[{i}].versions")
            selected = item.get("currentlySelected", 0)
            if isinstance(selected, bool) or not isinstance(selected, int) or not 0 <= selected < len(versions):
                raise check.fail(f"messages[{i}].currentlySelected", f"{selected!r} is not one of its versions")
        count += len(versions)
        if count > MAX_MESSAGES:
            raise refuse(name, f"it holds more than {MAX_MESSAGES} messages.")
        shown: str | None = None
        for j, raw_version in enumerate(versions):
            role, text, stats, answered_by = _version(check, raw_version, f"messages[{i}].versions[{j}]", parsed)
            key = f"{i}.{j}"
            messages.append(ParsedMessage(key, parent, role, text, start, stats=stats, answered_by=answered_by))
            if j == selected:
                shown = key
        parent = shown
    return Parsed(
        "LM Studio",
        [
            ParsedConversation(
                title=clean_title(c.get("name") if isinstance(c.get("name"), str) else None),
                created_at=start,
                updated_at=start,
                messages=messages,
                current_leaf=parent,
                pinned=c.get("pinned") is True,
            )
        ],
        parsed.skipped,
    )
