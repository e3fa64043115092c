"""Worker processes spoken to over pipes: length-prefixed pickles on stdin and stdout.

The parser and the embedder run in such workers. A worker is a fresh Python
interpreter running one module as ``__main__`` (the frozen app runs itself with
a flag): unlike multiprocessing's "spawn" it never re-runs the parent's main
script, and unlike "fork" it does not inherit a parent full of threads, Qt and
torch. Heavy native libraries (torch above all) load there, where holding the
interpreter lock for a while cannot freeze the window. A worker exits when its
stdin closes or its parent dies, even in the middle of a request.

A worker imports only from where its parent does. ``python -m module`` would put
the working directory first on sys.path, so ``locus index .`` inside a folder
holding ``engine/__init__.py`` or ``numpy.py`` would run that folder's code.
Workers therefore run in isolated mode (``-I``: no working directory or script
folder on the path, no PYTHON* variables, no user site-packages), are handed
the parent's own absolute sys.path, and start in the interpreter's folder rather
than the user's. The frozen app is isolated by its bootloader (PyInstaller 6
starts Python from an isolated config whose only paths are inside the bundle).
"""

from __future__ import annotations

import json
import os
import pickle
import queue
import signal
import struct
import subprocess
import sys
import threading
import time
from typing import IO, BinaryIO

_HEADER = struct.Struct("!Q")
_PARENT_ENV = "LOCUS_WORKER_PARENT_PID"
_NICE_ENV = "LOCUS_WORKER_NICE"
_OOM_ENV = "LOCUS_WORKER_OOM_SCORE_ADJ"
_PATH_ENV = "LOCUS_WORKER_SYS_PATH"
EOF_MARK = object()  # what a WorkerProcess's reply queue yields once the worker is gone


def write_message(stream: IO[bytes], value) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)))
    stream.write(data)  # not header + data: that would copy a document's worth of bytes once more
    stream.flush()


def read_message(stream: IO[bytes]):
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError
    (size,) = _HEADER.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    return pickle.loads(data)


# What `python -I -c` runs: the parent's path (from WorkerProcess), then the module as __main__,
# as `-m` would, but without the working directory in front.
_BOOTSTRAP = f"""\
import json, os, runpy, sys
parent = json.loads(os.environ.pop({_PATH_ENV!r}, "[]"))
sys.path[:] = parent + [p for p in sys.path if p not in parent]
runpy.run_module(sys.argv.pop(1), run_name="__main__", alter_sys=True)
"""


def command_for(module: str, frozen_flag: str) -> list[str]:
    """How to start a worker: an isolated interpreter running ``module``, or the frozen app with a flag."""
    if getattr(sys, "frozen", False):
        return [sys.executable, frozen_flag]
    return [sys.executable, "-I", "-c", _BOOTSTRAP, module]


def import_path() -> list[str]:
    """The parent's sys.path as a worker gets it: absolute entries only ('' means "the working directory")."""
    return [p for p in sys.path if p and os.path.isabs(p)]


def worker_folder() -> str | None:
    """Where workers start: the interpreter's (or frozen app's) own folder, never the user's.

    Besides sys.path, a working directory is searched for DLLs loaded by bare name on Windows, and
    is where a library may leave files; the app's folder is as trusted as the interpreter itself.
    """
    folder = os.path.dirname(os.path.abspath(sys.executable))
    return folder if os.path.isdir(folder) else None


# In the worker ---------------------------------------------------------------------------


