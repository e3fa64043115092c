"""Locus's own extension of /v1/chat/completions: answering from the user's indexed documents.

A request asks for it with one extra field, which OpenAI's clients send as they are told
(``extra_body`` in the openai package)::

    "locus": {"documents": true, "collections": ["notes"]}

``documents`` true answers the last user message from the documents this server has indexed (all of
them, or those of ``collections``), the way the window does: the passages found go into the prompt, the
answer is checked against them, and the response carries every passage the model was given as
``locus_sources`` (engine/api/documents.py). Anything else in ``locus`` is refused with a 400 that names
it, as is a value of the wrong kind: a client never gets an answer that silently ignored what it asked.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.api.errors import invalid
from engine.runtime.types import ChatMessage

FIELD = "locus"
FIELDS = ("documents", "collections")
MAX_COLLECTIONS = 64
MAX_NAME = 200


@dataclass(frozen=True)
class DocumentsCall:
    """A chat request answered from documents: which collections (() for all of them), the question (the
    last user message), the client's earlier turns and its system prompt (its system messages, joined)."""

    collections: tuple[str, ...]
    question: str
    earlier: tuple[ChatMessage, ...]
    system_prompt: str


def parse(body: dict) -> dict | None:
    """The ``locus`` field's validated values ({"documents": bool, "collections": tuple}); None when absent."""
    raw = body.get(FIELD)
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise invalid(
            f"'{FIELD}' must be an object, e.g. {{\"documents\": true}}; not {_kind(raw)}.", FIELD, "invalid_extension"
        )
    for key in raw:
        if key not in FIELDS:
            raise invalid(
                f"'{FIELD}.{key}' is not a field of Locus's extension; it has {' and '.join(FIELDS)}.",
                f"{FIELD}.{key}",
                "invalid_extension",
            )
    documents = raw.get("documents", False)
    if not isinstance(documents, bool):
        raise invalid(
            f"'{FIELD}.documents' must be true or false, not {_kind(documents)}.",
            f"{FIELD}.documents",
            "invalid_extension",
        )
    collections = _collections(raw.get("collections"))
    if collections and not documents:
        raise invalid(
            f"'{FIELD}.collections' chooses documents to answer from: it needs '{FIELD}.documents': true.",
            f"{FIELD}.collections",
            "invalid_extension",
        )
    return {"documents": documents, "collections": collections}


def documents_call(messages: tuple[ChatMessage, ...], collections: tuple[str, ...]) -> DocumentsCall:
    """The question (the last message, which must be the user's), the turns before it and the system prompt."""
    last = messages[-1]
    if last.role != "user" or not last.content.strip():
        raise invalid(
            f"Answering from documents ('{FIELD}.documents') answers the last message, which must be a "
            "non-empty user message.",
            "messages",
        )
    if any(m.role == "tool" or m.tool_calls for m in messages):
        raise invalid(
            f"Answering from documents ('{FIELD}.documents') takes a conversation without tool calls.", "messages"
        )
    system = "\n\n".join(m.content for m in messages if m.role == "system" and m.content.strip())
    earlier = tuple(m for m in messages[:-1] if m.role != "system")
    return DocumentsCall(collections, last.content, earlier, system)


def _collections(raw: object) -> tuple[str, ...]:
    where = f"{FIELD}.collections"
    if raw is None:
        return ()
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not all(isinstance(n, str) and n.strip() for n in items):
        raise invalid(f"'{where}' must be a list of collection names (non-empty strings).", where, "invalid_extension")
    if len(items) > MAX_COLLECTIONS or any(len(n) > MAX_NAME for n in items):
        raise invalid(
            f"'{where}' names at most {MAX_COLLECTIONS} collections of at most {MAX_NAME} characters each.",
            where,
            "invalid_extension",
        )
    return tuple(dict.fromkeys(items))


def _kind(value: object) -> str:
    kind = {dict: "an object", list: "a list", str: "a string", bool: "true/false"}.get(type(value))
    return kind or ("null" if value is None else repr(value)[:40])
