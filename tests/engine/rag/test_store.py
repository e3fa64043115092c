"""The LanceDB document store in a temp dir: atomic replacement, filters, removal, model checks."""

from __future__ import annotations

import numpy as np
import pytest

from engine.rag.store import DocumentRecord, DocumentStore, EmbeddingModelMismatch

DIM = 8


def unit(seed: int) -> list[float]:
    v = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return (v / np.linalg.norm(v)).tolist()


def rows(doc_id: str, texts: list[str], collection="default", version="v1", seed=0) -> list[dict]:
    return [
        {
            "chunk_id": f"{doc_id}-{version}-{i}",
            "doc_id": doc_id,
            "collection": collection,
            "path": f"/docs/{doc_id}.txt",
            "title": doc_id,
            "kind": "text",
            "chunk_index": i,
            "text": t,
            "n_tokens": len(t.split()),
            "page": None,
            "line_start": i + 1,
            "line_end": i + 1,
            "heading": None,
            "vector": unit(seed + i),
        }
        for i, t in enumerate(texts)
    ]


def record(doc_id: str, status="done", collection="default") -> DocumentRecord:
    return DocumentRecord(
        doc_id, f"/docs/{doc_id}.txt", collection, doc_id, "text", status, "", "", "h", 1, 1.0, 1, 0, 0.0
    )


@pytest.fixture()
def store(tmp_path):
    return DocumentStore(tmp_path / "index", "test-embedder", DIM)


def test_replacing_a_documents_chunks_is_one_commit(store):
    store.replace_chunks("a", rows("a", ["alpha one", "alpha two", "alpha three"]))
    store.replace_chunks("b", rows("b", ["beta one"]))
    before = store.chunks.version
    store.replace_chunks("a", rows("a", ["alpha new"], version="v2"))
    assert store.chunks.version == before + 1
    assert sorted(r["chunk_id"] for r in store.chunks.to_arrow().to_pylist()) == ["a-v2-0", "b-v1-0"]


def test_the_same_version_twice_makes_no_duplicates(store):
    store.replace_chunks("a", rows("a", ["one", "two"]))
    store.replace_chunks("a", rows("a", ["one", "two"]))
    assert store.chunk_count() == 2


def test_search_both_ways_and_filter_by_collection(store):
    store.replace_chunks("a", rows("a", ["the quick brown fox"], collection="animals", seed=1))
    store.replace_chunks("b", rows("b", ["a slow green turtle"], collection="animals", seed=2))
    store.replace_chunks("c", rows("c", ["quarterly revenue report"], collection="work", seed=3))
    hits = store.vector_search(np.array(unit(1), dtype=np.float32), 3)
    assert hits[0].doc_id == "a" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert [h.doc_id for h in store.vector_search(np.array(unit(1), dtype=np.float32), 3, ["work"])] == ["c"]
    assert [h.doc_id for h in store.text_search("turtle", 5)] == ["b"]
    assert store.text_search("turtle", 5, ["work"]) == []
    assert store.text_search("   ", 5) == []


def test_documents_round_trip_and_removal(store):
    store.upsert_document(record("a", collection="x"))
    store.upsert_document(record("b"))
    store.replace_chunks("a", rows("a", ["one"]))
    assert [r.doc_id for r in store.list_documents()] == ["b", "a"]  # by collection, then path
    assert store.collections() == ["default", "x"]
    store.remove_document("a")
    assert store.document("a") is None and store.chunk_count("a") == 0


def test_an_interrupted_removal_is_finished(store):
    store.upsert_document(record("a", status="removing"))
    store.replace_chunks("a", rows("a", ["leftover"]))
    assert store.finish_interrupted_removals() == 1
    assert store.document("a") is None and store.chunk_count() == 0


def test_a_different_embedding_model_is_refused(tmp_path):
    DocumentStore(tmp_path / "index", "model-a", DIM)
    with pytest.raises(EmbeddingModelMismatch) as info:
        DocumentStore(tmp_path / "index", "model-b", DIM)
    assert "model-a" in str(info.value) and "locus docs rebuild" in info.value.user_text()


def test_the_ann_index_keeps_answers(store):
    for d in range(40):
        store.replace_chunks(f"d{d}", rows(f"d{d}", [f"text {d} {i}" for i in range(8)], seed=d * 10))
    query = np.array(unit(55), dtype=np.float32)
    exact = [h.chunk_id for h in store.vector_search(query, 5)]
    store.optimize(ann_min_rows=100)
    assert store.has_ann_index()
    approx = [h.chunk_id for h in store.vector_search(query, 5, nprobes=1000)]
    assert approx == exact


