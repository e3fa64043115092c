"""Pausing and resuming indexing: real files, the real parser workers, embedder and LanceDB."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from engine.rag.indexer import DocumentStatus, IndexFinished, IndexProgress
from tests.engine.rag.test_indexer import library, statuses, write


@pytest.fixture()
def lib(tmp_path):
    library_ = library(tmp_path)
    yield library_
    library_.close()


def notes(folder: Path, count: int) -> list[Path]:
    return [
        write(folder, f"note-{i:02d}.txt", f"Note {i}: the heron number {i} fishes at dawn by the reeds.\n" * 40)
        for i in range(count)
    ]


def settle(seconds: float = 1.5) -> None:
    """Give a paused indexer time in which it could wrongly go on."""
    time.sleep(seconds)


def test_a_job_queued_while_paused_waits_then_finishes_on_resume(lib, tmp_path):
    notes(tmp_path / "docs", 3)
    lib.pause_indexing()
    assert lib.paused
    events = []
    job = lib.index([tmp_path / "docs"], "birds", on_event=events.append)
    settle()
    assert not job.finished.is_set()
    assert lib.documents() == []  # not even planned while paused
    assert [e for e in events if isinstance(e, IndexProgress)] and all(
        e.paused for e in events if isinstance(e, IndexProgress)
    )

    lib.resume_indexing()
    result = job.wait(300)
    assert (result.indexed, result.failed, result.cancelled) == (3, 0, False)
    assert set(statuses(lib).values()) == {("done", "")}
    assert not lib.paused
    progress = [e for e in events if isinstance(e, IndexProgress)]
    assert progress[0].paused and not progress[-1].paused and isinstance(events[-1], IndexFinished)
    assert lib.store.text_search("heron", 10)


def test_pausing_mid_job_stops_between_files_and_loses_nothing(lib, tmp_path):
    files = notes(tmp_path / "docs", 12)
    first_done = threading.Event()
    events = []

    def on_event(event):
        events.append(event)
        if isinstance(event, DocumentStatus) and event.status == "done" and not first_done.is_set():
            lib.pause_indexing()  # on the indexer's own thread, as soon as one document is in
            first_done.set()

    job = lib.index([tmp_path / "docs"], on_event=on_event)
    assert first_done.wait(300)
    settle()
    done_while_paused = sum(s == ("done", "") for s in statuses(lib).values())
    settle()
    assert sum(s == ("done", "") for s in statuses(lib).values()) == done_while_paused < len(files)
    assert not job.finished.is_set()
    pending = {name: status for name, (status, _) in statuses(lib).items() if status != "done"}
    assert pending and set(pending.values()) <= {"queued"}  # waiting, recorded to be resumed after a crash
    assert any(isinstance(e, IndexProgress) and e.paused for e in events)

    lib.resume_indexing()
    result = job.wait(300)
    assert (result.indexed, result.failed, result.cancelled) == (len(files), 0, False)
    assert set(statuses(lib).values()) == {("done", "")}
    assert len({hit.path for hit in lib.store.text_search("heron fishes", 50)}) == len(files)
    resumed = [e for e in events if isinstance(e, IndexProgress)]
    assert not resumed[-1].paused


def test_cancel_and_close_while_paused_do_not_hang(tmp_path):
    notes(tmp_path / "docs", 4)
    lib = library(tmp_path)
    try:
        lib.pause_indexing()
        job = lib.index([tmp_path / "docs"])
        settle(0.5)
        lib.cancel()
        result = job.wait(60)
        assert job.finished.is_set() and result.cancelled and result.indexed == 0
        assert set(s for s, _ in statuses(lib).values()) == {"cancelled"}

        queued = lib.index([tmp_path / "docs"])  # still paused: waits until the library closes
        settle(0.5)
    finally:
        lib.close()
    assert queued.finished.wait(60) and queued.result.cancelled
