"""Parse files in worker processes, one file at a time each, with a time and a memory limit per file.

A file that hangs its parser, crashes it outright (a segfault in a native
library, an abort) or needs more memory than a parser may have costs only that
worker: the supervisor kills or buries it, reports "timed out", "parser crashed"
or "needs too much memory" for that file alone, and starts a fresh worker for
the rest.

Workers are fresh interpreters running this module (isolated from the user's
working directory, see ipc.py; the frozen app runs itself with
``--parse-worker``) speaking length-prefixed pickles over
their stdin and stdout. This is multiprocessing's "spawn" without its one
drawback here: spawn re-runs the parent's main script in every child, which for
the GUI or a benchmark means importing Qt or torch again; and unlike "fork" the
child does not inherit a parent full of threads. Workers import only what
loading needs, run at a lower CPU priority so the window and the embedder stay
responsive, and exit when the parent goes away (stdin closes or the parent
process changes). Each lives under a memory ceiling (memory_limit.py), and
should the machine run out of memory anyway, the kernel is told to kill a
parser before anything else.

While OCR reads a file, each page it reads restarts the file's time limit, but
only for the first MAX_OCR_PAGES pages it reports (the most OCR reads of one
file), and never past OCR_FILE_CAP_S (or ten time limits) for the whole file: a
flood of progress messages cannot keep a file alive for ever.
"""

from __future__ import annotations

import importlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from engine.rag import ocr as ocr_module  # light: the OCR engine itself loads only when a page needs it
from engine.rag.ipc import (
    EOF_MARK,
    WorkerProcess,
    command_for,
    read_message,
    reply_safely,
    worker_streams,
    write_message,
)
from engine.rag.loaders import (
    CorruptDocument,
    DocumentError,
    LoadedDocument,
    ParserCrashed,
    ParseTimeout,
    TooMuchMemory,
)
from engine.rag.memory_limit import limit_memory

log = logging.getLogger(__name__)

DEFAULT_LOADER = "engine.rag.loaders:load"
# The most memory (address space) one parser process may use. Measured (Linux, Python 3.11): a
# worker with the loaders imported holds about 90 MB of it (150 MB at its start-up peak); the
# largest PDFs of the test corpus peak at about 150 MB; a 175 MB file near the 200 MB size limit
# peaks at 0.93 GB as text, 1.07 GB as code and 1.48 GB as HTML (its bytes, its text, the sections
# and the pickled reply). 2 GB covers a legitimate file of any kind at the size limit; a .docx of
# a few hundred kB whose XML unpacks to a tree of gigabytes fails here instead.
DEFAULT_MEMORY_LIMIT_MB = 2048
# More for workers that may OCR (engine/rag/ocr.py): onnxruntime, OpenCV and the three models take
# about 0.75 GB of address space once loaded, and reading A4 pages rendered at 200 dpi took a worker's
# address space to 1.94 GB at its peak (its peak RSS: 0.8 GB; Linux, Python 3.11, 4 OCR threads), at
# the old ceiling already. Only workers of a pool with OCR on get the extra; the others keep 2 GB.
OCR_MEMORY_MB = 1536
OCR_FILE_CAP_S = 1800  # the most one file may take in all, however steadily OCR reports pages (or 10x the limit)
OOM_SCORE_ADJ = 1000  # Linux: the out-of-memory killer's first choice, far ahead of the window


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


def too_much_memory(name: str, limit_mb: int, detail: str, *, killed: bool = False) -> TooMuchMemory:
    """The error for a file whose reading outgrew the parser's memory limit (``killed``: or the memory the
    system had left, when its out-of-memory killer stopped the parser first)."""
    message = (
        f"Reading '{name}' was stopped by the system, most likely because the computer ran out of memory; "
        "it was given up."
        if killed
        else f"Reading '{name}' needed more than {limit_mb} MB of memory, the most one file may use, so it was "
        "given up."
    )
    return TooMuchMemory(
        message,
        detail=detail,
        hint="The file is far larger inside than on disk (a decompression bomb, or an enormous "
        "document); split it, or save it as plain text and index that.",
    )