def _exit_when_orphaned(parent: int) -> None:
    """A worker busy on a request never sees its stdin close, so it also watches its parent."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def worker_streams() -> tuple[BinaryIO, BinaryIO]:
    """Set up a worker: (requests, replies), a parent watchdog, and the priority the parent asked for.

    Replies get a private copy of stdout; file descriptor 1 then points at stderr, so a
    library (or native code) that prints cannot corrupt the stream of pickles.
    """
    requests = sys.stdin.buffer
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    # The parent's pid comes from the parent: had it died while we started, getppid() would
    # already name our adoptive parent.
    parent = int(os.environ.pop(_PARENT_ENV, "") or os.getppid())
    threading.Thread(target=_exit_when_orphaned, args=(parent,), name="parent-watch", daemon=True).start()
    nice = os.environ.pop(_NICE_ENV, "")
    if nice:
        try:
            os.nice(int(nice))
        except (AttributeError, OSError, ValueError):  # no nice() on Windows: best effort
            pass
    oom = os.environ.pop(_OOM_ENV, "")
    if oom:
        _prefer_for_oom_killer(int(oom))
    return requests, replies


def _prefer_for_oom_killer(adjustment: int) -> None:
    """Linux: make this worker the kernel's first choice if memory runs out, rather than the window
    that holds the model (any process may raise its own score; only lowering it needs privileges)."""
    try:
        with open("/proc/self/oom_score_adj", "w") as fh:
            fh.write(str(adjustment))
    except OSError:  # not Linux, or no /proc: best effort
        pass


def reply_safely(replies: IO[bytes], reply, fallback) -> bool:
    """Send a reply, or ``fallback(exc)`` if the reply cannot be pickled (or its pickle does not fit in
    memory); False once the parent is gone."""
    try:
        write_message(replies, reply)
    except (pickle.PicklingError, TypeError, AttributeError, RecursionError, MemoryError) as exc:
        try:
            write_message(replies, fallback(exc))
        except OSError:
            return False
    except OSError:
        return False
    return True


# In the parent ---------------------------------------------------------------------------


def spawn(command: list[str], *, environment: dict[str, str] | None = None, stderr=None) -> subprocess.Popen:
    """Start a worker process (see command_for) with its stdin and stdout piped to this one.

    It imports what this process imports (the source tree, a test's helper module) and nothing from the
    folder the user happens to be in: it gets the parent's import path and starts in the interpreter's
    own folder; it is in a session of its own (the terminal's Ctrl-C is for the parent). ``environment``
    adds variables; ``stderr`` is passed to Popen (inherited by default).
    """
    from engine.runtime.threads import worker_environment  # (imported here: a worker need not settle OpenMP)

    env = dict(os.environ)
    worker_environment(env)
    env[_PATH_ENV] = json.dumps(import_path())
    env[_PARENT_ENV] = str(os.getpid())
    env.update(environment or {})
    return subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        env=env,
        cwd=worker_folder(),
        start_new_session=True,
    )


class WorkerProcess:
    """A worker subprocess and a thread that turns its replies into queue items."""

    def __init__(self, command: list[str], *, nice: int = 0, oom_score_adj: int = 0):
        settings = {}
        if nice:
            settings[_NICE_ENV] = str(nice)
        if oom_score_adj:
            settings[_OOM_ENV] = str(oom_score_adj)
        self.process = spawn(command, environment=settings)
        # Both pipes exist: they were asked for (PIPE).
        self._requests: IO[bytes] = self.process.stdin  # type: ignore[assignment]
        self._answers: IO[bytes] = self.process.stdout  # type: ignore[assignment]
        self.replies: queue.Queue = queue.Queue()
        self._reader = threading.Thread(target=self._read_replies, name="locus-worker-reply", daemon=True)
        self._reader.start()

    def _read_replies(self) -> None:
        try:
            while True:
                self.replies.put(read_message(self._answers))
        except Exception:  # noqa: BLE001 - EOF, a closed pipe or a garbled reply: the worker is gone for us
            self.replies.put(EOF_MARK)

    def send(self, value) -> None:
        """Send a request (None asks the worker to exit); raises OSError or ValueError if it is gone."""
        write_message(self._requests, value)

    def exit_status(self, timeout: float = 5.0) -> str:
        """'exit code 3' or 'signal 11 (SIGSEGV)', once the process has ended."""
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return "no exit code (still running)"
        if code >= 0:
            return f"exit code {code}"
        try:
            return f"signal {-code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"signal {-code}"

    def stop(self, graceful: bool = True) -> None:
        """End the process (asking first when ``graceful``, else terminate, then kill) and reap it."""
        if graceful and self.process.poll() is None:
            try:
                self.send(None)
                self.process.wait(1.0)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                pass
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(0.5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for stream in (self._requests, self._answers):
            try:
                stream.close()
            except (OSError, ValueError):
                pass
