"""The indexing pipeline end to end: real files, worker processes, the real embedder and LanceDB."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import pytest

from engine.models.bundled import BUNDLED_EMBEDDER_NAME, bundled_embedder_path
from engine.rag.indexer import DocumentStatus, IndexFinished, IndexProgress
from engine.rag.library import DocumentLibrary
from engine.rag.loaders import load
from tests.conftest import PDF_ODDITIES

CORPUS = PDF_ODDITIES
REPO = Path(__file__).resolve().parents[3]


def library(tmp_path, **options) -> DocumentLibrary:
    return DocumentLibrary(
        tmp_path / "index",
        bundled_embedder_path(),
        BUNDLED_EMBEDDER_NAME,
        parse_timeout_s=options.pop("parse_timeout_s", 30),
        **options,
    )


@pytest.fixture()
def lib(tmp_path):
    library_ = library(tmp_path)
    yield library_
    library_.close()


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def statuses(lib) -> dict[str, tuple[str, str]]:
    return {Path(r.path).name: (r.status, r.reason) for r in lib.documents()}


def test_index_a_folder_then_only_what_changed(lib, tmp_path):
    docs = tmp_path / "docs"
    write(
        docs, "garden.md", "# Garden\n\nTomatoes need full sun and deep watering.\n\n## Pests\n\nAphids hate garlic.\n"
    )
    write(docs, "notes.txt", "The quarterly meeting moved to Thursday at nine.\n")
    write(docs, "code/util.py", "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n")
    write(docs, ".hidden/secret.txt", "never indexed")
    shutil.copy(CORPUS / "crazyones.pdf", docs / "crazyones.pdf")
    events = []
    result = lib.index([docs], on_event=events.append).wait(300)
    assert result.indexed == 4 and result.failed == 0 and not result.cancelled
    assert set(statuses(lib)) == {"garden.md", "notes.txt", "util.py", "crazyones.pdf"}
    assert all(s == ("done", "") for s in statuses(lib).values())
    seen = [e.status for e in events if isinstance(e, DocumentStatus) and e.path.endswith("notes.txt")]
    assert seen == ["queued", "parsing", "embedding", "done"]
    assert any(isinstance(e, IndexProgress) for e in events) and isinstance(events[-1], IndexFinished)

    hits = lib.store.text_search("garlic", 5)
    assert hits and hits[0].path.endswith("garden.md") and hits[0].heading == "Pests" and hits[0].line_start == 5
    pdf_hit = lib.store.text_search("misfits rebels troublemakers", 5)[0]
    assert pdf_hit.path.endswith("crazyones.pdf") and pdf_hit.page == 1

    again = lib.index([docs]).wait(300)
    assert again.indexed == 0 and again.unchanged == 4
    chunks_before = lib.store.chunk_count()

    time.sleep(0.01)
    write(docs, "notes.txt", "The quarterly meeting moved to Friday at ten.\n")
    os.remove(docs / "code" / "util.py")
    changed = lib.index([docs]).wait(300)
    assert (changed.indexed, changed.unchanged, changed.removed) == (1, 2, 1)
    assert lib.store.text_search("Thursday", 5) == [] and lib.store.text_search("Friday", 5)
    assert lib.store.chunk_count() < chunks_before  # util.py's chunks went, notes.txt's were replaced
    ids = [r["chunk_id"] for r in lib.store.chunks.to_arrow().to_pylist()]
    assert len(ids) == len(set(ids))


def test_every_corpus_pdf_ends_with_a_status_and_readable_ones_are_searchable(lib):
    """Every file of pdf-oddities: no crash, no hang; password-protected ones say so; every readable
    file can be found by a phrase from its own text."""
    result = lib.index([CORPUS]).wait(900)
    records = {Path(r.path).name: r for r in lib.documents()}
    pdfs = sorted(p.name for p in CORPUS.glob("*.pdf"))
    assert sorted(records) == sorted([*pdfs, "README.md"])  # LICENSE.pypdf is not a kind Locus reads
    assert result.indexed + result.failed == len(pdfs) + 1
    for name, record in records.items():
        assert record.status in ("done", "failed"), name
        if record.status == "failed":
            assert record.reason and record.reason != "failed" and record.message, name
    protected = [n for n, r in records.items() if r.reason == "password protected"]
    assert "r4-user-password.pdf" in protected and "libreoffice-writer-password.pdf" in protected
    assert records["r4-owner-password.pdf"].status == "done"  # opens with the empty user password
    for name, record in records.items():
        if record.status != "done":
            continue
        document = load(CORPUS / name)
        words = max((s.text for s in document.sections), key=len).split()
        phrase = " ".join(w for w in words if w.isalpha())[:60] or words[0]
        found = {Path(h.path).name for h in lib.store.text_search(phrase, 20)}
        assert name in found, f"{name}: no hit for {phrase!r}"


def test_cancel_stops_and_leaves_nothing_half_done(lib, tmp_path):
    docs = tmp_path / "many"
    for i in range(30):
        write(docs, f"doc{i:02}.txt", f"Document {i}. " + "Some sentence about things. " * 200)
    job = lib.index([docs])
    while lib.store.chunk_count() == 0:
        time.sleep(0.05)
    job.cancel()
    result = job.wait(120)
    assert result.cancelled
    done = [r for r in lib.documents() if r.status == "done"]
    assert 0 < len(done) < 30
    assert {r.status for r in lib.documents()} <= {"done", "cancelled"}
    for record in done:
        assert lib.store.chunk_count(record.doc_id) == record.n_chunks
    finished = lib.index([docs]).wait(300)
    assert finished.indexed == 30 - len(done) and finished.unchanged == len(done)


CHILD = textwrap.dedent("""
    import sys
    from engine.models.bundled import BUNDLED_EMBEDDER_NAME, bundled_embedder_path
    from engine.rag.library import DocumentLibrary
    from engine.rag.indexer import DocumentStatus
    lib = DocumentLibrary(sys.argv[1], bundled_embedder_path(), BUNDLED_EMBEDDER_NAME)
    done = []
    def on_event(e):
        if isinstance(e, DocumentStatus) and e.status == "done":
            done.append(e)
            if len(done) == 5:
                print("HALFWAY", flush=True)
    lib.index([sys.argv[2]], on_event=on_event).wait()
    print("FINISHED", flush=True)
