"""Parsing in worker processes: a hanging or crashing file costs only itself."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from engine.rag.isolation import ParsePool
from engine.rag.loaders import load

CORPUS = Path(__file__).resolve().parents[4] / "shared" / "corpus" / "pdf-oddities"
CRASHY = "tests.engine.rag.crashy_loader:crashy_load"


def good(folder: Path, name: str, text: str = "Some text worth indexing.") -> str:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_hangs_and_crashes_cost_only_their_own_file(tmp_path):
    paths = [good(tmp_path, "a.txt"), good(tmp_path, "hang.txt"), good(tmp_path, "segfault.txt"),
             good(tmp_path, "exit.txt"), good(tmp_path, "boom.txt"), good(tmp_path, "noisy.txt"),
             good(tmp_path, "z.txt")]
    with ParsePool(workers=2, timeout_s=2.0, loader=CRASHY) as pool:
        started = time.monotonic()
        outcomes = {Path(o.path).name: o for o in pool.parse_many(paths)}
        assert time.monotonic() - started < 20
        pids = [w.process.pid for w in pool._all]
        assert sorted(outcomes) == sorted(Path(p).name for p in paths)
        assert outcomes["hang.txt"].error.status == "timed out" and "2 s" in outcomes["hang.txt"].error.message
        assert outcomes["segfault.txt"].error.status == "parser crashed"
        assert "signal 11" in outcomes["segfault.txt"].error.detail
        assert outcomes["exit.txt"].error.status == "parser crashed" and "exit code 3" in outcomes["exit.txt"].error.detail
        assert outcomes["boom.txt"].error.status == "damaged" and "RuntimeError" in outcomes["boom.txt"].error.detail
        for name in ("a.txt", "noisy.txt", "z.txt"):
            assert outcomes[name].document is not None and outcomes[name].document.sections[0].text
        again = pool.parse(paths[0])  # the pool still works after all that
        assert again.document is not None
    assert pids and not any(alive(pid) for pid in pids)


def test_errors_keep_their_words_across_the_process_boundary(tmp_path):
    with ParsePool(timeout_s=20) as pool:
        outcome = pool.parse(CORPUS / "r4-user-password.pdf")
    assert outcome.error.status == "password protected"
    assert outcome.error.message == "'r4-user-password.pdf' is password protected; Locus cannot read it without " \
                                    "the password."
    assert outcome.error.hint and "unprotected copy" in outcome.error.hint


def test_cancel_stops_promptly(tmp_path):
    paths = [good(tmp_path, f"hang{i}.txt") for i in range(4)]
    cancel = threading.Event()
    with ParsePool(workers=2, timeout_s=60, loader=CRASHY) as pool:
        threading.Timer(0.5, cancel.set).start()
        started = time.monotonic()
        outcomes = list(pool.parse_many(paths, cancel=cancel))
        assert time.monotonic() - started < 10
    assert outcomes == []


def test_whole_corpus_gives_the_same_statuses_as_loading_directly():
    paths = sorted(CORPUS.glob("*.pdf"))
    with ParsePool(workers=2, timeout_s=60) as pool:
        isolated = {Path(o.path).name: (o.error.status if o.error else "ok") for o in pool.parse_many(paths)}
    direct = {}
    for path in paths:
        try:
            load(path)
            direct[path.name] = "ok"
        except Exception as exc:  # noqa: BLE001
            direct[path.name] = exc.status
    assert isolated == direct
