"""What an imported file may not bring in as it is, decided after parsing and before saving.

- A source's ``path`` and ``doc_id`` are kept only when they name a document indexed in this Locus (the same
  id at the same path); otherwise both go (the path becomes "", ``chunk_ids`` go too) and the source is
  marked ``imported``: its title and quote stay, and nothing opens a file a file named.
- A conversation's settings never switch on what the user did not choose here: tools and the backend are
  not carried over, and the documents chosen only when they are collections of this Locus ("all
  documents", an empty list, is not carried over either).

Each thing left out is counted for the import's summary.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from engine.history.imports.base import Parsed


def _note(notes: dict[str, int], what: str, n: int = 1) -> None:
    notes[what] = notes.get(what, 0) + n


def _source(source: dict, documents: Mapping[str, str] | None) -> bool:
    """Keep or strip one source's link to a document; True when it was stripped."""
    doc_id, path = source.get("doc_id"), source.get("path")
    if documents is not None and isinstance(doc_id, str) and path and documents.get(doc_id) == path:
        return False
    source.pop("doc_id", None)
    source.pop("chunk_ids", None)
    source["path"] = ""
    source["imported"] = True
    return bool(path) or doc_id is not None


def vet(
    parsed: Parsed,
    documents: Mapping[str, str] | None = None,
    collections: Collection[str] | None = None,
) -> dict[str, int]:
    """Strip from ``parsed`` (in place) what an import must not carry; what was left out, counted.
    ``documents``: doc_id -> path of the documents indexed here; ``collections``: the collections here
    (None for either: unknown, so nothing of that kind is kept)."""
    notes: dict[str, int] = {}
    for c in parsed.conversations:
        for m in c.messages:
            stripped = sum(_source(s, documents) for s in m.sources or [])
            if stripped:
                _note(notes, "links to documents not indexed here", stripped)
        if c.tools:
            _note(notes, "tools switched on")
        c.tools = None
        if c.backend is not None:
            _note(notes, "backend choices")
        c.backend = None
        if c.collections is not None:
            kept = [n for n in c.collections if collections is not None and n in collections]
            if len(kept) != len(c.collections) or not kept:
                _note(notes, "document choices not found here" if c.collections else "'all documents' choices")
            c.collections = kept or None
    return notes
