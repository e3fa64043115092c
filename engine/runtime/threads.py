"""How llama.cpp's CPU threads wait, and how many there are by default.

llama-cpp-python's llama.cpp is built with OpenMP (libggml-cpu links libgomp), so its worker
threads wait at barriers and between decodes the way libgomp does, not as ggml's own threadpool
``poll`` setting says (that pool is not used in an OpenMP build, and llama-cpp-python does not
bind ``llama_attach_threadpool``). libgomp's default spins about 300,000 times before it
sleeps: milliseconds, longer than the Python work between two tokens. So while the engine
samples, hands on the token and fills the next batch, a worker burns a core, and the app's
own threads (the event consumer, the window) and every other process wait for it; on a busy
machine a barrier partner that has been descheduled makes the spinner burn whole time slices.
Measured on 2 shared cores (bench/decode_overhead.py --micro and docs/benchmarks.md, issue 20):
the bundled model with 2 threads took 412 ms a token with libgomp's default and 48 ms with a
spin count of 100, against 32 ms with 1 thread.

The count also decides how a worker waits at the barriers between the operations of one token's
graph (hundreds a token, microseconds each), and too short a spin puts it to sleep at every one.
How much that costs depends on the machine: 25% on one 2-core machine, 2.8x on another (a VM with
AMX, where waking a sleeping worker is slow: llama-bench tg 36 t/s with 100 against 95-116 with
1000 or more). A sweep there (engine and llama-bench, bundled model, 2 threads; docs/benchmarks.md)
put the knee at 1000: idle, 88-100 t/s (300: 54, 500: 75, 2000: 92); beside one busy process,
34 t/s against 41 with 100, 25 with 3000, 15 with 10000 and 6 with libgomp's default. So
``settle_openmp`` sets ``GOMP_SPINCOUNT=1000`` (long enough to spin through a barrier, not
through the Python between two tokens) unless the user chose a wait policy. A user whose machine
does nothing else can set ``GOMP_SPINCOUNT`` or ``OMP_WAIT_POLICY`` and is left alone.

On Linux it also sets ``OMP_WAIT_POLICY=active`` (for this process only: worker processes do not
inherit it, see ``worker_environment``), which with a spin count given changes one thing: libgomp
keeps spinning that count when it manages more threads than there are cores. Without a policy it
then drops to 100 (libgomp's env.c), and every thread that has ever started a parallel region
keeps its own team: a second thread that decodes in the process (a second model, a test's
generator beside a runtime) is enough, even idle. On the AMX machine the bundled model then ran
at 31 t/s instead of 73 (bench/decode_overhead.py --device, two runtimes; docs/benchmarks.md).

libgomp reads it once, when llama.cpp's library is loaded, so this runs from
``engine/runtime/__init__.py`` before any module imports ``llama_cpp``.
"""

from __future__ import annotations

import os
import sys

SPIN_COUNT = "1000"
_FOR_THIS_PROCESS: dict[str, str] = {}  # what settle_openmp set that worker processes must not inherit


def settle_openmp() -> bool:
    """Ask libgomp for short spins before it is loaded; False when the user set a wait policy or
    llama.cpp is already loaded (then nothing changes)."""
    if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ or "llama_cpp" in sys.modules:
        return False
    os.environ["GOMP_SPINCOUNT"] = SPIN_COUNT
    if sys.platform.startswith("linux"):  # where llama-cpp-python's OpenMP is libgomp
        os.environ["OMP_WAIT_POLICY"] = "active"  # with a spin count set: that count with more threads than cores
        _FOR_THIS_PROCESS["OMP_WAIT_POLICY"] = "active"
    return True


def worker_environment(env: dict[str, str]) -> None:
    """Take out of a worker process's environment what settle_openmp set for this process's libgomp alone: to
    other OpenMP runtimes a worker's torch may use (LLVM's, Intel's), ``OMP_WAIT_POLICY=active`` means spinning
    without end between parallel regions. (``GOMP_SPINCOUNT`` stays: a worker that loads llama.cpp is settled.)"""
    for name, value in _FOR_THIS_PROCESS.items():
        if env.get(name) == value:
            del env[name]


def default_threads() -> int:
    """One llama.cpp thread per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