def worker_main(loader_spec: str, max_bytes: int, memory_limit_mb: int = 0, ocr: bool | None = None) -> None:
    """The worker process: read a path, answer ("ok", document) or ("error", DocumentError); repeat.

    While OCR reads a file it also sends ("progress", None) after each page. ``ocr`` None: the loader is
    called without it (a loader that knows nothing of OCR)."""
    requests, replies = worker_streams()
    module, _, name = loader_spec.partition(":")
    loader = getattr(importlib.import_module(module), name)
    options: dict[str, object] = {"max_bytes": max_bytes}
    if ocr is not None:
        from engine.rag import ocr as ocr_pages  # light: the OCR engine itself loads on the first page

        options["ocr"] = ocr
        ocr_pages.set_progress(lambda: write_message(replies, ("progress", None)))
    how = limit_memory(memory_limit_mb * 2**20)  # imports done, no file read yet
    limit_detail = f"MemoryError under a {memory_limit_mb} MB limit ({how or 'not enforced here'})"
    while True:
        try:
            path = read_message(requests)
        except (EOFError, OSError):
            return  # the parent closed our stdin or died
        if path is None:
            return
        label = Path(path).name
        out_of_memory = False
        try:
            reply = ("ok", loader(path, **options))
        except DocumentError as exc:
            reply = ("error", exc)
        except MemoryError:
            # Answered below, once this block has let go of the traceback and with it the
            # parser's frames, which hold whatever filled the memory.
            out_of_memory = True
        except Exception as exc:  # noqa: BLE001 - any parser failure is this file's problem only
            reply = (
                "error",
                CorruptDocument(f"'{label}' could not be read.", detail=f"{type(exc).__name__}: {exc}"[:300]),
            )
        if out_of_memory:
            reply = ("error", too_much_memory(label, memory_limit_mb, limit_detail))

        def unsendable(exc: BaseException, label: str = label):
            if isinstance(exc, MemoryError):  # a document under the limit whose pickled copy is not
                return "error", too_much_memory(label, memory_limit_mb, limit_detail + ", sending the text")
            return "error", CorruptDocument(f"'{label}' could not be read.", detail=repr(exc)[:300])

        if not reply_safely(replies, reply, unsendable):
            return


def run_worker(args: list[str]) -> None:
    """worker_main from a worker's command line (after the module or the frozen app's flag): loader,
    max bytes, memory limit in MB, and OCR as "on", "off" or "" (not asked)."""
    flag = args[3] if len(args) > 3 else ""
    worker_main(args[0], int(args[1]), int(args[2]) if len(args) > 2 else 0, None if not flag else flag == "on")


def _start_worker(loader_spec: str, max_bytes: int, memory_limit_mb: int, ocr: bool | None) -> WorkerProcess:
    flag = "" if ocr is None else ("on" if ocr else "off")
    return WorkerProcess(
        [*worker_command(), loader_spec, str(max_bytes), str(memory_limit_mb), flag],
        nice=5,
        oom_score_adj=OOM_SCORE_ADJ,
    )


class _Stopped(Exception):
    """Internal: the pool was closed or the caller cancelled while a file was being parsed."""


