"""`locus extract`: the facts of a file (or stdin) as JSON that follows a JSON schema.

The validated, pretty-printed JSON goes to stdout (ready for `jq` or a file); on a
terminal the raw JSON also streams to stderr as the model writes it. Only this
module's parser is imported for every `locus` command, so it imports nothing heavy.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.tasks.extract import SCHEMA_EXAMPLES


def add_parser(sub) -> argparse.ArgumentParser:
    """Add the `extract` subcommand to the `locus` parser's subparsers."""
    parser = sub.add_parser("extract", help="extract the facts of a file or stdin as JSON following a schema",
                            description="Extract facts with the local model as JSON that always follows the "
                                        "given JSON schema; the JSON goes to stdout.")
    parser.add_argument("file", metavar="FILE", help="the file to read (text, Markdown, PDF, DOCX, HTML); "
                                                     "'-' reads stdin")
    parser.add_argument("--schema", required=True, metavar="SCHEMA",
                        help="a JSON schema file, JSON text, or an example: " + ", ".join(SCHEMA_EXAMPLES))
    parser.add_argument("--max-tokens", type=int, metavar="N", help="the most tokens the JSON may take")
    parser.add_argument("--model", metavar="PATH", help="use this GGUF file for this command only")
    return parser


def schema_source(value: str) -> dict | str:
    """The --schema argument as an example schema, the text of a file, or JSON text as given."""
    if value in SCHEMA_EXAMPLES:
        return SCHEMA_EXAMPLES[value]
    path = Path(value).expanduser()
    if not value.lstrip().startswith("{") and path.is_file():
        return path.read_text(encoding="utf-8")
    return value


def run(args: argparse.Namespace) -> int:
    """Extract; errors are printed as `locus: message` (exit 1)."""
    from app.cli import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK
    from app.cli_summarize import read_file
    from app.services import build_services
    from app.terminal import _ctrl_c_cancels, _load
    from engine.errors import EngineError
    from engine.runtime.constrain import schema_to_grammar
    from engine.tasks.base import TaskDone, TaskFailed, TaskText, start_task
    from engine.tasks.extract import extract_json, parse_schema

    try:
        schema = parse_schema(schema_source(args.schema))
        schema_to_grammar(schema)  # refuse a bad schema (or one whose grammar is too big) before loading
        services = build_services()
    except EngineError as exc:
        print(f"locus: {exc.user_text()}", file=sys.stderr)
        return EXIT_ERROR
    try:
        text = read_file(args.file, services.settings.documents.parse_timeout_s)
        _load(services, args.model)
        handle = start_task(lambda ctx: extract_json(ctx, text, schema, max_tokens=args.max_tokens),
                            services.runtime, services.templates, services.assistant.settings.sampling,
                            name="extract")
        live = sys.stderr.isatty()
        result = None
        with _ctrl_c_cancels(handle.cancel):
            for event in handle.events():
                if isinstance(event, TaskText) and live:
                    print(event.text, end="", file=sys.stderr, flush=True)
                elif isinstance(event, (TaskDone, TaskFailed)):
                    result = event
        if live:
            print(file=sys.stderr)
    except EngineError as exc:
        print(f"locus: {exc.user_text()}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        services.close()
    if isinstance(result, TaskFailed):
        print(f"locus: {result.error.user_text()}", file=sys.stderr)
        return EXIT_ERROR
    if result is None or result.cancelled:
        print("[stopped]", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(result.text)
    return EXIT_OK
