"""Parse files in worker processes, one file at a time each, with a time limit per file.

A file that hangs its parser, or crashes it outright (a segfault in a native
library, an abort, running out of memory), costs only that worker: the
supervisor kills or buries it, reports "timed out" or "parser crashed" for that
file alone, and starts a fresh worker for the rest.

Workers are fresh interpreters (``python -m engine.rag.isolation``; the frozen
app runs itself with ``--parse-worker``) speaking length-prefixed pickles over
their stdin and stdout. This is multiprocessing's "spawn" without its one
drawback here: spawn re-runs the parent's main script in every child, which for
the GUI or a benchmark means importing Qt or torch again; and unlike "fork" the
child does not inherit a parent full of threads. Workers import only what
loading needs, run at a lower CPU priority so the window and the embedder stay
responsive, and exit when the parent goes away (stdin closes or the parent
process changes).
"""

from __future__ import annotations

import importlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from engine.rag.ipc import EOF_MARK, WorkerProcess, command_for, read_message, reply_safely, worker_streams
from engine.rag.loaders import CorruptDocument, DocumentError, LoadedDocument, ParserCrashed, ParseTimeout

log = logging.getLogger(__name__)

DEFAULT_LOADER = "engine.rag.loaders:load"


@dataclass(frozen=True)
class ParseOutcome:
    """What became of one file: a document or an error (neither only when cancelled mid-parse)."""

    path: str  # exactly as given to parse() / parse_many()
    document: LoadedDocument | None
    error: DocumentError | None
    seconds: float


def worker_command() -> list[str]:
    """How to start a worker: this module run as a script, or the frozen app with a flag."""
    return command_for("engine.rag.isolation", "--parse-worker")


def worker_main(loader_spec: str, max_bytes: int) -> None:
    """The worker process: read a path, answer ("ok", document) or ("error", DocumentError); repeat."""
    requests, replies = worker_streams()
    module, _, name = loader_spec.partition(":")
    loader = getattr(importlib.import_module(module), name)
    while True:
        try:
            path = read_message(requests)
        except (EOFError, OSError):
            return  # the parent closed our stdin or died
        if path is None:
            return
        label = Path(path).name
        try:
            reply = ("ok", loader(path, max_bytes=max_bytes))
        except DocumentError as exc:
            reply = ("error", exc)
        except MemoryError:
            reply = ("error", ParserCrashed(f"Reading '{label}' needed more memory than the parser could get.",
                                            detail="MemoryError"))
        except Exception as exc:  # noqa: BLE001 - any parser failure is this file's problem only
            reply = ("error", CorruptDocument(f"'{label}' could not be read.",
                                              detail=f"{type(exc).__name__}: {exc}"[:300]))
        unpicklable = lambda exc: ("error", CorruptDocument(  # noqa: E731
            f"'{label}' could not be read.", detail=repr(exc)[:300]))
        if not reply_safely(replies, reply, unpicklable):
            return


def _start_worker(loader_spec: str, max_bytes: int) -> WorkerProcess:
    return WorkerProcess([*worker_command(), loader_spec, str(max_bytes)], nice=5)


class _Stopped(Exception):
    """Internal: the pool was closed or the caller cancelled while a file was being parsed."""


