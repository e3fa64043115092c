"""The `locus` command: the window by default, and terminal commands beside it."""

from __future__ import annotations

import argparse
import logging
import sys
from importlib.metadata import PackageNotFoundError, version

from engine.errors import EngineError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def locus_version() -> str:
    try:
        return version("locus")
    except PackageNotFoundError:
        return "0+unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="locus", description="Locus: a private AI assistant that runs on your own machine.")
    parser.add_argument("--version", action="version", version=f"locus {locus_version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    ask = sub.add_parser("ask", help="answer one question, streamed to stdout")
    ask.add_argument("question", help="the question; '-' reads it from stdin")
    ask.add_argument("--model", metavar="PATH", help="use this GGUF file for this question only")
    ask.add_argument("--conversation", type=int, metavar="ID", help="continue a saved conversation")
    ask.add_argument("--no-history", action="store_true", help="do not save the question and answer")
    ask.add_argument("--max-tokens", type=int, metavar="N", help="longest answer, in tokens")
    ask.add_argument("--temperature", type=float, metavar="T")
    ask.add_argument("--seed", type=int, metavar="N")
    ask.add_argument("--stats", action="store_true", help="print timings and token counts to stderr")

    chat = sub.add_parser("chat", help="interactive chat in the terminal (shares saved conversations)")
    chat.add_argument("--conversation", type=int, metavar="ID", help="resume a saved conversation")
    chat.add_argument("--last", action="store_true", help="resume the most recent conversation")
    chat.add_argument("--model", metavar="PATH", help="use this GGUF file for this session")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.command is None:
        from app.gui import run_gui  # Qt is imported only when the window is wanted

        return run_gui()
    from app import terminal

    try:
        if args.command == "ask":
            return terminal.ask(args)
        return terminal.chat(args)
    except EngineError as exc:
        print(f"locus: {exc.user_text()}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
