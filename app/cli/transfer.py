"""`locus export` and `locus import`: conversations out to Markdown, JSON or PDF files, and in from Locus
JSON, ChatGPT's conversations.json, LM Studio conversations and Jan threads.

Both open the conversation database on their own (beside a running window, as SQLite's WAL allows) and
load no model. An import is all or nothing: a refused file names what is wrong and saves nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from app.cli import EXIT_OK, EXIT_USAGE

FORMATS = {"markdown": ".md", "json": ".json", "pdf": ".pdf"}
_SUFFIXES = {".md": "markdown", ".markdown": "markdown", ".json": "json", ".pdf": "pdf"}


def add_parsers(sub) -> None:
    """Add the `export` and `import` commands to the `locus` parser's subparsers."""
    p = sub.add_parser(
        "export",
        help="write conversations to Markdown, JSON or PDF",
        description="Write conversations (by id, a project's, or all) to a file, or to a folder, one file each.",
    )
    p.add_argument("ids", nargs="*", type=int, metavar="ID", help="the conversations to export (see /list in chat)")
    p.add_argument("--all", action="store_true", help="every conversation")
    p.add_argument("--project", metavar="NAME", help="the conversations of this project (its name or id)")
    p.add_argument(
        "--format", choices=tuple(FORMATS), help="markdown, json (complete: every branch) or pdf; default: from PATH"
    )
    p.add_argument(
        "--output",
        "-o",
        metavar="PATH",
        help="a file (all the conversations in it), or an existing folder (one file each); "
        "default: the terminal (markdown and json)",
    )
    p.set_defaults(run=run_export)
    i = sub.add_parser(
        "import",
        help="import conversations from Locus JSON, ChatGPT, LM Studio or Jan",
        description="Import the conversations of a file (its format is found from its content): a Locus JSON "
        "export, ChatGPT's conversations.json (or the zip it comes in), an LM Studio conversation file, or a Jan "
        "thread (its folder, thread.json or messages.jsonl). Nothing is saved from a file that is refused.",
    )
    i.add_argument("file", metavar="FILE")
    i.set_defaults(run=run_import)


def _store():
    from app.paths import resolve_paths
    from engine.history.store import HistoryStore

    return HistoryStore(resolve_paths().history_db)


def _format(args: argparse.Namespace) -> str | None:
    if args.format:
        return args.format
    if args.output and Path(args.output).suffix.lower() in _SUFFIXES:
        return _SUFFIXES[Path(args.output).suffix.lower()]
    return None


def run_export(args: argparse.Namespace) -> int:
    from engine.history import export

    fmt = _format(args)
    if fmt is None:
        print("locus: say which format with --format markdown, json or pdf.", file=sys.stderr)
        return EXIT_USAGE
    if not (args.ids or args.all or args.project):
        print("locus: name the conversations to export (IDs, --project NAME or --all).", file=sys.stderr)
        return EXIT_USAGE
    if fmt == "pdf" and not args.output:
        print("locus: a PDF needs a file to go to: --output PATH.", file=sys.stderr)
        return EXIT_USAGE
    store = _store()
    try:
        title = None
        if args.project:
            title, ids = export.project_conversations(store, args.project)
        elif args.all:
            ids = [c.id for c in sorted(store.conversations(), key=lambda c: (c.created_at, c.id))]
        else:
            ids = list(dict.fromkeys(args.ids))
        conversations = [store.conversation(cid) for cid in ids]  # fails early on an unknown id
        if not conversations:
            print("locus: there are no conversations to export.", file=sys.stderr)
            return EXIT_OK
        out = Path(args.output).expanduser() if args.output else None
        if out is not None and out.is_dir():
            for c in conversations:
                _write(store, fmt, [c.id], out / (export.file_stem(c) + FORMATS[fmt]), c.title, None)
            where = f"{len(conversations)} files in {out}"
        else:
            heading = title or ("Locus conversations" if len(ids) > 1 else None)  # a project's name
            _write(store, fmt, ids, out, heading or conversations[0].title, heading)
            where = str(out) if out else "the terminal"
    finally:
        store.close()
    n = len(conversations)
    print(f"Exported {n} conversation{'s' if n != 1 else ''} as {fmt} to {where}.", file=sys.stderr)
    return EXIT_OK


def _write(store, fmt: str, ids: list[int], out: Path | None, title: str, heading: str | None) -> None:
    """Write conversations ``ids`` to ``out`` (None: stdout); ``heading``: the title above several (None: one
    conversation on its own), ``title``: the PDF's."""
    from engine.history import export

    if fmt == "json":
        text = json.dumps(export.export_json(store, ids), ensure_ascii=False, indent=1) + "\n"
    else:
        text = export.export_markdown(store, ids, title=heading)
    if fmt == "pdf":
        from ui.export_pdf import write_pdf

        assert out is not None
        write_pdf(text, out, title=title)
    elif out is None:
        sys.stdout.write(text)
    else:
        partial = out.with_name(f".{out.name}.part")
        partial.write_text(text, encoding="utf-8")
        partial.replace(out)


def run_import(args: argparse.Namespace) -> int:
    from engine.history.imports import import_file

    store = _store()
    try:
        result = import_file(store, Path(args.file).expanduser())
    finally:
        store.close()
    print(result.describe())
    return EXIT_OK
