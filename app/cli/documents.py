"""`locus index` and `locus docs`: the document library from a terminal."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from app.cli import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE

if TYPE_CHECKING:
    from engine.rag.indexer import DocumentStatus, IndexFinished


def add_parsers(sub) -> None:
    """Add the `index` and `docs` commands to the `locus` parser's subparsers."""
    index_p = sub.add_parser("index", help="add files and folders to the document index")
    index_p.add_argument("paths", nargs="+", metavar="PATH")
    index_p.add_argument("--collection", default="default", help="collection to add them to (default: default)")
    index_p.add_argument("--watch", action="store_true", help="keep watching these folders for changes")
    index_p.set_defaults(run=index)

    docs_p = sub.add_parser("docs", help="list or remove indexed documents")
    docs_sub = docs_p.add_subparsers(dest="docs_command", metavar="ACTION", required=True)
    list_p = docs_sub.add_parser("list", help="list indexed documents and their status")
    list_p.add_argument("--collection")
    remove_p = docs_sub.add_parser("remove", help="remove documents from the index (files are kept)")
    remove_p.add_argument("targets", nargs="+", metavar="PATH|ID")
    docs_sub.add_parser("rebuild", help="index every document again (after changing the embedding model)")
    docs_p.set_defaults(run=docs)


class _ProgressLine:
    """One status line on stderr, redrawn in place on a terminal and printed sparingly otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.failures: list[DocumentStatus] = []
        self.skipped: list[DocumentStatus] = []  # links not followed; scans not read while OCR is off
        self.read_by_ocr: list[DocumentStatus] = []  # done, with "OCR n pages"

    def __call__(self, event) -> None:
        from engine.rag.indexer import DocumentStatus, IndexProgress

        if isinstance(event, DocumentStatus) and event.status == "failed":
            self.failures.append(event)
        elif isinstance(event, DocumentStatus) and event.status == "done" and event.reason:
            self.read_by_ocr.append(event)
        elif isinstance(event, DocumentStatus) and event.status == "skipped":
            self.skipped.append(event)
        elif isinstance(event, IndexProgress) and self.tty:
            width = 24
            filled = int(width * event.files_done / event.files_total) if event.files_total else width
            print(
                f"\r[{'#' * filled}{'.' * (width - filled)}] {event.files_done}/{event.files_total} files · "
                f"{event.chunks_done} chunks · {event.files_per_s:.1f} files/s · {event.chunks_per_s:.1f} chunks/s",
                end="",
                file=sys.stderr,
                flush=True,
            )

    def finish(self, result: IndexFinished) -> None:
        if self.tty:
            print("\r\033[K", end="", file=sys.stderr)
        p = result.progress
        print(
            f"Indexed {result.indexed} file(s), {p.chunks_done} chunks in {p.elapsed_s:.1f} s; "
            f"{result.unchanged} unchanged, {result.failed} failed, {result.removed} removed"
            + (f", {result.skipped} link(s) not followed" if result.skipped else "")
            + (" (cancelled)" if result.cancelled else "")
            + ".",
            file=sys.stderr,
        )
        for failure in self.failures:
            print(f"  failed: {failure.path}: {failure.reason}: {failure.message}", file=sys.stderr)
        for read in self.read_by_ocr:
            print(f"  indexed · {read.reason}: {read.path}", file=sys.stderr)
        for link in self.skipped:
            print(f"  skipped: {link.path}: {link.reason}: {link.message}", file=sys.stderr)


def _rebuild(services) -> int:
    """Set the index aside and index its documents again with the current embedding model."""
    progress = _ProgressLine()
    library = services.open_library(progress, rebuild=True)
    library.indexer.wait_idle()
    print(f"Re-indexed into a new index: {len(library.documents())} document(s).", file=sys.stderr)
    for failure in progress.failures:
        print(f"  failed: {failure.path}: {failure.reason}: {failure.message}", file=sys.stderr)
    return EXIT_OK


def index(args: argparse.Namespace) -> int:
    """`locus index`: index files and folders (and keep watching them with --watch)."""
    from app.services import build_services

    if any(not p.strip() for p in args.paths):  # "" would mean the current folder, which nobody asked for
        print("locus: an empty path was given; name the files or folders to index.", file=sys.stderr)
        return EXIT_USAGE
    services = build_services()
    try:
        library = services.open_library()
        progress = _ProgressLine()
        resumed = library.resume(progress)
        if resumed is not None:
            resumed.wait()
        job = library.index(args.paths, args.collection, on_event=progress)
        try:
            result = job.wait()
        except KeyboardInterrupt:
            job.cancel()
            result = job.wait()
        if args.watch:
            for path in args.paths:
                library.watch(path, args.collection)
        progress.finish(result)
        if result.cancelled:
            return EXIT_INTERRUPTED
        return EXIT_ERROR if result.failed and not result.indexed and not result.unchanged else EXIT_OK
    finally:
        services.close()


def docs(args: argparse.Namespace) -> int:
    """`locus docs list|remove|rebuild`: the indexed documents."""
    from app.services import build_services

    services = build_services()
    try:
        if args.docs_command == "rebuild":
            return _rebuild(services)
        library = services.open_library()
        if args.docs_command == "list":
            records = library.documents(args.collection)
            for r in records:
                if r.status == "done":
                    detail = f"{r.n_chunks} chunks" + (f", {r.reason}" if r.reason else "")  # ", OCR 3 pages"
                else:
                    detail = f"{r.reason}: {r.message}".strip(": ")
                print(f"{r.doc_id}  [{r.collection}]  {r.status:<9} {r.path}  ({detail})")
            if not records:
                print("No documents indexed yet. Add some with: locus index PATH", file=sys.stderr)
            return EXIT_OK
        missing = []
        ids = []
        for target in args.targets:
            record = library.find(target)
            (ids if record else missing).append(record.doc_id if record else target)
        if ids:
            library.remove(ids).wait()
            traces = library.traces_removed(ids)
            print(
                f"Removed {len(ids)} document(s) and {traces} trace{'' if traces == 1 else 's'} that quoted "
                f"{'it' if len(ids) == 1 else 'them'}.",
                file=sys.stderr,
            )
        for target in missing:
            print(f"locus: no indexed document is '{target}'.", file=sys.stderr)
        return EXIT_ERROR if missing else EXIT_OK
    finally:
        services.close()
