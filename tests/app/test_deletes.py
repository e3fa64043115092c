"""A delete removes everything derived from what was deleted, down to the bytes on disk: the real engine
(bundled model, LanceDB, embedding worker, conversation states spilled to files) from build_services."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from app import settings as settings_mod
from app.paths import resolve_paths
from app.services import build_services
from engine.trace.store import TraceFilter

pytestmark = pytest.mark.slow

QUESTION_MARK = "zorbleflux"  # only ever in a question
DOC_MARK = "quillowisp"  # only ever in a document
DOCS = {
    "ledger.md": f"# The harbour ledger\n\nThe harbour ledger is kept by {DOC_MARK} Agnes Trelawny, who records "
    "every boat that enters Porthleven and the tide it came in on.\n",
    "bakery.txt": "Pellow's Bakery on Harbour Street opens at six in the morning. Its rye loaf uses a starter "
    "that is forty years old.\n",
}


def holding(folder: Path, marker: str) -> list[str]:
    """The files under ``folder`` whose raw bytes contain ``marker``."""
    return sorted(
        str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and marker.encode() in p.read_bytes()
    )


def wait_for(condition, what: str, timeout_s: float = 120.0):
    deadline = time.monotonic() + timeout_s
    while not (found := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)
    return found


@pytest.fixture()
def services(locus_home, model_path, tmp_path):
    # A small context with no RAM for idle conversations: the runtime copies a finished conversation's
    # state to a spill file while idle (the context could not hold another like it).
    settings = (
        settings_mod.Settings()
        .with_value("model.path", model_path)
        .with_value("model.context_size", 256)
        .with_value("model.parallel_requests", 1)
        .with_value("model.conversation_cache_mb", 0)
        .with_value("model.conversation_cache_disk_mb", 64)
        .with_value("sampling.temperature", 0.0)
        .with_value("sampling.max_tokens", 12)
    )
    settings_mod.save(settings, locus_home / "config.toml")
    services = build_services(resolve_paths())
    services.load_model().result(timeout=120)
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text, encoding="utf-8")
    result = services.open_library().index([docs]).wait(300)
    assert result.indexed == 2
    yield services
    services.close()


def test_deleting_a_conversation_leaves_none_of_it_on_disk(services, locus_home):
    paths = services.paths
    answer = services.assistant.ask(f"What does the {QUESTION_MARK} ledger say about the harbour?", collections=[])
    assert answer.wait(120).complete
    spilled = wait_for(lambda: list(paths.kv_cache_dir.rglob("*.kv")), "the conversation's state to be spilled")
    services.tracing.flush()
    title = services.history.conversation(answer.started.conversation_id).title
    assert {"locus.sqlite3", "traces.sqlite3"} <= {
        Path(p).name.split("-")[0] for p in holding(locus_home, QUESTION_MARK)
    }
    assert services.traces.list_traces(TraceFilter(text=QUESTION_MARK))

    deleted = services.assistant.delete_conversation(answer.started.conversation_id)

    assert deleted.describe() == f"Deleted conversation \u201c{title}\u201d and 1 trace."
    assert deleted.messages == 2 and deleted.cached_states >= 1
    assert holding(locus_home, QUESTION_MARK) == []  # no database, log, index or state file holds it
    assert not any(p.exists() for p in spilled) and not list(paths.kv_cache_dir.rglob("*.kv"))
    # The engine goes on: the next question is answered and traced as usual.
    again = services.assistant.ask("Who keeps the harbour ledger?", collections=[])
    assert again.wait(120).complete
    services.tracing.flush()
    assert services.traces.list_traces(TraceFilter(task="doc_qa"))[0].trace_id == again.started.trace_id


def test_removing_a_document_deletes_the_traces_that_quote_it(services, locus_home):
    library = services.library
    answer = services.assistant.ask("Who keeps the harbour ledger of Porthleven?", collections=[])
    assert answer.wait(120).complete
    assert any(DOC_MARK in p.text for p in answer.retrieval.passages)
    services.tracing.flush()
    assert any(name.startswith("traces.sqlite3") for name in holding(locus_home, DOC_MARK))
    (index_trace,) = services.traces.list_traces(TraceFilter(task="index"))
    ledger = next(r for r in library.documents() if r.path.endswith("ledger.md"))

    library.remove([ledger.doc_id]).wait(60)

    assert library.traces_removed([ledger.doc_id]) == 1
    # Nothing of it anywhere: not in traces, nor in the index's data files, deletion files or full-text index.
    assert holding(locus_home, DOC_MARK) == []
    assert answer.started.trace_id not in {t.trace_id for t in services.traces.list_traces()}
    # The indexing run keeps its other file; the conversation itself is the user's and stays.
    files = [s for s in services.traces.trace(index_trace.trace_id) if s.name == "index_file"]
    assert [Path(s.attributes["locus.document.path"]).name for s in files] == ["bakery.txt"]
    assert len(services.history.messages(answer.started.conversation_id)) == 2
    # The index rewritten without it still answers, by vector and by word.
    found = library.retrieve("When does the bakery open and what is in its rye loaf?", None, lambda t: len(t) // 3, 400)
    assert [Path(p.path).name for p in found.passages] == ["bakery.txt"]
    assert library.store.text_search("starter", 5)[0].path.endswith("bakery.txt")
