"""The `locus` command: the window by default, and terminal commands beside it."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from importlib.metadata import PackageNotFoundError, version

from app.paths import keep_private
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
    parser.add_argument("--quick-ask", action="store_true",
                        help="open the quick-ask popup (in the running Locus, or start one with it)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    ask = sub.add_parser("ask", help="answer one question, streamed to stdout")
    ask.add_argument("question", help="the question; '-' reads it from stdin")
    ask.add_argument("--model", metavar="PATH", help="use this GGUF file for this question only")
    ask.add_argument("--conversation", type=int, metavar="ID", help="continue a saved conversation")
    ask.add_argument("--no-history", action="store_true",
                     help="do not save the question and answer (its trace keeps timings and token counts only)")
    ask.add_argument("--max-tokens", type=int, metavar="N", help="longest answer, in tokens")
    ask.add_argument("--temperature", type=float, metavar="T")
    ask.add_argument("--seed", type=int, metavar="N")
    ask.add_argument("--stats", action="store_true", help="print timings and token counts to stderr")
    ask.add_argument("--docs", action="store_true", help="answer from the indexed documents, with sources")
    ask.add_argument("--collection", action="append", metavar="NAME",
                     help="answer from this document collection only (repeatable; implies --docs)")

    chat = sub.add_parser("chat", help="interactive chat in the terminal (shares saved conversations)")
    chat.add_argument("--conversation", type=int, metavar="ID", help="resume a saved conversation")
    chat.add_argument("--last", action="store_true", help="resume the most recent conversation")
    chat.add_argument("--model", metavar="PATH", help="use this GGUF file for this session")

    index_p = sub.add_parser("index", help="add files and folders to the document index")
    index_p.add_argument("paths", nargs="+", metavar="PATH")
    index_p.add_argument("--collection", default="default", help="collection to add them to (default: default)")
    index_p.add_argument("--watch", action="store_true", help="keep watching these folders for changes")

    docs_p = sub.add_parser("docs", help="list or remove indexed documents")
    docs_sub = docs_p.add_subparsers(dest="docs_command", metavar="ACTION", required=True)
    list_p = docs_sub.add_parser("list", help="list indexed documents and their status")
    list_p.add_argument("--collection")
    remove_p = docs_sub.add_parser("remove", help="remove documents from the index (files are kept)")
    remove_p.add_argument("targets", nargs="+", metavar="PATH|ID")
    docs_sub.add_parser("rebuild", help="index every document again (after changing the embedding model)")

    # Light imports: the engine loads in run().
    from app import cli_code, cli_extract, cli_secrets, cli_serve, cli_summarize, cli_traces, cli_translate

    for module in (cli_summarize, cli_translate, cli_code, cli_extract, cli_traces, cli_secrets, cli_serve):
        module.add_parser(sub)
    return parser


def _task_command(name: str):
    from app import cli_code, cli_extract, cli_secrets, cli_serve, cli_summarize, cli_traces, cli_translate

    return {"summarize": cli_summarize, "translate": cli_translate, "code": cli_code,
            "extract": cli_extract, "traces": cli_traces, "secrets": cli_secrets, "serve": cli_serve}.get(name)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["--parse-worker"], ["--embed-worker"], ["--grammar-check-worker"]):
        # The frozen app's bootloader puts only the bundle on sys.path and its workers start in the
        # app's folder (engine/rag/ipc.py says why); "" (the working directory) must never be there.
        sys.path[:] = [p for p in sys.path if p]
    if argv[:1] == ["--parse-worker"]:  # a frozen app starting its own document-parser worker
        from engine.rag.isolation import worker_main

        worker_main(argv[1], int(argv[2]), int(argv[3]) if len(argv) > 3 else 0)
        return EXIT_OK
    if argv[:1] == ["--embed-worker"]:  # ... or its embedding worker
        from engine.rag.embed import serve

        serve(argv[1], argv[2], int(argv[3]))
        return EXIT_OK
    if argv[:1] == ["--grammar-check-worker"]:  # ... or the process that tries a grammar before it is used
        from engine.runtime.grammar_check import worker_main

        return worker_main()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quick_ask and args.command is not None:
        parser.error("--quick-ask opens the window's quick ask; it takes no command")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    keep_private()  # before anything is written: Locus's folders and files are for this user only
    if args.command is None:
        from app.gui import run_gui  # Qt is imported only when the window is wanted

        return run_gui(quick_ask=args.quick_ask)
    try:
        task = _task_command(args.command)
        if task is not None:
            return task.run(args)
        if args.command in ("index", "docs"):
            from app import documents_cli

            return getattr(documents_cli, args.command)(args)
        from app import terminal

        return getattr(terminal, args.command)(args)
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


if __name__ == "__main__":
    sys.exit(main())
