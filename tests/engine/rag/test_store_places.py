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


def test_two_processes_opening_an_old_index_at_once_both_open_it(tmp_path, monkeypatch):
    """Two DocumentStores (as the window and `locus index` would) both find the place columns missing and
    both add them; the second's add fails in LanceDB ("already exists"), and must not fail its opening.
    A barrier in add_columns holds both until each has seen the old schema, as two processes may."""
    import threading

    from lancedb.table import LanceTable

    folder = tmp_path / "index"
    folder.mkdir()
    (folder / "index.json").write_text(json.dumps({"embedder": "e", "dim": DIM, "created": 0}), encoding="utf-8")
    lancedb.connect(str(folder)).create_table(
        "chunks", pa.Table.from_pylist([row("old.pdf", 0, "lighthouse keepers log")], schema=OLD_CHUNKS)
    )
    both_saw_the_old_schema = threading.Barrier(2, timeout=60)
    first_done = threading.Event()
    add_columns = LanceTable.add_columns

    def add_in_turn(table, *args, **kwargs):
        if both_saw_the_old_schema.wait() == 0:
            try:
                return add_columns(table, *args, **kwargs)
            finally:
                first_done.set()
        first_done.wait(60)
        return add_columns(table, *args, **kwargs)

    monkeypatch.setattr(LanceTable, "add_columns", add_in_turn)
    stores: list = []
    errors: list = []

    def open_store():
        try:
            stores.append(DocumentStore(folder, "e", DIM))
        except Exception as exc:  # noqa: BLE001 - the failure this test looks for
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(stores) == 2
    for store in stores:
        assert {"place", "place_label", "place_within"} <= set(store.chunks.schema.names)
        store.replace_chunks("deck.pptx", [row("deck.pptx", 0, "harbour revenue", kind="pptx", place="slide")])
        assert store.chunk_count() == 2
