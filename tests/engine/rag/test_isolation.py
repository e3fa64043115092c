"""Parsing in worker processes: a hanging or crashing file costs only itself."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from engine.rag import loaders
from engine.rag.isolation import ParsePool
from engine.rag.loaders import DocumentError, load
from tests.conftest import CORPUS as SHARED_CORPUS
from tests.conftest import REPO

CORPUS = SHARED_CORPUS / "pdf-oddities"
CRASHY = "tests.engine.rag.crashy_loader:crashy_load"


def good(folder: Path, name: str, text: str = "Some text worth indexing.") -> str:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def gone(pid: int) -> bool:
    """True once the process has exited and been reaped (a zombie still counts as present)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def wait_gone(pids, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if all(gone(pid) for pid in pids):
            return True
        time.sleep(0.05)
    return all(gone(pid) for pid in pids)


def test_hangs_and_crashes_cost_only_their_own_file(tmp_path):
    names = ["a.txt", "hang.txt", "segfault.txt", "exit.txt", "memory.txt", "boom.txt", "noisy.txt", "z.md"]
    paths = [good(tmp_path, name) for name in names]
    with ParsePool(workers=2, timeout_s=2.0, loader=CRASHY) as pool:
        assert pool.worker_pids() == []  # started lazily
        started = time.monotonic()
        outcomes = list(pool.parse_many(paths))
        assert time.monotonic() - started < 12
        assert sorted(o.path for o in outcomes) == sorted(paths)  # exactly one outcome each, path as given
        by_name = {Path(o.path).name: o for o in outcomes}
        hang = by_name["hang.txt"]
        assert hang.error.status == "timed out" and "'hang.txt'" in hang.error.message and "2 s" in hang.error.message
        assert 2.0 <= hang.seconds < 5
        assert by_name["segfault.txt"].error.status == "parser crashed"
        assert "signal 11 (SIGSEGV)" in by_name["segfault.txt"].error.detail
        assert "'segfault.txt'" in by_name["segfault.txt"].error.message
        exited = by_name["exit.txt"].error
        assert exited.status == "parser crashed" and "exit code 3" in exited.detail
        assert by_name["memory.txt"].error.status == "needs too much memory"
        assert by_name["boom.txt"].error.status == "damaged" and "RuntimeError" in by_name["boom.txt"].error.detail
        for name in ("a.txt", "noisy.txt", "z.md"):
            assert by_name[name].error is None and by_name[name].document.sections[0].text.startswith("Some text")
        again = pool.parse(paths[0])  # the pool still works after all that
        assert again.document is not None and again.path == paths[0]
        pids = pool.worker_pids()
    assert pids and wait_gone(pids, within=0.1)  # close() killed and reaped every worker


def test_errors_survive_pickling_with_their_words():
    errors = [
        cls(f"'x.pdf' {cls.__name__}", hint="a hint", detail="a detail")
        for cls in (
            loaders.PasswordProtected,
            loaders.EmptyDocument,
            loaders.WrongFormat,
            loaders.CorruptDocument,
            loaders.UnsupportedFile,
            loaders.UnreadableFile,
            loaders.TooLarge,
            loaders.ParseTimeout,
            loaders.ParserCrashed,
        )
    ]
    errors.append(loaders.WrongFormat("'x.pdf' is not a PDF", kind="pdf"))
    for error in errors:
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and isinstance(copy, DocumentError)
        assert (copy.message, copy.hint, copy.detail, copy.status, str(copy)) == (
            error.message,
            error.hint,
            error.detail,
            error.status,
            str(error),
        )
    assert errors[-1].status == "not a pdf file"


def test_errors_keep_their_words_across_the_process_boundary(tmp_path):
    with ParsePool(timeout_s=20) as pool:
        protected = pool.parse(CORPUS / "r4-user-password.pdf")
        fake = pool.parse(good(tmp_path, "fake.pdf", "<html>not a pdf</html>"))
        assert len(pool.worker_pids()) == 1  # one worker, reused
    assert protected.error.status == "password protected" and protected.document is None
    assert protected.error.message == (
        "'r4-user-password.pdf' is password protected; Locus cannot read it without the password."
    )
    assert protected.error.hint and "unprotected copy" in protected.error.hint
    assert isinstance(fake.error, loaders.WrongFormat) and fake.error.status == "not a pdf file"


def test_workers_are_lean_and_run_at_lower_priority(tmp_path):
    with ParsePool(loader=CRASHY, timeout_s=20) as pool:
        outcome = pool.parse(good(tmp_path, "modules.txt"))
        (pid,) = pool.worker_pids()
        assert outcome.document.sections[0].text == f"pid={pid} heavy="  # no torch, Qt, llama_cpp, lancedb
        if hasattr(os, "getpriority"):
            assert os.getpriority(os.PRIO_PROCESS, pid) >= os.getpriority(os.PRIO_PROCESS, 0) + 5


def test_cancel_stops_promptly_and_kills_busy_workers(tmp_path):
    paths = [good(tmp_path, f"hang{i}.txt") for i in range(4)]
    cancel = threading.Event()
    with ParsePool(workers=2, timeout_s=60, loader=CRASHY) as pool:
        threading.Timer(0.5, cancel.set).start()
        started = time.monotonic()
        outcomes = list(pool.parse_many(paths, cancel=cancel))
        assert time.monotonic() - started < 3
        assert outcomes == [] and pool.worker_pids() == []
        assert pool.parse(good(tmp_path, "after.txt")).document is not None  # fresh workers on demand


def test_close_from_another_thread_does_not_hang_or_blame_the_file(tmp_path):
    paths = [good(tmp_path, "a.txt"), good(tmp_path, "hang1.txt"), good(tmp_path, "hang2.txt"), good(tmp_path, "b.txt")]
    pool = ParsePool(workers=2, timeout_s=60, loader=CRASHY)
    outcomes, pids = [], []

    def consume() -> None:
        for outcome in pool.parse_many(paths):
            outcomes.append(outcome)
            pids.extend(pool.worker_pids())

    thread = threading.Thread(target=consume)
    thread.start()
    time.sleep(1.0)
    started = time.monotonic()
    pool.close()
    thread.join(5)
    assert not thread.is_alive() and time.monotonic() - started < 5
    assert all(o.error is None or o.error.status not in ("parser crashed", "timed out") for o in outcomes)
    assert wait_gone(set(pids), within=1)
    pool.close()  # twice is fine


def test_abandoning_parse_many_stops_the_rest(tmp_path):
    paths = [good(tmp_path, "first.txt")] + [good(tmp_path, f"hang{i}.txt") for i in range(3)]
    with ParsePool(workers=1, timeout_s=60, loader=CRASHY) as pool:
        started = time.monotonic()
        for outcome in pool.parse_many(paths):
            assert Path(outcome.path).name == "first.txt"
            break
        assert time.monotonic() - started < 3 and pool.worker_pids() == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses SIGKILL and /proc semantics")
def test_workers_exit_when_the_parent_dies(tmp_path):
    hang = good(tmp_path, "hang.txt")
    script = textwrap.dedent(f"""
        import sys, threading, time
        sys.path.insert(0, {str(REPO)!r})
        from engine.rag.isolation import ParsePool
        pool = ParsePool(loader={CRASHY!r})
        threading.Thread(target=pool.parse, args=({hang!r},), daemon=True).start()
        while not pool.worker_pids():
            time.sleep(0.05)
        print(pool.worker_pids()[0], flush=True)
        time.sleep(60)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(parent.stdout.readline())
        assert not gone(worker)
    finally:
        parent.kill()
        parent.wait()
    # The orphan is reparented (not our child), so "gone" means it no longer exists at all.
    deadline = time.monotonic() + 5
    while Path(f"/proc/{worker}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{worker}").exists() or "Z" in Path(f"/proc/{worker}/stat").read_text().split()[2]


def test_whole_corpus_gives_the_same_statuses_as_loading_directly():
    paths = sorted(CORPUS.glob("*.pdf"))
    started = time.monotonic()
    with ParsePool(workers=2, timeout_s=30) as pool:
        isolated = {Path(o.path).name: (o.error.status if o.error else "ok") for o in pool.parse_many(paths)}
    assert time.monotonic() - started < 30
    direct = {}
    for path in paths:
        try:
            load(path)
            direct[path.name] = "ok"
        except DocumentError as exc:
            direct[path.name] = exc.status
    assert isolated == direct and len(isolated) == len(paths)


# The working directory (issue 16, item 5) ------------------------------------------------


def hostile_folder(folder: Path, marker: Path) -> Path:
    """A folder holding modules named like what the workers import, each leaving a mark when imported."""
    plant = f"open({str(marker)!r}, 'a').write(__name__ + ' ran from the working directory\\n')\n"
    for name in ("engine/__init__.py", "numpy.py", "pypdf.py", "torch.py", "json.py", "runpy.py"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(plant, encoding="utf-8")
    return folder


def test_parse_workers_never_import_from_the_working_directory(tmp_path, monkeypatch):
    marker = tmp_path / "pwned.txt"
    hostile = hostile_folder(tmp_path / "hostile", marker)
    notes = good(hostile, "notes.txt", "Worth reading.")
    monkeypatch.chdir(hostile)
    with ParsePool(timeout_s=30) as pool:
        outcome = pool.parse("notes.txt")  # relative to the user's folder, as `locus index .` starts from
        (pid,) = pool.worker_pids()
        worker_cwd = os.readlink(f"/proc/{pid}/cwd") if sys.platform.startswith("linux") else None
    assert not marker.exists(), marker.read_text()
    assert outcome.error is None and outcome.document.sections[0].text == "Worth reading."
    assert outcome.path == "notes.txt" and outcome.document.path == notes
    assert worker_cwd is None or Path(worker_cwd) != hostile


def test_the_embedding_worker_never_imports_from_the_working_directory(tmp_path, monkeypatch):
    from engine.models.bundled import BUNDLED_EMBEDDER_NAME, bundled_embedder_path
    from engine.rag.embed import Embedder

    marker = tmp_path / "pwned.txt"
    monkeypatch.chdir(hostile_folder(tmp_path / "hostile", marker))
    embedder = Embedder(bundled_embedder_path(), BUNDLED_EMBEDDER_NAME)
    try:
        vectors = embedder.embed(["The ferry leaves at noon."])
        pid = embedder.worker_pid
        if sys.platform.startswith("linux"):  # the kernel's out-of-memory killer takes it before the window
            assert int(Path(f"/proc/{pid}/oom_score_adj").read_text()) == 500
    finally:
        embedder.close()
    assert not marker.exists(), marker.read_text()
    assert vectors.shape == (1, embedder.info.dim)


# Memory (issue 16, item 10) ----------------------------------------------------------------


def test_running_out_of_memory_fails_only_that_file_and_the_next_gets_a_fresh_worker(tmp_path):
    paths = [
        good(tmp_path, "a.txt"),
        good(tmp_path, "memory.txt"),
        good(tmp_path, "b.txt"),
        good(tmp_path, "oomkilled.txt"),
        good(tmp_path, "c.txt"),
    ]
    with ParsePool(workers=1, timeout_s=20, loader=CRASHY, memory_limit_mb=700) as pool:
        pids = []
        outcomes = {}
        for path in paths:
            outcomes[Path(path).name] = pool.parse(path)
            pids.append(pool.worker_pids())
    memory, killed = outcomes["memory.txt"].error, outcomes["oomkilled.txt"].error
    assert memory.status == killed.status == "needs too much memory"
    assert (
        memory.message == "Reading 'memory.txt' needed more than 700 MB of memory, the most one file may use, "
        "so it was given up."
    )
    assert "MemoryError under a 700 MB limit (address space)" in memory.detail
    assert (
        killed.message == "Reading 'oomkilled.txt' was stopped by the system, most likely because the "
        "computer ran out of memory; it was given up."
    )
    assert "signal 9 (SIGKILL)" in killed.detail
    assert all(outcomes[n].document is not None for n in ("a.txt", "b.txt", "c.txt"))
    # A worker that ran out of memory is not used again: the next file gets a fresh one.
    assert pids[1] == [] and pids[2] and pids[2] != pids[0]
    assert pids[3] == [] and pids[4] and pids[4] != pids[2]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the limits from /proc")
def test_parse_workers_run_under_an_address_space_limit_and_go_first_when_memory_runs_out(tmp_path):
    with ParsePool(timeout_s=20, memory_limit_mb=900) as pool:
        assert pool.parse(good(tmp_path, "a.txt")).document is not None
        (pid,) = pool.worker_pids()
        limits = Path(f"/proc/{pid}/limits").read_text()
        oom_score_adj = int(Path(f"/proc/{pid}/oom_score_adj").read_text())
    line = next(ln for ln in limits.splitlines() if ln.startswith("Max address space"))
    assert line.split()[3:5] == [str(900 * 2**20)] * 2  # soft and hard: the worker cannot lift it again
    assert oom_score_adj == 1000


def test_a_flood_of_progress_is_given_up_once_past_the_ocr_page_limit(tmp_path):
    from engine.rag.ocr import MAX_OCR_PAGES

    # Progress every few milliseconds and never an answer: each message used to restart the time limit.
    path = tmp_path / f"flood-{MAX_OCR_PAGES * 50}.txt"
    path.write_text("x", encoding="utf-8")
    with ParsePool(timeout_s=1.5, loader="tests.engine.rag.ocr_progress_loader:slow_pages", ocr=True) as pool:
        outcome = pool.parse(path)
    assert outcome.error is not None and outcome.error.status == "timed out"
    assert f"more than the {MAX_OCR_PAGES} pages" in outcome.error.message