class ParsePool:
    """Parses files in up to ``workers`` processes, each file within ``timeout_s`` seconds and
    ``memory_limit_mb`` of memory.

    ``loader`` is the "module:function" the workers call as ``fn(path, max_bytes=...)`` (and ``ocr=``
    unless ``ocr`` is None); tests point it at loaders that hang or crash on purpose. ``ocr``: read
    scanned pages and images by OCR (True), skip them as OcrOff (False), or leave the loader's default
    (None). With OCR on, workers get OCR_MEMORY_MB more memory, and the time limit applies to each page
    OCR reads rather than to the whole file (every page read restarts it), so a long scan that keeps
    moving is never cut off while a page that hangs still is. Use as a context manager, or call close().
    """

    def __init__(
        self,
        workers: int = 1,
        timeout_s: float = 60.0,
        max_bytes: int = 200 * 2**20,
        loader: str = DEFAULT_LOADER,
        memory_limit_mb: int = DEFAULT_MEMORY_LIMIT_MB,
        ocr: bool | None = None,
    ):
        self.workers = max(1, workers)
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self.loader = loader
        self.ocr = ocr
        self.memory_limit_mb = memory_limit_mb + (OCR_MEMORY_MB if ocr and memory_limit_mb > 0 else 0)
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
            # Started lazily, reused until it fails.
            worker = _start_worker(self.loader, self.max_bytes, self.memory_limit_mb, self.ocr)
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
        absolute = os.path.abspath(path)  # workers run in a folder of their own
        worker = self._take()
        try:
            worker.send(absolute)
        except (OSError, ValueError):  # an idle worker that died since its last file: use a fresh one
            self._bury(worker)
            worker = self._take()
            worker.send(absolute)
        began = time.perf_counter()
        deadline = began + self.timeout_s  # start-up of a fresh worker counts too
        # OCR's progress restarts the limit, but only for pages within its per-file limit, and never past a
        # cap on the whole file: a flood of progress messages must not keep a file alive for ever.
        cap = began + max(self.timeout_s * 10, OCR_FILE_CAP_S)
        pages = 0  # pages OCR has read of this file so far
        while True:
            remaining = min(deadline, cap) - time.perf_counter()
            if remaining <= 0:
                self._bury(worker)
                error: DocumentError = ParseTimeout(
                    _timeout_message(name, self.timeout_s, pages, capped=time.perf_counter() >= cap),
                    hint="The file may be malformed, or very large; try it on its own.",
                )
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
                if "SIGKILL" in how:  # not ours (we stop reading first): the kernel's out-of-memory killer
                    error = too_much_memory(
                        name, self.memory_limit_mb, f"the parser process ended with {how}", killed=True
                    )
                else:
                    error = ParserCrashed(
                        f"Reading '{name}' crashed the document parser; the file is probably malformed.",
                        detail=f"the parser process ended with {how}",
                    )
                return ParseOutcome(path, None, error, time.perf_counter() - start)
            kind, value = reply
            if kind == "progress":  # OCR read a page: the file is moving, its time starts again
                pages += 1
                if pages <= ocr_module.MAX_OCR_PAGES:
                    deadline = time.perf_counter() + self.timeout_s
                continue
            if isinstance(value, TooMuchMemory):
                self._bury(worker)  # its heap is as large as the limit now; the next file gets a fresh one
            else:
                self._give_back(worker)
            elapsed = time.perf_counter() - start
            if kind == "ok":
                return ParseOutcome(path, value, None, elapsed)
            return ParseOutcome(path, None, value, elapsed)

    def parse_many(
        self,
        paths: Iterable[str | Path],
        cancel: threading.Event | None = None,
        on_start: Callable[[str], None] | None = None,
    ) -> Iterator[ParseOutcome]:
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
            except Exception:
                log.exception("document parser thread failed")
            finally:
                results.put(None)

        threads = [
            threading.Thread(target=run, name="locus-parse", daemon=True)
            for _ in range(min(self.workers, max(1, len(pending))))
        ]
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


def _timeout_message(name: str, timeout_s: float, pages: int, *, capped: bool) -> str:
    """Why a file was given up: silent too long, past OCR's page limit, too long in all, or stuck on a page."""
    if not pages:
        return f"'{name}' took longer than {timeout_s:g} s to read and was given up."
    if pages > ocr_module.MAX_OCR_PAGES:
        return (
            f"'{name}' was given up: it reported {pages} pages read by OCR, more than the "
            f"{ocr_module.MAX_OCR_PAGES} pages OCR reads of one file, and did not finish."
        )
    if capped:
        return (
            f"'{name}' was given up after OCR had read {pages} of its pages: reading it took longer than "
            f"{max(timeout_s * 10, OCR_FILE_CAP_S) / 60:g} minutes in all."
        )
    return (
        f"'{name}' was given up after OCR had read {pages} of its pages: the next one took longer than {timeout_s:g} s."
    )


if __name__ == "__main__":
    import sys

    # Run the module proper rather than this __main__ copy, so pickled classes name engine.rag.*.
    from engine.rag.isolation import run_worker as _run_worker

    _run_worker(sys.argv[1:])
