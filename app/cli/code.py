"""`locus code`: explain, review, write tests for or fix a file (or some of its lines), streamed to stdout.

`locus code explain app.py:10-40` shows the model those lines with their numbers;
`--docs` adds related code from the indexed files. Only this module's parser is
imported for every `locus` command, so it imports nothing heavy at the top.
"""

from __future__ import annotations

import argparse

# The actions, repeated here rather than imported so that building the parser stays light.
_ACTIONS = {
    "explain": "explain what the code does",
    "review": "review the code for bugs and risks",
    "tests": "write unit tests for the code",
    "fix": "find and fix the cause of an error (--error)",
}


def add_parsers(sub) -> None:
    """Add the `code` command to the `locus` parser's subparsers."""
    parser = sub.add_parser(
        "code",
        help="explain, review, write tests for or fix code in a file",
        description="Code help from the local model, streamed to stdout. Give a file, "
        "FILE:START-END for some of its lines, or '-' to read code from stdin.",
    )
    parser.add_argument(
        "action", choices=list(_ACTIONS), metavar="ACTION", help="; ".join(f"{k}: {v}" for k, v in _ACTIONS.items())
    )
    parser.add_argument("target", metavar="FILE[:LINES]", help="the code: a file, FILE:10-40, or '-' for stdin")
    parser.add_argument("--error", metavar="TEXT", default="", help="the error message to fix ('-' reads stdin)")
    parser.add_argument("--question", metavar="TEXT", default="", help="anything more to ask about the code")
    parser.add_argument("--language", metavar="NAME", help="the code's language (default: guessed)")
    parser.add_argument("--docs", action="store_true", help="add related code from the indexed documents")
    parser.add_argument("--model", metavar="PATH", help="use this GGUF file for this answer only")
    parser.add_argument("--max-tokens", type=int, metavar="N", help="longest answer, in tokens")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """`locus code`: read the code (and the error), start the engine, answer, stop the engine."""
    from app.cli.common import load_model, read_text
    from app.services import build_services
    from engine.errors import InvalidRequestError
    from engine.tasks.code import load_code_range, split_location

    if args.target == "-" and args.error == "-":
        raise InvalidRequestError("Only one of the code and --error can be read from stdin.")
    error = read_text(args.error) if args.error else ""
    code = read_text("-") if args.target == "-" else load_code_range(*split_location(args.target))
    if args.max_tokens is not None and args.max_tokens < 1:
        raise InvalidRequestError("--max-tokens must be 1 or more.")
    services = build_services()
    try:
        library = services.open_library() if args.docs else None
        load_model(services, args.model)
        return answer(services, args, code, error, library)
    finally:
        services.close()


def answer(services, args: argparse.Namespace, code: str, error: str = "", library=None) -> int:
    """Answer the code question the arguments name on the loaded model, streamed to stdout; returns the
    exit code. ``--max-tokens`` holds for this answer only; ``library``: related code comes from it."""
    from app.cli.common import sampling_for, stream_task
    from engine.tasks.code import code_help

    def task(ctx):
        return code_help(
            ctx, args.action, code, language=args.language, error=error, library=library, question=args.question
        )

    sampling = sampling_for(services, max_tokens=args.max_tokens)
    return stream_task(services, task, f"code-{args.action}", sampling=sampling)[1]
