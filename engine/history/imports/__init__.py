"""Conversations into the history from a file: Locus JSON, ChatGPT's ``conversations.json``, an LM Studio
conversation, a Jan thread. ``read_file`` finds the format and parses the whole file (refusing it, with
the reason, when it is malformed, foreign or too big); ``import_file`` reads it so in a parse worker process
(engine/rag/isolation.py: a time and a memory limit, as documents get) and then saves every conversation in
one transaction (engine/history/imports/save.py), so a refused or failed import leaves the history as it was.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from engine.history.imports import chatgpt, jan, lmstudio, locus
from engine.history.imports.base import (
    ImportRefused,
    Parsed,
    load_json,
    message_count,
    read_bytes,
    read_zip_member,
    refuse,
)
from engine.history.imports.save import save
from engine.history.imports.vet import vet
from engine.history.store import HistoryStore

__all__ = ["ImportRefused", "ImportResult", "import_file", "read_file"]

LOADER = "engine.history.imports:worker_read"
PARSE_TIMEOUT_S = 300.0  # a 256 MB export parses in well under a minute
PARSE_MEMORY_MB = 4096  # JSON of the largest file allowed, as Python objects, with room
FORMATS = "Locus JSON, ChatGPT's conversations.json or its zip, an LM Studio conversation or a Jan thread"


@dataclass(frozen=True)
class ImportResult:
    source: str  # the format read: "Locus", "ChatGPT", "LM Studio", "Jan"
    conversation_ids: list[int]
    messages: int
    skipped: dict[str, int] = field(default_factory=dict)
    not_carried: dict[str, int] = field(default_factory=dict)  # settings and links the file's Locus had

    def describe(self) -> str:
        n = len(self.conversation_ids)
        text = (
            f"Imported {n} conversation{'s' if n != 1 else ''} "
            f"({self.messages} message{'s' if self.messages != 1 else ''}) from {self.source}."
        )
        if self.skipped:
            text += " Left out: " + "; ".join(f"{what} ({count})" for what, count in self.skipped.items()) + "."
        if self.not_carried:
            text += (
                " Not carried over: " + "; ".join(f"{what} ({count})" for what, count in self.not_carried.items()) + "."
            )
        return text


def read_file(path: str | Path) -> Parsed:
    """The conversations in a file, its format found from its content; ImportRefused when it has none."""
    path = Path(path)
    if jan.is_jan_path(path):
        parsed = jan.parse_path(path)
    else:
        zipped = path.suffix.lower() == ".zip"  # ChatGPT's data export as it is downloaded
        data = read_zip_member(path, "conversations.json") if zipped else read_bytes(path)
        value = load_json(data, path.name)
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


def worker_read(path: str, max_bytes: int = 0) -> tuple[str, object]:
    """``read_file`` as a parse worker runs it (engine/rag/isolation.py's loader protocol): ("ok", Parsed)
    or ("refused", (message, detail)), so that the refusal's own words come back."""
    try:
        return "ok", read_file(path)
    except ImportRefused as exc:
        return "refused", (exc.message, exc.detail)


def read_file_isolated(path: str | Path) -> Parsed:
    """``read_file`` in a parse worker process, with the time and memory limits documents get: a file that
    would hang the parser or fill the memory costs only that process."""
    from engine.rag.isolation import ParsePool

    with ParsePool(1, timeout_s=PARSE_TIMEOUT_S, loader=LOADER, memory_limit_mb=PARSE_MEMORY_MB) as pool:
        outcome = pool.parse(path)
    name = Path(path).name
    if outcome.error is not None:
        # Too slow, too much memory, or the reader crashed: in the words the document parsers use.
        raise ImportRefused(outcome.error.message, hint="Nothing was saved.", detail=outcome.error.detail)
    if outcome.document is None:
        raise refuse(name, "reading it was stopped.")
    reply: tuple = outcome.document  # type: ignore[assignment]  # the loader's reply: worker_read's
    if reply[0] == "refused":
        message, detail = reply[1]
        raise ImportRefused(message, hint="Nothing was saved.", detail=detail)
    if not isinstance(reply[1], Parsed):
        raise refuse(name, "its reader answered something else.")
    return reply[1]


def import_file(
    store: HistoryStore,
    path: str | Path,
    *,
    isolated: bool = True,
    documents: Mapping[str, str] | None = None,
    collections: Collection[str] | None = None,
) -> ImportResult:
    """Import every conversation of a file into the history, all or nothing; ``isolated``: read the file in
    a parse worker process (False: in this one, for tests of the readers themselves). ``documents`` (doc_id
    -> path) and ``collections``: what this Locus has indexed, so that sources and document choices naming
    them are kept (None: unknown, none kept; engine/history/imports/vet.py)."""
    parsed = read_file_isolated(path) if isolated else read_file(path)
    notes = vet(parsed, documents, collections)
    ids = save(store, parsed, notes)
    return ImportResult(parsed.source, ids, message_count(parsed.conversations), dict(parsed.skipped), notes)
