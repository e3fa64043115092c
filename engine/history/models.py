"""Conversations and messages as plain data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MessageStatus = Literal["complete", "streaming", "cancelled", "failed", "interrupted"]
MessageKind = Literal["message", "summary"]  # a summary: a system note standing for the turns before it

# Messages in these states are part of what the model sees on the next turn.
CONTEXT_STATUSES: frozenset[str] = frozenset({"complete", "cancelled", "interrupted"})

TITLE_MAX_CHARS = 60


@dataclass(frozen=True)
class Conversation:
    id: int
    title: str
    title_is_auto: bool
    created_at: float
    updated_at: float
    message_count: int = 0
    collections: list[str] | None = None  # None: plain chat; []: all documents; else these collections
    backend: str | None = None  # None: the default backend; "local": this computer; "remote": the model server
    tools: list[str] | None = None  # the tools its answers may call (None or []: none), by name
    approved_tools: tuple[str, ...] = ()  # tools the user allowed for the whole conversation ("conversation")
    current_leaf: int | None = None  # the last message of the branch shown (None: the newest message)
    project_id: int | None = None  # the project it is filed under (None: none)
    assistant_id: str | None = None  # the assistant that answers it (None: the settings' system prompt etc.)
    pinned: bool = False

    @property
    def uses_documents(self) -> bool:
        return self.collections is not None


@dataclass(frozen=True)
class Message:
    id: int
    conversation_id: int
    role: str
    content: str
    status: MessageStatus
    created_at: float
    stats: dict | None = None
    error: str | None = None
    sources: list[dict] | None = None  # citations of an answer from documents
    parent_id: int | None = None  # the message this one follows (None: the first of its conversation)
    kind: MessageKind = "message"
    answered_by: dict | None = None  # the assistant, model, sampling and system prompt that answered it

    @property
    def is_partial(self) -> bool:
        """An answer that did not finish (stopped by the user or by a crash)."""
        return self.status in ("cancelled", "interrupted")


@dataclass(frozen=True)
class SearchHit:
    conversation: Conversation
    snippet: str  # with the matched words between [ and ]
    message_id: int | None  # None when the title matched


def auto_title(question: str) -> str:
    """A title from the first question: its first line, cut at a word near 60 characters."""
    first_line = next((ln for ln in question.splitlines() if ln.strip()), "")
    text = " ".join(first_line.split())
    if not text:
        return "New conversation"
    if len(text) <= TITLE_MAX_CHARS:
        return text
    cut = text[:TITLE_MAX_CHARS]
    space = cut.rfind(" ")
    if space >= TITLE_MAX_CHARS // 2:
        cut = cut[:space]
    return cut.rstrip(" ,.;:") + "…"
