"""Conversations out of the history: Locus JSON (complete) and Markdown (readable).

JSON ("locus-conversations", version 1) holds every message of each conversation's tree — the branches not
shown included — with its parent, role, kind, content, status, time, stats, sources and who answered it,
and the conversation's settings (documents, backend, tools, assistant, project, pinned, title), so that
``engine.history.imports`` reads it back into the same tree. Markdown shows the branch shown in the window,
one section per message with its role and time, the sources under an answer and code blocks as written;
a message that has other versions says so. PDF is the Markdown laid out by Qt (ui/export_pdf.py).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from engine.errors import NotFoundError
from engine.history.models import Conversation, Message
from engine.history.store import HistoryStore

FORMAT = "locus-conversations"
VERSION = 1
ROLE_NAMES = {"user": "You", "assistant": "Assistant", "system": "System"}


# Reading the store ----------------------------------------------------------------------


def _all_messages(store: HistoryStore, conversation_id: int) -> list[Message]:
    """Every message of the conversation's tree, in id order."""
    return store.all_messages(conversation_id)


def _project_name(store: HistoryStore, project_id: int | None) -> str | None:
    if project_id is None:
        return None
    rows = store.read("SELECT name FROM projects WHERE id = ?", (project_id,))
    return rows[0][0] if rows else None


def _message_record(m: Message) -> dict[str, Any]:
    return {
        "id": m.id,
        "parent": m.parent_id,
        "role": m.role,
        "kind": m.kind,
        "content": m.content,
        "status": m.status,
        "created_at": m.created_at,
        "stats": m.stats,
        "error": m.error,
        "sources": m.sources,
        "answered_by": m.answered_by,
    }


def conversation_record(store: HistoryStore, conversation_id: int) -> dict[str, Any]:
    """One conversation as the JSON export holds it: its settings and the whole tree of its messages."""
    with store.transaction():  # one snapshot: a message added meanwhile cannot put the leaf outside the list
        c = store.conversation(conversation_id)
        messages = _all_messages(store, conversation_id)
        shown = store.messages(conversation_id)
        project = _project_name(store, c.project_id)
    return {
        "id": c.id,
        "title": c.title,
        "title_is_auto": c.title_is_auto,
        "created_at": c.created_at,
        "updated_at": c.updated_at,
        "settings": {
            "collections": c.collections,
            "backend": c.backend,
            "tools": c.tools,
            "assistant": c.assistant_id,
            "project": project,
            "pinned": bool(c.pinned),
        },
        "current_leaf": shown[-1].id if shown else None,
        "messages": [_message_record(m) for m in messages],
    }


def export_json(store: HistoryStore, conversation_ids: Iterable[int], *, generator: str = "Locus") -> dict[str, Any]:
    """The JSON export of these conversations (write it with ``json.dump(..., ensure_ascii=False)``)."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": time.time(),
        "generator": generator,
        "conversations": [conversation_record(store, cid) for cid in conversation_ids],
    }


# Markdown -------------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>#|~])")
_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")


def plain_md(text: str) -> str:
    """Text shown as itself in Markdown (a title, a file name): its special characters escaped."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(text.split()))


def when(t: float) -> str:
    """A time as people read it, in this computer's time zone."""
    return datetime.fromtimestamp(t).astimezone().strftime("%Y-%m-%d %H:%M")


def _closed_fences(content: str) -> str:
    """The content with a code block it leaves open closed, so the next message is not swallowed by it."""
    open_fence: str | None = None
    for line in content.splitlines():
        m = _FENCE.match(line)
        if not m:
            continue
        mark = m.group(1)
        if open_fence is None:
            open_fence = mark
        elif mark[0] == open_fence[0] and len(mark) >= len(open_fence) and not line.strip()[len(mark) :]:
            open_fence = None
    return content if open_fence is None else f"{content.rstrip()}\n{open_fence}"


_HEADING = re.compile(r"^( {0,3})(#{1,6}(?:[ \t]|$))")
_RULE = re.compile(r"^( {0,3})([-=_*+])(?=[-=_*+ \t]*$)")


def _unforgeable(content: str) -> str:
    """A message's content that cannot pass for the export's own structure: outside code blocks, a heading
    line (an answer writing "## You · 2025-01-01 10:00") and a line of only dashes, equals signs or stars
    (a rule between conversations, or a heading made of the line above) are escaped, so they show as the
    characters written; code blocks are kept as written."""
    out: list[str] = []
    open_fence: str | None = None
    for line in content.split("\n"):
        m = _FENCE.match(line)
        if m:
            mark = m.group(1)
            if open_fence is None:
                open_fence = mark
            elif mark[0] == open_fence[0] and len(mark) >= len(open_fence) and not line.strip()[len(mark) :]:
                open_fence = None
            out.append(line)
            continue
        if open_fence is None:
            line = _HEADING.sub(r"\1\\\2", line, count=1)
            line = _RULE.sub(r"\1\\\2", line, count=1)
        out.append(line)
    return "\n".join(out)


