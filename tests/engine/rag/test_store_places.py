"""An index written before chunks had places (slide, rows, chapter, message) keeps working after the change."""

from __future__ import annotations

import json

import lancedb
import numpy as np
import pyarrow as pa

from engine.rag.cite import Citation
from engine.rag.retrieve import _merge_adjacent
from engine.rag.store import DocumentStore

DIM = 8
# The chunks table exactly as Locus wrote it before the place columns (commit 4abc56b).
OLD_CHUNKS = pa.schema(
    [
        ("chunk_id", pa.string()),
        ("doc_id", pa.string()),
        ("collection", pa.string()),
        ("path", pa.string()),
        ("title", pa.string()),
        ("kind", pa.string()),
        ("chunk_index", pa.int32()),
        ("text", pa.string()),
        ("n_tokens", pa.int32()),
        ("page", pa.int32()),
        ("line_start", pa.int32()),
        ("line_end", pa.int32()),
        ("heading", pa.string()),
        ("vector", pa.list_(pa.float32(), DIM)),
    ]
)


def vector(seed: int) -> list[float]:
    v = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return (v / np.linalg.norm(v)).tolist()


def row(doc: str, i: int, text: str, **extra) -> dict:
    base = {
        "chunk_id": f"{doc}-{i}",
        "doc_id": doc,
        "collection": "default",
        "path": f"/docs/{doc}",
        "title": doc,
        "kind": "pdf",
        "chunk_index": i,
        "text": text,
        "n_tokens": 3,
        "page": 4,
        "line_start": None,
        "line_end": None,
        "heading": None,
        "vector": vector(i),
    }
    return base | extra


def test_an_index_from_before_places_opens_reads_and_takes_new_rows(tmp_path):
    folder = tmp_path / "index"
    folder.mkdir()
    (folder / "index.json").write_text(json.dumps({"embedder": "e", "dim": DIM, "created": 0}), encoding="utf-8")
    db = lancedb.connect(str(folder))
    db.create_table("chunks", pa.Table.from_pylist([row("old.pdf", 0, "lighthouse keepers log")], schema=OLD_CHUNKS))

    store = DocumentStore(folder, "e", DIM)
    assert {"place", "place_label", "place_within"} <= set(store.chunks.schema.names)
    old = store.vector_search(np.asarray(vector(0), dtype=np.float32), 1)[0]
    assert (old.page, old.place, old.place_label, old.place_within) == (4, None, None, None)

    store.replace_chunks(
        "deck.pptx",
        [
            row("deck.pptx", 0, "harbour revenue", kind="pptx", page=2, place="slide", place_label="Revenue"),
            row("deck.pptx", 1, "more revenue", kind="pptx", page=2, place="slide", place_label="Revenue"),
        ],
    )
    hits = store.neighbours("deck.pptx", [0, 1])
    passage = _merge_adjacent([(h, 1.0) for h in hits], {})[0]
    assert passage.location() == 'slide 2 "Revenue"' and len(passage.chunk_ids) == 2
    old_passage = _merge_adjacent([(old, 1.0)], {})[0]
    assert Citation(1, old_passage, "", True).to_dict()["location"] == "page 4"

    reopened = DocumentStore(folder, "e", DIM)  # a second opening finds nothing to add
    assert reopened.chunk_count() == 3
