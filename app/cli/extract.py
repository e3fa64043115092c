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


def add_parsers(sub) -> None:
    """Add the `extract` command to the `locus` parser's subparsers."""
    parser = sub.add_parser(
        "extract",
        help="extract the facts of a file or stdin as JSON following a schema",
        description="Extract facts with the local model as JSON that always follows the "
        "given JSON schema; the JSON goes to stdout.",
    )
    parser.add_argument(
        "file", metavar="FILE", help="the file to read (text, Markdown, PDF, DOCX, HTML); '-' reads stdin"
    )
    parser.add_argument(
        "--schema",
        required=True,
        metavar="SCHEMA",
        help="a JSON schema file, JSON text, or an example: " + ", ".join(SCHEMA_EXAMPLES),
    )
    parser.add_argument("--max-tokens", type=int, metavar="N", help="the most tokens the JSON may take")
    parser.add_argument("--model", metavar="PATH", help="use this GGUF file for this command only")
    parser.set_defaults(run=run)


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
    from app.cli import EXIT_ERROR, EXIT_OK
    from app.cli.common import exit_code, follow_answer, load_model, read_file, start_task
    from app.services import build_services
    from engine.errors import EngineError
    from engine.runtime.constrain import schema_to_grammar
    from engine.tasks.extract import extract_json, parse_schema

    try:
        schema = parse_schema(schema_source(args.schema))
        schema_to_grammar(schema)  # refuse a bad schema (or one whose grammar is too big) before loading
        services = build_services()
    except EngineError as exc:
        print(f"locus: {exc.user_text()}", file=sys.stderr)
        return EXIT_ERROR
    try:
        text = read_file(args.file, services.settings.documents.parse_timeout_s, ocr=services.settings.documents.ocr)
        load_model(services, args.model)
        handle = start_task(
            services, lambda ctx: extract_json(ctx, text, schema, max_tokens=args.max_tokens), "extract"
        )
        live = sys.stderr.isatty()

        def show(part: str) -> None:  # the raw JSON as the model writes it, on a terminal only
            if live:
                print(part, end="", file=sys.stderr, flush=True)

        ended = follow_answer(handle, show)
        if live:
            print(file=sys.stderr)
    except EngineError as exc:
        print(f"locus: {exc.user_text()}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        services.close()
    if not ended.complete:
        return exit_code(ended)
    print(ended.text)
    return EXIT_OK