def _source_line(source: dict) -> str:
    number = source.get("number")
    label = source.get("title") or source.get("path") or "document"
    place = source.get("location") or source.get("place_label") or ""
    head = f"[{number}] " if isinstance(number, int) else ""
    text = f"{head}{plain_md(str(label))}"
    if place and str(place) != str(label):
        text += f" — {plain_md(str(place))}"
    if source.get("supported") is False:
        text += " (retrieved, not cited)"
    return f"- {text}"


def _versions(messages: list[Message]) -> dict[int, tuple[int, int]]:
    """For each message that has other versions (same parent, same role): (its position, how many)."""
    groups: dict[tuple[int | None, str], list[int]] = {}
    for m in messages:
        groups.setdefault((m.parent_id, m.role), []).append(m.id)
    out: dict[int, tuple[int, int]] = {}
    for ids in groups.values():
        if len(ids) > 1:
            for i, mid in enumerate(ids):
                out[mid] = (i + 1, len(ids))
    return out


def conversation_markdown(store: HistoryStore, conversation_id: int, *, heading: str = "#") -> str:
    """One conversation as Markdown: the branch shown, each message with its role and time."""
    with store.transaction():  # one snapshot of the conversation
        c: Conversation = store.conversation(conversation_id)
        shown = store.messages(conversation_id)
        versions = _versions(_all_messages(store, conversation_id))
    sub = heading + "##"
    lines = [f"{heading} {plain_md(c.title)}", ""]
    meta = [f"Started {when(c.created_at)}", f"{len(shown)} messages"]
    if c.collections is not None:
        meta.append("answers from " + (", ".join(plain_md(n) for n in c.collections) or "all documents"))
    lines += ["*" + " · ".join(meta) + "*", ""]
    if any(m.id in versions for m in shown):
        lines += [
            "*This conversation has branches: the versions shown here are the ones open in Locus; "
            "the JSON export holds them all.*",
            "",
        ]
    for m in shown:
        role = "Summary of earlier messages" if m.kind == "summary" else ROLE_NAMES.get(m.role, plain_md(m.role))
        title = f"{sub} {role} · {when(m.created_at)}"
        if m.id in versions:
            title += " · version {} of {}".format(*versions[m.id])
        lines += [title, ""]
        if m.status in ("cancelled", "interrupted"):
            lines += ["*(this answer was stopped before it finished)*", ""]
        elif m.status == "failed":
            lines += [f"*(this answer failed: {plain_md(m.error or 'no reason given')})*", ""]
        lines += [_unforgeable(_closed_fences(m.content.strip())) or "*(empty)*", ""]
        if m.sources:
            lines += ["**Sources**", ""]
            lines += [_source_line(s) for s in m.sources if isinstance(s, dict)]
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def export_markdown(store: HistoryStore, conversation_ids: list[int], *, title: str | None = None) -> str:
    """Several conversations as one Markdown document (a project: ``title`` its name), or one on its own."""
    if title is None and len(conversation_ids) == 1:
        return conversation_markdown(store, conversation_ids[0])
    n = len(conversation_ids)
    parts = [f"# {plain_md(title or 'Conversations')}\n\n*{n} conversation{'s' if n != 1 else ''}*\n"]
    parts += [conversation_markdown(store, cid, heading="##") for cid in conversation_ids]
    return "\n---\n\n".join(parts)


def file_stem(conversation: Conversation) -> str:
    """A file name for a conversation's export: its id and title, with only safe characters."""
    words = re.sub(r"[^\w\- ]+", "", conversation.title, flags=re.UNICODE).split()
    return f"{conversation.id}-{'-'.join(words)[:60] or 'conversation'}"


def project_conversations(store: HistoryStore, project: str) -> tuple[str, list[int]]:
    """A project's name and its conversations' ids (engine/history/projects.py), the project named or given
    by id (a name first: a project may be called "2")."""
    from engine.history.projects import Projects

    projects = Projects(store)
    found = next((p for p in projects.all() if p.name == project), None)
    if found is None and project.isdigit():
        found = next((p for p in projects.all() if p.id == int(project)), None)
    if found is None:
        raise NotFoundError(f"There is no project '{project}'.")
    return found.name, projects.conversation_ids(found.id)
