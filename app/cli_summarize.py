"""`locus summarize`: a file, stdin, an indexed document or a whole collection, summarized in the terminal.

The summary streams to stdout; progress ("Summarizing part 3/12") goes to stderr,
and Ctrl-C stops the summary. Only this module's parser is imported for every
`locus` command, so it imports nothing heavy at the top.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.tasks.summarize import LENGTHS

# Kinds that are plain text on disk; PDF, DOCX and HTML go through their loaders instead.
_PLAIN_KINDS = (None, "text", "markdown", "rst", "code")


def add_parser(sub) -> argparse.ArgumentParser:
    """Add the `summarize` subcommand to the `locus` parser's subparsers."""
    parser = sub.add_parser("summarize", help="summarize a file, stdin, an indexed document or a collection",
                            description="Summarize text of any length with the local model; the summary "
                                        "streams to stdout, progress to stderr.")
    parser.add_argument("file", nargs="?", metavar="FILE",
                        help="the file to summarize (text, Markdown, code, PDF, DOCX, HTML); '-' reads stdin")
    parser.add_argument("--length", choices=list(LENGTHS), default="short",
                        help="how long a summary: " + ", ".join(f"{k} ({v.lower()})" for k, v in LENGTHS.items())
                             + "; default short")
    parser.add_argument("--doc", metavar="PATH_OR_ID", help="summarize this indexed document")
    parser.add_argument("--collection", metavar="NAME", help="summarize every document of this collection")
    parser.add_argument("--model", metavar="PATH", help="use this GGUF file for this summary only")
    return parser


def run(args: argparse.Namespace) -> int:
    """Summarize what the arguments name, streamed to stdout (app.cli reports errors)."""
    from app.services import build_services
    from app.terminal import _load
    from engine.errors import InvalidRequestError
    from engine.tasks.summarize import summary_task

    given = [x for x in (args.file, args.doc, args.collection) if x is not None]
    if len(given) != 1:
        raise InvalidRequestError("Give one thing to summarize: a FILE ('-' for stdin), --doc or --collection.")
    services = build_services()
    try:
        text, doc_ids = _source_text(services, args)
        task = summary_task(text, args.length)
        _load(services, args.model)
        return _stream(services, _naming_documents(task, doc_ids))
    finally:
        services.close()


def _source_text(services, args: argparse.Namespace) -> tuple[str, list[str]]:
    """The text to summarize, and the ids of the indexed documents it comes from."""
    if args.file is not None:
        return read_file(args.file, services.settings.documents.parse_timeout_s), []
    from engine.tasks.summarize import join_documents

    library = services.open_library()
    if args.doc is not None:
        record, text = library.document_text(args.doc)
        return text, [record.doc_id]
    documents = library.collection_text(args.collection)
    return join_documents(documents), [record.doc_id for record, _ in documents]


def _naming_documents(task, doc_ids: list[str]):
    """The task, its trace naming the indexed documents it reads, so that removing one deletes the trace."""
    if not doc_ids:
        return task

    def named(ctx):
        from engine.trace.tracing import set_attributes

        set_attributes(ctx.span, {"locus.document.ids": doc_ids})
        return task(ctx)

    return named


def read_file(name: str, parse_timeout_s: float = 60.0) -> str:
    """A file's text ('-': stdin). Plain text is read here; PDF, DOCX and HTML are parsed in a worker
    process with a time limit, as the indexer does, so a broken file cannot hang the command."""
    from app.terminal import _read_question
    from engine.errors import NotFoundError
    from engine.rag.loaders import decode_text, kind_for

    if name == "-":
        return _read_question("-")
    path = Path(name).expanduser()
    if not path.is_file():
        raise NotFoundError(f"There is no file '{name}'.")
    if kind_for(path) in _PLAIN_KINDS:
        return decode_text(path.read_bytes(), path.name)
    from engine.rag.isolation import ParsePool

    with ParsePool(1, timeout_s=parse_timeout_s) as pool:
        outcome = pool.parse(path)
    if outcome.error is not None:
        raise outcome.error
    return "\n\n".join(section.text for section in outcome.document.sections)


def _stream(services, task) -> int:
    """Run the task, summary to stdout and progress to stderr, until it ends; Ctrl-C cancels."""
    from app.cli import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK
    from app.terminal import _ctrl_c_cancels
    from engine.tasks.base import TaskDone, TaskFailed, TaskProgress, TaskText, start_task

    handle = start_task(task, services.runtime, services.templates, services.assistant.settings.sampling,
                        name="summarize")
    progress = _ProgressLine()
    result = None
    with _ctrl_c_cancels(handle.cancel):
        for event in handle.events():
            if isinstance(event, TaskProgress):
                progress.show(event)
            elif isinstance(event, TaskText):
                progress.clear()
                sys.stdout.write(event.text)
                sys.stdout.flush()
            elif isinstance(event, (TaskDone, TaskFailed)):
                result = event
    progress.clear()
    sys.stdout.write("\n")
    sys.stdout.flush()
    if isinstance(result, TaskFailed):
        print(f"locus: {result.error.user_text()}", file=sys.stderr)
        return EXIT_ERROR
    if result is not None and result.cancelled:
        print("[stopped]", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK


class _ProgressLine:
    """Progress on stderr: one line redrawn in place on a terminal, a line per step otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.drawn = False

    def show(self, event) -> None:
        if event.done == 0 and not self.tty:
            return  # a stage starting: its first step says as much
        line = f"{event.stage} {event.done}/{event.total}"
        if self.tty:
            print(f"\r\033[K{line}…", end="", file=sys.stderr, flush=True)
            self.drawn = True
        else:
            print(line, file=sys.stderr, flush=True)

    def clear(self) -> None:
        if self.drawn:
            print("\r\033[K", end="", file=sys.stderr, flush=True)
            self.drawn = False
