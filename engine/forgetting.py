"""Forgetting what the user deletes: a conversation or a branch of it, with everything derived from it (its
messages and their search index entries, its traces, its cached model states in RAM and in spill files).

Traces already sent to an OTLP collector are beyond reach. Stop a conversation's running answer first; spans
of it still on their way are dropped when they arrive.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.turns import branch_key

if TYPE_CHECKING:
    from engine.assistant import Assistant

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConversationDeleted:
    """What deleting a conversation removed: its messages, traces and cached model states."""

    conversation_id: int
    title: str
    messages: int
    traces: int
    cached_states: int

    def describe(self) -> str:
        """One sentence for people: 'Deleted conversation “Trip” and 3 traces.'"""
        traces = f"{self.traces} trace{'' if self.traces == 1 else 's'}"
        return f"Deleted conversation \u201c{self.title}\u201d and {traces}."


def delete_conversation(assistant: Assistant, conversation_id: int) -> ConversationDeleted:
    """Delete a conversation with its messages, traces and cached states."""
    history = assistant.history
    title = history.conversation(conversation_id).title  # NotFoundError for an unknown id
    states = forget_states(assistant, conversation_id)
    messages = history.delete_conversation(conversation_id)
    traces = 0
    if assistant.traces is not None:
        assistant.tracing.flush()  # spans already ended are stored now, so the delete finds them
        traces = assistant.traces.forget_conversation(conversation_id)
    return ConversationDeleted(conversation_id, title, messages, traces, states)


def delete_branch(assistant: Assistant, message_id: int) -> tuple[int, int, int]:
    """Delete a version of a message and all that follows it (engine/history/tree.py), the traces of its
    answers, and the cached model states of the conversation's branches (any of them may hold its text;
    the next turn computes its prompt again). Returns (messages, traces, cached states) removed."""
    history = assistant.history
    conversation_id = history.message(message_id).conversation_id  # NotFoundError for an unknown id
    trace_ids = [(m.stats or {}).get("trace_id") for m in history.branch(message_id)]
    states = forget_states(assistant, conversation_id)
    messages = history.delete_branch(message_id)
    traces = 0
    if assistant.traces is not None:
        assistant.tracing.flush()  # spans already ended are stored now, so the delete finds them
        traces = assistant.traces.forget_traces((t for t in trace_ids if isinstance(t, str)), conversation_id)
    return messages, traces, states


def forget_states(assistant: Assistant, conversation_id: int) -> int:
    """Drop every cached state of a conversation's branches, in the backends and in spill files."""
    key = branch_key(conversation_id)  # every branch's key starts with it
    states = 0
    for backend in assistant.backends.current().available.values():
        try:
            states += backend.forget(key).result(timeout=30)
        except Exception:  # a runtime that is gone holds nothing any more
            log.warning("a backend could not drop the cache of conversation %s", conversation_id, exc_info=True)
    if assistant.kv_spill_dir is not None:
        from engine.runtime.kv_states import remove_spilled

        states += remove_spilled(assistant.kv_spill_dir, key)
    return states
