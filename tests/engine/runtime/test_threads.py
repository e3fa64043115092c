"""libgomp's wait policy is settled before llama.cpp loads (engine/runtime/threads.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SHOW = (
    "import os, engine.runtime.native, llama_cpp; "
    "maps = open('/proc/self/maps').read(); "
    "print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'), 'libgomp' in maps)"
)


def _run(env_extra: dict[str, str]) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    env.update(env_extra)
    out = subprocess.run([sys.executable, "-c", SHOW], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_llama_cpp_loads_libgomp_with_a_short_spin_count():
    spin, policy, gomp_loaded = _run({})
    assert gomp_loaded == "True"  # the CPU backend is an OpenMP build: this is the knob that counts
    assert spin == "1000"
    # with a policy, libgomp keeps that count when it manages more threads than cores (else it drops to 100)
    assert policy == "active"


WORKER = (
    "import sys, engine.runtime.native, llama_cpp; from engine.rag.ipc import spawn; "
    'show = \'import os; print(os.environ.get("GOMP_SPINCOUNT"), os.environ.get("OMP_WAIT_POLICY"))\'; '
    "p = spawn([sys.executable, '-c', show]); print(p.communicate()[0].decode().strip())"
)


def test_worker_processes_keep_the_spin_count_but_not_the_wait_policy():
    """To another OpenMP runtime a worker's torch may use, 'active' means spinning without end."""
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    out = subprocess.run([sys.executable, "-c", WORKER], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1000", "None"]
    env["OMP_WAIT_POLICY"] = "active"  # the user's own choice is passed on
    out = subprocess.run([sys.executable, "-c", WORKER], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["None", "active"]


def test_a_wait_policy_the_user_chose_is_left_alone():
    assert _run({"OMP_WAIT_POLICY": "passive"})[:2] == ["None", "passive"]
    assert _run({"GOMP_SPINCOUNT": "5000"})[:2] == ["5000", "None"]
