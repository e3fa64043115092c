"""Worker processes spoken to over pipes: length-prefixed pickles on stdin and stdout.

The parser and the embedder run in such workers. A worker is a plain
``python -m <module>`` subprocess: it never re-runs the parent's main script
(as multiprocessing's "spawn" does) and never inherits a parent full of
threads, Qt and torch (as "fork" would). It exits when its stdin closes, so it
cannot outlive the app. Heavy native libraries (torch above all) load there,
where holding the GIL for a while cannot freeze the window.
"""

from __future__ import annotations

import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
from typing import BinaryIO

_HEADER = struct.Struct("!Q")
EOF_MARK = object()  # what a WorkerProcess's reply queue yields when the worker is gone


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


def worker_streams() -> tuple[BinaryIO, BinaryIO]:
    """In a worker: (requests, replies). Text printed by libraries goes to stderr, not into replies."""
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr
    return requests, replies


def command_for(module: str, frozen_flag: str) -> list[str]:
    """How to start a worker: ``python -m module``, or the frozen app with a flag."""
    if getattr(sys, "frozen", False):
        return [sys.executable, frozen_flag]
    return [sys.executable, "-m", module]


class WorkerProcess:
    """A worker subprocess and a thread that turns its replies into queue items."""

    def __init__(self, command: list[str], *, nice: bool = False):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        if nice:
            env["LOCUS_WORKER_NICE"] = "5"
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                                        start_new_session=True)  # Ctrl-C in a terminal is the parent's
        self.replies: queue.Queue = queue.Queue()
        self._reader = threading.Thread(target=self._read_replies, name="locus-worker-reply", daemon=True)
        self._reader.start()

    def _read_replies(self) -> None:
        try:
            while True:
                self.replies.put(read_message(self.process.stdout))
        except (EOFError, OSError, pickle.UnpicklingError, ValueError):
            self.replies.put(EOF_MARK)

    def send(self, value) -> None:
        write_message(self.process.stdin, value)

    def exit_description(self, timeout: float = 5.0) -> str:
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return "did not exit"
        return f"signal {-code}" if code < 0 else f"exit code {code}"

    def stop(self, graceful: bool = True) -> None:
        if graceful and self.process.poll() is None:
            try:
                self.send(None)
                self.process.wait(1.0)
            except (BrokenPipeError, OSError, subprocess.TimeoutExpired):
                pass
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5.0)
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass


def lower_priority_if_asked() -> None:
    """In a worker: run nicer when the parent asked (parsers yield the CPU to the window and embedder)."""
    nice = os.environ.get("LOCUS_WORKER_NICE")
    if nice:
        try:
            os.nice(int(nice))
        except (AttributeError, OSError, ValueError):
            pass
