"""The memory ceiling a parse worker puts on itself (engine/rag/memory_limit.py)."""

from __future__ import annotations

import ctypes
import subprocess
import sys
import textwrap

from engine.rag.memory_limit import job_limit_structure
from tests.conftest import REPO


def run_child(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_allocations_past_the_limit_fail_with_memory_error_and_a_lower_user_limit_is_kept():
    out = run_child("""
        import resource
        from engine.rag.memory_limit import limit_memory
        assert limit_memory(600 * 2**20) == "address space"
        try:
            bytearray(700 * 2**20)
            print("allocated")
        except MemoryError:
            print("MemoryError", resource.getrlimit(resource.RLIMIT_AS) == (600 * 2**20,) * 2)
        limit_memory(2**40)  # asking for more than is set never raises the ceiling
        print(resource.getrlimit(resource.RLIMIT_AS)[0] == 600 * 2**20)
    """)
    assert out.split() == ["MemoryError", "True", "True"]


def test_the_windows_job_limit_structure_has_the_windows_layout():
    # JOBOBJECT_EXTENDED_LIMIT_INFORMATION is 144 bytes on 64-bit Windows and 112 on 32-bit.
    assert ctypes.sizeof(job_limit_structure()) == {8: 144, 4: 112}[ctypes.sizeof(ctypes.c_void_p)]
    offsets = {name: getattr(job_limit_structure(), name).offset for name in ("IoInfo", "ProcessMemoryLimit")}
    assert offsets == (
        {"IoInfo": 64, "ProcessMemoryLimit": 112}
        if ctypes.sizeof(ctypes.c_void_p) == 8
        else {"IoInfo": 48, "ProcessMemoryLimit": 96}
    )
