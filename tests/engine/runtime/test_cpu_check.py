"""The check whether llama.cpp's extra CPU weight buffers (AMX) crash this machine, run in a worker process."""

from __future__ import annotations

import json
import sys

import pytest

from engine.runtime import cpu_check


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """No remembered verdict, no override, the cache in a temp folder."""
    monkeypatch.setattr(cpu_check, "_verdict", None)
    monkeypatch.delenv(cpu_check.ENV, raising=False)
    monkeypatch.setattr("platformdirs.user_cache_dir", lambda *a, **k: str(tmp_path))
    yield tmp_path


def test_the_real_worker_gives_a_definite_answer():
    # The bundled model loaded with the extra buffers evaluates a prompt in a worker process: either it
    # does (usable) or the worker is killed by a signal (not usable); never an undecided run.
    ok, why = cpu_check.check_in_worker()
    assert why is not None
    if not ok:
        assert cpu_check.amx_in_build()  # only AMX's kernels are known to crash
        assert "crashed" in why and "signal" in why


def test_a_worker_killed_by_a_signal_means_no_extra_buffers():
    crash = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"]
    ok, why = cpu_check.check_in_worker(crash)
    assert not ok
    assert why == "llama.cpp crashed evaluating a prompt with them (signal 11)"


def test_a_worker_that_cannot_decide_leaves_nothing_remembered(fresh, monkeypatch):
    stuck = [sys.executable, "-c", "import time; time.sleep(30)"]
    assert cpu_check.check_in_worker(stuck, timeout_s=0.5) == (False, None)
    failing = [sys.executable, "-c", "raise SystemExit(2)"]
    assert cpu_check.check_in_worker(failing) == (False, None)
    monkeypatch.setattr(cpu_check, "amx_in_build", lambda: True)
    monkeypatch.setattr(cpu_check, "check_in_worker", lambda: (False, None))
    assert cpu_check.extra_buffers_ok() is False  # safe while unknown
    assert not list(fresh.rglob("*.json"))


def test_the_verdict_is_remembered_per_build_and_machine(fresh, monkeypatch):
    runs = []

    def check():
        runs.append(1)
        return False, "llama.cpp crashed evaluating a prompt with them (signal 11)"

    monkeypatch.setattr(cpu_check, "amx_in_build", lambda: True)
    monkeypatch.setattr(cpu_check, "check_in_worker", check)
    assert cpu_check.extra_buffers_ok() is False
    assert cpu_check.extra_buffers_ok() is False
    (saved,) = fresh.rglob("*.json")
    assert json.loads(saved.read_text())["extra_buffers_ok"] is False
    monkeypatch.setattr(cpu_check, "_verdict", None)  # a new process reads the file instead of checking
    assert cpu_check.extra_buffers_ok() is False
    assert len(runs) == 1


def test_builds_without_amx_and_the_override_need_no_check(fresh, monkeypatch):
    monkeypatch.setattr(cpu_check, "check_in_worker", lambda: pytest.fail("no check expected"))
    monkeypatch.setattr(cpu_check, "amx_in_build", lambda: False)
    assert cpu_check.extra_buffers_ok() is True
    monkeypatch.setattr(cpu_check, "_verdict", None)
    monkeypatch.setattr(cpu_check, "amx_in_build", lambda: True)
    monkeypatch.setenv(cpu_check.ENV, "0")
    assert cpu_check.extra_buffers_ok() is False
