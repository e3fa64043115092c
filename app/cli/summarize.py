"""`locus summarize`: a file, stdin, an indexed document or a whole collection, summarized in the terminal.

The summary streams to stdout; progress ("Summarizing part 3/12") goes to stderr,
and Ctrl-C stops the summary. Only this module's parser is imported for every
`locus` command, so it imports nothing heavy at the top.
"""

from __future__ import annotations

import argparse

from engine.tasks.summarize import LENGTHS


def add_parsers(sub) -> None:
    """Add the `summarize` command to the `locus` parser's subparsers."""
    parser = sub.add_parser(
        "summarize",
        help="summarize a file, stdin, an indexed document or a collection",
        description="Summarize text of any length with the local model; the summary "
        "streams to stdout, progress to stderr.",
    )
    parser.add_argument(
        "file",
        nargs="?",
        metavar="FILE",
        help="the file to summarize (text, Markdown, code, PDF, DOCX, HTML); '-' reads stdin",
    )
    parser.add_argument(
        "--length",
        choices=list(LENGTHS),
        default="short",
        help="how long a summary: " + ", ".join(f"{k} ({v.lower()})" for k, v in LENGTHS.items()) + "; default short",
    )
    parser.add_argument("--doc", metavar="PATH_OR_ID", help="summarize this indexed document")
    parser.add_argument("--collection", metavar="NAME", help="summarize every document of this collection")
    parser.add_argument("--model", metavar="PATH", help="use this GGUF file for this summary only")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Summarize what the arguments name, streamed to stdout (app.cli reports errors)."""
    from app.cli.common import load_model, stream_task
    from app.services import build_services
    from engine.errors import InvalidRequestError
    from engine.tasks.summarize import summary_task

    given = [x for x in (args.file, args.doc, args.collection) if x is not None]
    if len(given) != 1:
        raise InvalidRequestError("Give one thing to summarize: a FILE ('-' for stdin), --doc or --collection.")
    services = build_services()
    try:
        text, doc_ids = _source_text(services, args)
        task = summary_task(text, args.length)
        load_model(services, args.model)
        return stream_task(services, _naming_documents(task, doc_ids), "summarize")[1]
    finally:
        services.close()


def _source_text(services, args: argparse.Namespace) -> tuple[str, list[str]]:
    """The text to summarize, and the ids of the indexed documents it comes from."""
    from app.cli.common import read_file

    if args.file is not None:
        documents = services.settings.documents
        return read_file(args.file, documents.parse_timeout_s, ocr=documents.ocr), []
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