def test_every_change_to_the_documents_leaves_a_new_stamp_for_other_processes(tmp_path):
    """A window watching the index folder learns of changes another process (`locus index`) makes there:
    each add, update and removal writes a new stamp, private to the user, that any store on the folder reads."""
    writer = DocumentStore(tmp_path / "index", "test-embedder", DIM)
    reader = DocumentStore(tmp_path / "index", "test-embedder", DIM)
    stamps = [reader.change_stamp()]
    writer.upsert_document(record("a"))
    stamps.append(reader.change_stamp())
    writer.upsert_document(record("a", status="failed"))
    stamps.append(reader.change_stamp())
    writer.remove_document("a")
    stamps.append(reader.change_stamp())
    assert stamps[0] == "" and len(set(stamps)) == 4
    changes = tmp_path / "index" / "changes"
    assert changes.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in (tmp_path / "index").iterdir() if p.name.startswith(".changes")) == []


def test_new_documents_are_appended_and_known_ones_replaced_in_one_batch(store):
    store.replace_chunks_many(["a", "b"], rows("a", ["alpha one", "alpha two"]) + rows("b", ["beta one"]))
    # One batch: "a" is replaced by a new version, "c" is new, "b" has no chunks any more.
    store.replace_chunks_many(["a", "b", "c"], rows("a", ["alpha new"], version="v2") + rows("c", ["gamma"]))
    assert sorted(r["chunk_id"] for r in store.chunks.to_arrow().to_pylist()) == ["a-v2-0", "c-v1-0"]
    store.replace_chunks_many(["c"], rows("c", ["gamma"]))  # the same version again: still one row
    assert store.chunk_count("c") == 1
    assert [h.chunk_id for h in store.text_search("gamma", 5)] == ["c-v1-0"]


def test_a_long_job_does_not_leave_a_file_per_commit(store):
    store.compact_every = 5  # (200 in the app)
    for i in range(12):
        store.replace_chunks(f"d{i}", rows(f"d{i}", [f"text {i}"], seed=i))
    assert store.chunk_count() == 12
    # Twelve commits would be twelve files; compacted after the 5th and the 10th, a few are left.
    assert store.chunks.stats()["fragment_stats"]["num_fragments"] <= 4


def test_a_compaction_that_fails_does_not_fail_the_write(store, monkeypatch, caplog):
    """The chunks are committed before the compaction; a compaction that fails (LanceDB refusing it, a full
    disk: faked on the table, as neither can be made to happen here) is logged and the write stands."""

    def fails(*args, **kwargs):
        raise OSError("No space left on device")

    store.compact_every = 1
    monkeypatch.setattr(store.chunks, "optimize", fails)
    store.replace_chunks("a", rows("a", ["alpha one"]))
    assert store.chunk_count("a") == 1
    assert "compaction" in caplog.text and "No space left on device" in caplog.text


def test_a_documents_chunk_rows_carry_its_text_and_places_but_not_its_vectors(store):
    """The source viewer shows text: its read leaves the vector column (most of a row's bytes) on disk."""
    store.replace_chunks("a", rows("a", ["alpha one", "alpha two"]))
    got = store.chunk_rows("a")
    assert [(r["chunk_index"], r["text"], r["line_start"]) for r in sorted(got, key=lambda r: r["chunk_index"])] == [
        (0, "alpha one", 1),
        (1, "alpha two", 2),
    ]
    assert all("vector" not in r and {"chunk_id", "page", "heading", "place", "place_label"} <= set(r) for r in got)


def test_chunks_another_process_wrote_are_replaced_not_duplicated(tmp_path):
    first = DocumentStore(tmp_path / "index", "test-embedder", DIM)
    first.replace_chunks("a", rows("a", ["alpha one"]))
    first.upsert_document(record("a"))
    # Another process (the CLI beside the window) indexes "b", then a new version of "a".
    other = DocumentStore(tmp_path / "index", "test-embedder", DIM)
    other.replace_chunks("b", rows("b", ["beta one"]))
    other.upsert_document(record("b"))
    # The first store knew "b" had no chunks; now a new version of "b" must replace, not append.
    first.replace_chunks("b", rows("b", ["beta two"], version="v2"))
    first.replace_chunks("a", rows("a", ["alpha two"], version="v2"))
    assert sorted(r["chunk_id"] for r in first.chunks.to_arrow().to_pylist()) == ["a-v2-0", "b-v2-0"]


def test_a_removed_document_indexed_again_is_appended_once(store):
    store.replace_chunks("a", rows("a", ["alpha"]))
    store.upsert_document(record("a"))
    store.remove_document("a")
    store.replace_chunks("a", rows("a", ["alpha"]))
    store.replace_chunks("a", rows("a", ["alpha"]))
    assert store.chunk_count("a") == 1