""")


def test_sigkill_halfway_leaves_no_duplicate_or_half_document_and_resumes(tmp_path):
    docs = tmp_path / "folder"
    for i in range(20):
        write(docs, f"doc{i:02}.md", f"# Document {i}\n\n" + f"Paragraph about subject {i}. " * 150)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path / "index"), str(docs)], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        assert child.stdout.readline().strip() == "HALFWAY"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    lib = library(tmp_path)
    try:

        def check_consistent():
            ids = [r["chunk_id"] for r in lib.store.chunks.to_arrow().to_pylist()]
            assert len(ids) == len(set(ids)), "duplicate chunks"
            for record in lib.documents():
                count = lib.store.chunk_count(record.doc_id)
                if record.status == "done":
                    assert count == record.n_chunks, f"{record.path}: {count} != {record.n_chunks}"

        check_consistent()
        assert 5 <= len([r for r in lib.documents() if r.status == "done"]) < 20
        resumed = lib.resume()
        if resumed is not None:
            resumed.wait(300)
        result = lib.index([docs]).wait(300)
        assert not result.cancelled and result.failed == 0
        check_consistent()
        assert len(lib.documents()) == 20 and all(r.status == "done" for r in lib.documents())
    finally:
        lib.close()


def test_watched_folder_reindexes_on_change(tmp_path):
    lib = library(tmp_path, watch_interval_s=0.5)
    try:
        docs = tmp_path / "watched"
        write(docs, "a.txt", "Alpha centauri is a star system.")
        lib.index([docs]).wait(120)
        lib.watch(docs)
        write(docs, "b.txt", "Betelgeuse is a red supergiant.")
        deadline = time.time() + 60
        while time.time() < deadline and not lib.store.text_search("Betelgeuse", 5):
            time.sleep(0.2)
        assert lib.store.text_search("Betelgeuse", 5)
        assert lib.watched() == {str(docs.resolve()): "default"}
    finally:
        lib.close()


# Links (issue 16, item 8) ------------------------------------------------------------------


def test_links_out_of_the_folder_or_into_hidden_ones_are_not_followed_and_are_reported(lib, tmp_path):
    from tests.engine.rag.test_loaders import link_tree

    root = link_tree(tmp_path)
    events = []
    result = lib.index([root], on_event=events.append).wait(300)
    assert {Path(r.path).name: r.status for r in lib.documents()} == {"real.md": "done"}
    assert lib.store.text_search("auths registry", 5) == [] and lib.store.text_search("diary", 5) == []
    assert lib.store.text_search("private keys", 5) == [] and lib.store.text_search("API_KEY", 5) == []
    skipped = {
        Path(e.path).relative_to(root).as_posix(): e
        for e in events
        if isinstance(e, DocumentStatus) and e.status == "skipped"
    }
    assert {name: e.reason for name, e in skipped.items()} == {
        "cfg": "link leaves the folder",
        "config.json": "link leaves the folder",
        "diaries": "link leaves the folder",
        "private": "link into a hidden folder",
        "env.md": "link to a hidden file",
        "deps": "link into an excluded folder",
        "docs/up": "link loop",
        "spin": "link loop",
    }
    assert str(tmp_path / ".docker") in skipped["cfg"].message
    assert result.indexed == 1 and result.skipped == 8 and result.failed == 0


def test_the_watcher_follows_the_same_rule(tmp_path):
    events = []
    lib = library(tmp_path, watch_interval_s=0.3, on_event=events.append)
    try:
        write(tmp_path, ".ssh/notes.md", "Never index the ssh notes.")
        write(tmp_path, "elsewhere/plans.md", "Plans kept elsewhere.")
        docs = tmp_path / "watched"
        write(docs, "a.md", "Alpha centauri is a star system.")
        lib.index([docs]).wait(120)
        lib.watch(docs)
        os.symlink(tmp_path / ".ssh", docs / "ssh")
        os.symlink(tmp_path / "elsewhere" / "plans.md", docs / "plans.md")
        write(docs, "b.md", "Betelgeuse is a red supergiant.")  # a change the watcher re-indexes for
        deadline = time.time() + 120
        while time.time() < deadline and not lib.store.text_search("Betelgeuse", 5):
            time.sleep(0.2)
        assert lib.store.text_search("Betelgeuse", 5)
        lib.indexer.wait_idle(60)
        assert {Path(r.path).name for r in lib.documents()} == {"a.md", "b.md"}
        skipped = {
            Path(e.path).name: e.reason for e in events if isinstance(e, DocumentStatus) and e.status == "skipped"
        }
        assert skipped == {"ssh": "link leaves the folder", "plans.md": "link leaves the folder"}
    finally:
        lib.close()


# Memory (issue 16, item 10) ----------------------------------------------------------------


def docx_bomb(path: Path, xml_mb: int = 180) -> Path:
    """A .docx of a few hundred kB whose word/document.xml, under the 200 MB size limit, holds ~30 million
    empty paragraphs: parsed, a tree of about 2.7 GB."""
    unit = b"<w:p/>" * 100_000
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("word/document.xml", "w") as xml:
            xml.write(
                b'<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="http://schemas.openxmlformats.'
                b'org/wordprocessingml/2006/main"><w:body>'
            )
            for _ in range(xml_mb * 2**20 // len(unit)):
                xml.write(unit)
            xml.write(b"<w:p><w:r><w:t>Boom.</w:t></w:r></w:p></w:body></w:document>")
    return path


def test_a_docx_that_unpacks_to_gigabytes_fails_for_memory_and_the_rest_is_indexed(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    docx_bomb(docs / "bomb.docx")
    write(docs, "notes.md", "# Notes\n\nThe ferry leaves the pier at 08:15.")
    assert (docs / "bomb.docx").stat().st_size < 2**20
    lib = library(tmp_path, parse_timeout_s=600)  # memory, not time, must be what stops it
    try:
        result = lib.index([docs]).wait(900)
        records = {Path(r.path).name: r for r in lib.documents()}
    finally:
        lib.close()
    bomb = records["bomb.docx"]
    assert (bomb.status, bomb.reason) == ("failed", "needs too much memory"), (bomb.reason, bomb.message)
    assert "'bomb.docx' needed more than 2048 MB of memory" in bomb.message
    assert records["notes.md"].status == "done" and result.indexed == 1 and result.failed == 1
