"""The `locus` command: the window by default, and terminal commands beside it.

One module per command group (``chat``: ask and chat; ``documents``: index and docs; ``summarize``,
``translate``, ``code``, ``extract``, ``traces``, ``secrets``, ``serve``, ``mcp``; ``transfer``: export and
import), each with ``add_parsers(sub)`` and, per command, a ``run(args)`` it sets as the parser's default;
what they share is in ``common``. Building the parser imports every command module, so they import nothing
heavy at the top: the engine loads when a command runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

from app.paths import keep_private
from engine.errors import EngineError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

# The command modules, in the order `locus --help` lists their commands.
COMMAND_MODULES = (
    "chat",
    "documents",
    "summarize",
    "translate",
    "code",
    "extract",
    "traces",
    "secrets",
    "serve",
    "mcp",
    "transfer",
)

# Flags the frozen app starts its own helper processes with (it has no Python to run `-m` with).
WORKER_FLAGS = ("--parse-worker", "--embed-worker", "--grammar-check-worker", "--cpu-check-worker")


def locus_version() -> str:
    """The installed Locus version ("0+unknown" when run from a checkout that was never installed)."""
    try:
        return version("locus")
    except PackageNotFoundError:
        return "0+unknown"


# Commands whose module is the only one imported when they are run (the others import engine modules for
# their choices): `locus ask` handed to the running Locus starts in a fraction of a second.
QUICK_COMMANDS = {"ask": "chat", "chat": "chat"}


def build_parser(modules: tuple[str, ...] = COMMAND_MODULES) -> argparse.ArgumentParser:
    """The `locus` parser: its options and the subparsers of ``modules``' commands (all by default)."""
    parser = argparse.ArgumentParser(
        prog="locus", description="Locus: a private AI assistant that runs on your own machine."
    )
    parser.add_argument("--version", action="version", version=f"locus {locus_version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    parser.add_argument(
        "--quick-ask", action="store_true", help="open the quick-ask popup (in the running Locus, or start one with it)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in modules:
        import_module(f"app.cli.{name}").add_parsers(sub)
    return parser


def run_worker(argv: list[str]) -> int:
    """Run one of the frozen app's helper processes (``argv`` starts with one of WORKER_FLAGS)."""
    # The frozen app's bootloader puts only the bundle on sys.path and its workers start in the
    # app's folder (engine/rag/ipc.py says why); "" (the working directory) must never be there.
    sys.path[:] = [p for p in sys.path if p]
    if argv[0] == "--parse-worker":  # the document-parser worker
        from engine.rag.isolation import run_worker as run_parse_worker

        run_parse_worker(argv[1:])
        return EXIT_OK
    if argv[0] == "--embed-worker":  # the embedding worker
        from engine.rag.embed import serve

        serve(argv[1], argv[2], int(argv[3]))
        return EXIT_OK
    if argv[0] == "--cpu-check-worker":  # whether llama.cpp's AMX buffers crash here (engine/runtime/cpu_check.py)
        from engine.runtime.cpu_check import worker_main as cpu_check_main

        return cpu_check_main()
    from engine.runtime.grammar_check import worker_main  # the process that tries a grammar before it is used

    return worker_main()


def main(argv: list[str] | None = None) -> int:
    """The console script: parse the arguments, run the command, turn errors into words and exit codes."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] and argv[0] in WORKER_FLAGS:
        return run_worker(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser((QUICK_COMMANDS[command],) if command in QUICK_COMMANDS else COMMAND_MODULES)
    args = parser.parse_args(argv)
    if args.quick_ask and args.command is not None:
        parser.error("--quick-ask opens the window's quick ask; it takes no command")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    keep_private()  # before anything is written: Locus's folders and files are for this user only
    if args.command is None:
        from app.gui import run_gui  # Qt is imported only when the window is wanted

        return run_gui(quick_ask=args.quick_ask)
    return run_command(args)


def run_command(args: argparse.Namespace) -> int:
    """Run a parsed command; errors a user can act on are printed as `locus: ...`."""
    try:
        return args.run(args)
    except EngineError as exc:
        print(f"locus: {exc.user_text()}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`locus ask ... | head`): stop quietly, as command-line tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"locus: {exc.strerror or exc}{where}.", file=sys.stderr)
        return EXIT_ERROR
