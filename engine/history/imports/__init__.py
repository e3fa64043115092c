"""Conversations into the history from a file: Locus JSON, ChatGPT's ``conversations.json``, an LM Studio
conversation, a Jan thread. ``read_file`` finds the format and parses the whole file (refusing it, with
the reason, when it is malformed, foreign or too big); ``import_file`` then saves every conversation in one
transaction (engine/history/imports/save.py), so a refused or failed import leaves the history as it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from engine.history.imports import chatgpt, jan, lmstudio, locus
from engine.history.imports.base import ImportRefused, Parsed, load_json, message_count, read_bytes, refuse
from engine.history.imports.save import save
from engine.history.store import HistoryStore

__all__ = ["ImportRefused", "ImportResult", "import_file", "read_file"]

FORMATS = "Locus JSON, ChatGPT's conversations.json, an LM Studio conversation or a Jan thread"


@dataclass(frozen=True)
class ImportResult:
    source: str  # the format read: "Locus", "ChatGPT", "LM Studio", "Jan"
    conversation_ids: list[int]
    messages: int
    skipped: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        n = len(self.conversation_ids)
        text = (
            f"Imported {n} conversation{'s' if n != 1 else ''} "
            f"({self.messages} message{'s' if self.messages != 1 else ''}) from {self.source}."
        )
        if self.skipped:
            text += " Left out: " + "; ".join(f"{what} ({count})" for what, count in self.skipped.items()) + "."
        return text


def read_file(path: str | Path) -> Parsed:
    """The conversations in a file, its format found from its content; ImportRefused when it has none."""
    path = Path(path)
    if jan.is_jan_path(path):
        parsed = jan.parse_path(path)
    else:
        value = load_json(read_bytes(path), path.name)
        if locus.is_locus(value):
            parsed = locus.parse(value, path.name)
        elif chatgpt.is_chatgpt(value):
            parsed = chatgpt.parse(value, path.name)
        elif lmstudio.is_lmstudio(value):
            parsed = lmstudio.parse(value, path.name)
        elif jan.is_jan_thread(value):
            parsed = jan.parse_path(path)
        else:
            raise refuse(path.name, f"it is not a conversation export Locus reads ({FORMATS}).")
    if not parsed.conversations or not message_count(parsed.conversations):
        raise refuse(path.name, "it holds no messages.")
    return parsed


def import_file(store: HistoryStore, path: str | Path) -> ImportResult:
    """Import every conversation of a file into the history, all or nothing."""
    parsed = read_file(path)
    ids = save(store, parsed)
    return ImportResult(parsed.source, ids, message_count(parsed.conversations), dict(parsed.skipped))
