"""Worker processes spoken to over pipes: length-prefixed pickles on stdin and stdout.

The parser and the embedder run in such workers. A worker is a fresh
``python -m <module>`` interpreter (the frozen app runs itself with a flag):
unlike multiprocessing's "spawn" it never re-runs the parent's main script, and
unlike "fork" it does not inherit a parent full of threads, Qt and torch. Heavy
native libraries (torch above all) load there, where holding the interpreter
lock for a while cannot freeze the window. A worker exits when its stdin closes
or its parent dies, even in the middle of a request.
"""

from __future__ import annotations

import os
import pickle
import queue
import signal
import struct
import subprocess
import sys
import threading
import time
from typing import BinaryIO

_HEADER = struct.Struct("!Q")
_PARENT_ENV = "LOCUS_WORKER_PARENT_PID"
_NICE_ENV = "LOCUS_WORKER_NICE"
EOF_MARK = object()  # what a WorkerProcess's reply queue yields once the worker is gone


def write_message(stream: BinaryIO, value) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def read_message(stream: BinaryIO):
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError
    (size,) = _HEADER.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    return pickle.loads(data)


def command_for(module: str, frozen_flag: str) -> list[str]:
    """How to start a worker: ``python -m module``, or the frozen app with a flag."""
    if getattr(sys, "frozen", False):
        return [sys.executable, frozen_flag]
    return [sys.executable, "-m", module]


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
    return requests, replies


def reply_safely(replies: BinaryIO, reply, fallback) -> bool:
    """Send a reply, or ``fallback(exc)`` if the reply cannot be pickled; False once the parent is gone."""
    try:
        write_message(replies, reply)
    except (pickle.PicklingError, TypeError, AttributeError, RecursionError) as exc:
        try:
            write_message(replies, fallback(exc))
        except OSError:
            return False
    except OSError:
        return False
    return True


# In the parent ---------------------------------------------------------------------------


class WorkerProcess:
    """A worker subprocess and a thread that turns its replies into queue items."""

    def __init__(self, command: list[str], *, nice: int = 0):
        # The worker must import what we import (the source tree, a test's helper module),
        # whatever its working directory.
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        env[_PARENT_ENV] = str(os.getpid())
        if nice:
            env[_NICE_ENV] = str(nice)
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                                        start_new_session=True)  # the terminal's Ctrl-C is for the parent
        self.replies: queue.Queue = queue.Queue()
        self._reader = threading.Thread(target=self._read_replies, name="locus-worker-reply", daemon=True)
        self._reader.start()

    def _read_replies(self) -> None:
        try:
            while True:
                self.replies.put(read_message(self.process.stdout))
        except Exception:  # noqa: BLE001 - EOF, a closed pipe or a garbled reply: the worker is gone for us
            self.replies.put(EOF_MARK)

    def send(self, value) -> None:
        """Send a request (None asks the worker to exit); raises OSError or ValueError if it is gone."""
        write_message(self.process.stdin, value)

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
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except (OSError, ValueError):
                pass