class ParsePool:
    """Parses files in up to ``workers`` processes, each file within ``timeout_s`` seconds.

    ``loader`` is the "module:function" the workers call as ``fn(path, max_bytes=...)``; tests point
    it at loaders that hang or crash on purpose. Use as a context manager, or call close().
    """

    def __init__(self, workers: int = 1, timeout_s: float = 60.0, max_bytes: int = 200 * 2**20,
                 loader: str = DEFAULT_LOADER):
        self.workers = max(1, workers)
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self.loader = loader
        self._idle: list[WorkerProcess] = []
        self._all: set[WorkerProcess] = set()
        self._lock = threading.Lock()
        self._closed = False

    def __enter__(self) -> ParsePool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def worker_pids(self) -> list[int]:
        """Process ids of the workers alive now (for diagnostics and tests)."""
        with self._lock:
            return [w.process.pid for w in self._all]

    def _take(self) -> WorkerProcess:
        with self._lock:
            if self._closed:
                raise _Stopped
            if self._idle:
                return self._idle.pop()
            worker = _start_worker(self.loader, self.max_bytes)  # started lazily, reused until it fails
            self._all.add(worker)
            return worker

    def _give_back(self, worker: WorkerProcess) -> None:
        with self._lock:
            if not self._closed:
                self._idle.append(worker)
                return
            self._all.discard(worker)
        worker.stop()

    def _bury(self, worker: WorkerProcess) -> None:
        with self._lock:
            self._all.discard(worker)
        worker.stop(graceful=False)

    def parse(self, path: str | Path, cancel: threading.Event | None = None) -> ParseOutcome:
        """Parse one file in a worker; never raises for a bad file. Safe to call from several threads.

        If ``cancel`` is set or the pool is closed mid-way, the worker is stopped and the outcome
        has neither document nor error.
        """
        start = time.perf_counter()
        try:
            return self._parse(str(path), start, lambda: cancel is not None and cancel.is_set())
        except _Stopped:
            return ParseOutcome(str(path), None, None, time.perf_counter() - start)

    def _parse(self, path: str, start: float, cancelled: Callable[[], bool]) -> ParseOutcome:
        name = Path(path).name
        worker = self._take()
        try:
            worker.send(path)
        except (OSError, ValueError):  # an idle worker that died since its last file: use a fresh one
            self._bury(worker)
            worker = self._take()
            worker.send(path)
        deadline = time.perf_counter() + self.timeout_s  # start-up of a fresh worker counts too
        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                self._bury(worker)
                error = ParseTimeout(f"'{name}' took longer than {self.timeout_s:g} s to read and was given up.",
                                     hint="The file may be malformed, or very large; try it on its own.")
                return ParseOutcome(path, None, error, time.perf_counter() - start)
            if cancelled() or self._closed:
                self._bury(worker)
                raise _Stopped
            try:
                reply = worker.replies.get(timeout=min(remaining, 0.1))
            except queue.Empty:
                continue
            if reply is EOF_MARK:
                if self._closed:  # close() killed it: not the file's fault
                    raise _Stopped
                how = worker.exit_status()
                self._bury(worker)
                error = ParserCrashed(f"Reading '{name}' crashed the document parser; the file is probably "
                                      "malformed.", detail=f"the parser process ended with {how}")
                return ParseOutcome(path, None, error, time.perf_counter() - start)
            self._give_back(worker)
            kind, value = reply
            elapsed = time.perf_counter() - start
            if kind == "ok":
                return ParseOutcome(path, value, None, elapsed)
            return ParseOutcome(path, None, value, elapsed)

    def parse_many(self, paths: Iterable[str | Path], cancel: threading.Event | None = None,
                   on_start: Callable[[str], None] | None = None) -> Iterator[ParseOutcome]:
        """Outcomes as files finish, up to ``workers`` at a time; ``on_start(path)`` as each begins.

        Every path gets exactly one outcome, unless ``cancel`` is set (or the pool closed, or the
        caller stops iterating): then no new file starts, files being parsed are abandoned, those
        get no outcome, and the call returns within a fraction of a second.
        """
        pending = [str(p) for p in paths]
        pending.reverse()  # pop() from the end keeps the given order
        results: queue.Queue[ParseOutcome | None] = queue.Queue()
        lock = threading.Lock()
        abandoned = threading.Event()  # the caller stopped iterating

        def stopped() -> bool:
            return abandoned.is_set() or (cancel is not None and cancel.is_set())

        def run() -> None:
            try:
                while True:
                    with lock:
                        if not pending or stopped():
                            return
                        path = pending.pop()
                    if on_start is not None:
                        on_start(path)
                    results.put(self._parse(path, time.perf_counter(), stopped))
            except _Stopped:
                pass
            except Exception:  # noqa: BLE001 - e.g. a worker that cannot start; the caller sees missing outcomes
                log.exception("document parser thread failed")
            finally:
                results.put(None)

        threads = [threading.Thread(target=run, name="locus-parse", daemon=True)
                   for _ in range(min(self.workers, max(1, len(pending))))]
        for thread in threads:
            thread.start()
        running = len(threads)
        try:
            while running:
                outcome = results.get()
                if outcome is None:
                    running -= 1
                else:
                    yield outcome
        finally:
            abandoned.set()
            for thread in threads:
                thread.join()

    def close(self) -> None:
        """Stop every worker, killing any that is busy; safe from any thread, and more than once."""
        with self._lock:
            self._closed = True
            idle, busy = self._idle, [w for w in self._all if w not in self._idle]
            self._all, self._idle = set(), []
        for worker in busy:
            worker.stop(graceful=False)
        for worker in idle:
            worker.stop()


if __name__ == "__main__":
    import sys

    # Run the module proper rather than this __main__ copy, so pickled classes name engine.rag.*.
    from engine.rag.isolation import worker_main as _worker_main

    _worker_main(sys.argv[1], int(sys.argv[2]))
