"""Parse files in worker processes, one file at a time each, with a time limit per file.

A file that hangs its parser, or crashes it outright (a segfault in a native
library, an abort, running out of memory), costs only that worker: the
supervisor kills or buries it, reports "timed out" or "parser crashed" for that
file alone, and starts a fresh worker for the rest.

Workers are plain subprocesses (``python -m engine.rag.isolation``) speaking
length-prefixed pickles over their stdin and stdout. Unlike multiprocessing's
"spawn" they never re-run the parent's main script, and unlike "fork" they do
not copy a parent full of threads, Qt and torch. They import only what loading
needs, run at a lower CPU priority so the window and the embedder stay
responsive, and exit when the parent goes away (their stdin closes).
"""

from __future__ import annotations

import importlib
import logging
import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from engine.rag.loaders import CorruptDocument, DocumentError, LoadedDocument, ParserCrashed, ParseTimeout

log = logging.getLogger(__name__)

DEFAULT_LOADER = "engine.rag.loaders:load"
_HEADER = struct.Struct("!Q")


@dataclass(frozen=True)
class ParseOutcome:
    path: str
    document: LoadedDocument | None
    error: DocumentError | None
    seconds: float


def _write(stream: BinaryIO, value) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _read(stream: BinaryIO):
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError
    (size,) = _HEADER.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    return pickle.loads(data)


def worker_command() -> list[str]:
    """How to start a worker: this module run as a script, or the frozen app with a flag."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "--parse-worker"]
    return [sys.executable, "-m", "engine.rag.isolation"]


def worker_main(loader_spec: str, max_bytes: int) -> None:
    """The worker process: read a path, answer ("ok", document) or ("error", DocumentError); repeat."""
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a library that prints must not corrupt the replies
    try:
        os.nice(5)
    except (AttributeError, OSError):
        pass
    module, _, name = loader_spec.partition(":")
    loader = getattr(importlib.import_module(module), name)
    while True:
        try:
            path = _read(requests)
        except (EOFError, OSError):
            return  # the parent closed our stdin or died
        if path is None:
            return
        try:
            reply = ("ok", loader(path, max_bytes=max_bytes))
        except DocumentError as exc:
            reply = ("error", exc)
        except MemoryError:
            reply = ("error", ParserCrashed(f"'{Path(path).name}' needed more memory than the parser may use."))
        except Exception as exc:  # noqa: BLE001 - any parser failure is this file's problem only
            reply = ("error", CorruptDocument(f"'{Path(path).name}' could not be read.",
                                              detail=f"{type(exc).__name__}: {exc}"))
        try:
            _write(replies, reply)
        except (BrokenPipeError, OSError):
            return


class _Worker:
    """One worker process and a thread that turns its replies into queue items."""

    def __init__(self, loader_spec: str, max_bytes: int):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        self.process = subprocess.Popen(
            [*worker_command(), loader_spec, str(max_bytes)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env=env, start_new_session=True)
        self.replies: queue.Queue = queue.Queue()
        self._reader = threading.Thread(target=self._read_replies, name="locus-parse-reply", daemon=True)
        self._reader.start()

    def _read_replies(self) -> None:
        try:
            while True:
                self.replies.put(_read(self.process.stdout))
        except (EOFError, OSError, pickle.UnpicklingError, ValueError):
            self.replies.put(EOFError)

    def send(self, path: str | None) -> None:
        _write(self.process.stdin, path)

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


class ParsePool:
    """Parses files in up to ``workers`` processes, each file within ``timeout_s`` seconds."""

    def __init__(self, workers: int = 1, timeout_s: float = 60.0, max_bytes: int = 200 * 2**20,
                 loader: str = DEFAULT_LOADER):
        self.workers = max(1, workers)
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self.loader = loader
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._lock = threading.Lock()
        self._closed = False

    def __enter__(self) -> "ParsePool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _take(self) -> _Worker:
        with self._lock:
            if self._closed:
                raise RuntimeError("the parse pool is closed")
            if self._idle:
                return self._idle.pop()
            worker = _Worker(self.loader, self.max_bytes)
            self._all.add(worker)
            return worker

    def _give_back(self, worker: _Worker) -> None:
        with self._lock:
            if not self._closed:
                self._idle.append(worker)
                return
            self._all.discard(worker)
        worker.stop()

    def _bury(self, worker: _Worker) -> None:
        with self._lock:
            self._all.discard(worker)
        worker.stop(graceful=False)

    def parse(self, path: str | Path, cancel: threading.Event | None = None) -> ParseOutcome:
        """Parse one file in a worker; never raises for a bad file. Safe to call from several threads.

        When ``cancel`` is set mid-way the worker is stopped and the outcome has neither document nor error.
        """
        path = str(path)
        name = Path(path).name
        start = time.perf_counter()
        worker = self._take()
        try:
            worker.send(path)
        except (BrokenPipeError, OSError):  # an idle worker that died: use a fresh one
            self._bury(worker)
            worker = self._take()
            worker.send(path)
        deadline = start + self.timeout_s
        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                self._bury(worker)
                error = ParseTimeout(f"'{name}' took longer than {self.timeout_s:g} s to read and was given up.",
                                     hint="The file may be malformed, or very large; try it on its own.")
                return ParseOutcome(path, None, error, time.perf_counter() - start)
            if cancel is not None and cancel.is_set():
                self._bury(worker)
                return ParseOutcome(path, None, None, time.perf_counter() - start)
            try:
                reply = worker.replies.get(timeout=min(remaining, 0.2))
            except queue.Empty:
                continue
            if reply is EOFError:
                code = worker.process.wait(5.0)
                self._bury(worker)
                how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                error = ParserCrashed(f"Reading '{name}' crashed the document parser; the file is probably "
                                      "malformed.", detail=f"parser process ended with {how}")
                return ParseOutcome(path, None, error, time.perf_counter() - start)
            self._give_back(worker)
            kind, value = reply
            elapsed = time.perf_counter() - start
            return ParseOutcome(path, value, None, elapsed) if kind == "ok" else \
                ParseOutcome(path, None, value, elapsed)

    def parse_many(self, paths: Iterable[str | Path], cancel: threading.Event | None = None,
                   on_start=None) -> Iterator[ParseOutcome]:
        """Outcomes as files finish (up to ``workers`` at a time); ``on_start(path)`` as each begins.

        Every path gets exactly one outcome unless ``cancel`` is set, after which the files not yet
        finished get none and the call returns promptly.
        """
        pending = [str(p) for p in paths]
        results: queue.Queue[ParseOutcome | None] = queue.Queue()
        lock = threading.Lock()

        def run() -> None:
            try:
                while True:
                    with lock:
                        if not pending or (cancel is not None and cancel.is_set()):
                            break
                        path = pending.pop(0)
                    if on_start is not None:
                        on_start(path)
                    outcome = self.parse(path, cancel)
                    if outcome.document is None and outcome.error is None:  # cancelled while parsing
                        break
                    results.put(outcome)
            except RuntimeError:  # the pool was closed under us
                log.debug("parse pool closed while parsing")
            finally:
                results.put(None)

        threads = [threading.Thread(target=run, name="locus-parse", daemon=True)
                   for _ in range(min(self.workers, max(1, len(pending))))]
        for thread in threads:
            thread.start()
        running = len(threads)
        while running:
            outcome = results.get()
            if outcome is None:
                running -= 1
            else:
                yield outcome
        for thread in threads:
            thread.join()

    def close(self) -> None:
        """Stop every worker (killing any that is busy)."""
        with self._lock:
            self._closed = True
            idle, busy = self._idle, [w for w in self._all if w not in self._idle]
            self._all, self._idle = set(), []
        for worker in idle:
            worker.stop()
        for worker in busy:
            worker.stop(graceful=False)


if __name__ == "__main__":
    worker_main(sys.argv[1], int(sys.argv[2]))
