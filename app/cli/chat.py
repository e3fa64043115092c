"""`locus ask` and `locus chat`: questions and conversations with the engine, in a terminal."""

from __future__ import annotations

import argparse
import sys

from app.cli import EXIT_OK
from app.cli.common import (
    TerminalApprovals,
    Warming,
    exit_code,
    follow_answer,
    load_model,
    open_documents_if_used,
    print_passages,
    print_sources,
    read_text,
    sampling_for,
)


def add_parsers(sub) -> None:
    """Add the `ask` and `chat` commands to the `locus` parser's subparsers."""
    ask_p = sub.add_parser("ask", help="answer one question, streamed to stdout")
    ask_p.add_argument("question", help="the question; '-' reads it from stdin")
    ask_p.add_argument("--model", metavar="PATH", help="use this GGUF file for this question only")
    ask_p.add_argument("--conversation", type=int, metavar="ID", help="continue a saved conversation")
    ask_p.add_argument(
        "--no-history",
        action="store_true",
        help="do not save the question and answer (its trace keeps timings and token counts only)",
    )
    ask_p.add_argument("--max-tokens", type=int, metavar="N", help="longest answer, in tokens")
    ask_p.add_argument("--temperature", type=float, metavar="T")
    ask_p.add_argument("--seed", type=int, metavar="N")
    ask_p.add_argument("--stats", action="store_true", help="print timings and token counts to stderr")
    ask_p.add_argument("--docs", action="store_true", help="answer from the indexed documents, with sources")
    ask_p.add_argument(
        "--collection",
        action="append",
        metavar="NAME",
        help="answer from this document collection only (repeatable; implies --docs)",
    )
    ask_p.add_argument(
        "--passages",
        action="store_true",
        help="with --docs or --collection: print the passages found for the question, best first, "
        "without generating an answer (no model is loaded)",
    )
    ask_p.add_argument(
        "--tools",
        metavar="NAME[,NAME...]",
        type=_tool_list,
        help="tools the answer may call: built-ins by name (calculator, current_time, "
        "search_documents, read_file, fetch_page), MCP tools as server/tool; saved with "
        "the conversation; each call is asked for on the terminal unless trusted",
    )
    ask_p.add_argument(
        "--tool-choice",
        default="auto",
        metavar="auto|required|none|NAME",
        help="auto: the model decides (default); required: it calls a tool first; none: no "
        "tool; or a tool's name: it calls that tool first",
    )
    ask_p.add_argument("--yes", action="store_true", help="allow every tool call of this run without asking")
    ask_p.add_argument(
        "--local",
        action="store_true",
        help="answer in this process even when Locus is running (by default the running Locus answers: "
        "no model or embedding model to load; also LOCUS_LOCAL=1)",
    )
    ask_p.set_defaults(run=run_ask)

    chat_p = sub.add_parser("chat", help="interactive chat in the terminal (shares saved conversations)")
    chat_p.add_argument("--conversation", type=int, metavar="ID", help="resume a saved conversation")
    chat_p.add_argument("--last", action="store_true", help="resume the most recent conversation")
    chat_p.add_argument("--model", metavar="PATH", help="use this GGUF file for this session")
    chat_p.set_defaults(run=run_chat)


def _tool_list(text: str) -> tuple[str, ...]:
    """--tools calculator,notes/search -> ("calculator", "notes/search")."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise argparse.ArgumentTypeError("name at least one tool")
    return names


def run_ask(args: argparse.Namespace) -> int:
    """`locus ask`: check the question, hand it to the running Locus or start the engine, answer it, stop the
    engine."""
    from engine.errors import InvalidRequestError

    question = read_text(args.question)
    if not question.strip():
        raise InvalidRequestError("The question is empty.")
    if args.no_history and (args.docs or args.collection or args.conversation is not None):
        raise InvalidRequestError(
            "--no-history cannot be combined with --docs, --collection or --conversation.",
            hint="Those answer inside a saved conversation; leave out --no-history.",
        )
    if args.passages and not (args.docs or args.collection):
        raise InvalidRequestError(
            "--passages shows the passages found in your documents: add --docs or --collection NAME."
        )
    handed = _hand_off(args, question)
    if handed is not None:
        return handed
    from app.services import build_services  # (imports the engine: after the hand-off, which needs none of it)

    # "Not saved" holds for the traces too: they keep this answer's timings and token counts, no text.
    services = build_services(record_content=not args.no_history)
    try:
        if args.passages:
            return passages(services, args, question)
        warming = Warming(services) if (args.docs or args.collection) else None
        load_model(services, args.model)
        if warming is not None:
            warming.wait()
        return ask(services, args, question)
    finally:
        services.close()  # stops the MCP servers this command started, too


def _hand_off(args: argparse.Namespace, question: str) -> int | None:
    """The running Locus answers, when there is one and the flags allow (app/ask_handoff.py); None: answer here."""
    from app.ask_handoff import hand_off
    from app.paths import resolve_paths

    return hand_off(args, question, resolve_paths().data_dir)


def passages(services, args: argparse.Namespace, question: str) -> int:
    """`locus ask --docs --passages`: the passages the question finds, ranked, and no answer."""
    from engine.assistant import SOURCE_BUDGET_TOKENS

    library = services.open_library()
    # Counted as the answer's retrieval counts them (about 3 characters a token), within the sources' budget.
    found = library.retrieve(
        question, list(args.collection or []) or None, lambda t: len(t) // 3 + 1, SOURCE_BUDGET_TOKENS
    )
    print_passages(found)
    return EXIT_OK


def ask(services, args: argparse.Namespace, question: str) -> int:
    """Answer one question on the loaded model, streamed to stdout; returns the exit code.

    ``--max-tokens``, ``--temperature`` and ``--seed`` hold for this question only.
    """
    sampling = sampling_for(services, max_tokens=args.max_tokens, temperature=args.temperature, seed=args.seed)
    tools = {"tools": args.tools, "tool_choice": args.tool_choice}
    approvals = TerminalApprovals(yes=args.yes)
    if tools["tools"] and "search_documents" in tools["tools"]:
        services.open_library()
    if args.no_history:
        ended = follow_answer(
            services.assistant.ask(question, sampling=sampling, save=False, **tools), approvals=approvals
        )
        _end_line()
        return exit_code(ended, show_stats=args.stats)
    if args.docs or args.collection:
        services.open_library()
        citations: list = []
        answer = services.assistant.ask(
            question, args.conversation, collections=list(args.collection or []), sampling=sampling, **tools
        )
        ended = follow_answer(answer, citations=citations, approvals=approvals)
        _end_line()
        code = exit_code(ended, show_stats=args.stats)
        print_sources(citations, answer.retrieval)
        return code
    open_documents_if_used(services, args.conversation)
    ended = follow_answer(
        services.assistant.ask(question, args.conversation, sampling=sampling, **tools), approvals=approvals
    )
    _end_line()
    return exit_code(ended, show_stats=args.stats)


def _end_line() -> None:
    sys.stdout.write("\n")
    sys.stdout.flush()


HELP = """Commands:
  /new            start a new conversation
  /list           list saved conversations
  /open ID        continue conversation ID
  /search WORDS   find conversations
  /title TEXT     rename this conversation
  /delete [ID]    delete this (or that) conversation, its traces and cached states
  /regenerate     answer the last question again
  /exit           leave (Ctrl-D works too)
Ctrl-C while an answer streams stops it; the partial answer is kept."""


def run_chat(args: argparse.Namespace) -> int:
    """`locus chat`: a conversation at the terminal, over the saved conversations, until /exit or Ctrl-D."""
    from app.services import build_services

    services = build_services()
    try:
        conversation = args.conversation
        if conversation is None and args.last:
            recent = services.history.conversations(limit=1)
            conversation = recent[0].id if recent else None
        if conversation is not None:
            services.history.conversation(conversation)  # fail early on a bad id
        load_model(services, args.model)
        model = services.backends.resolve(None)[1].model_info
        print(f"Locus chat on {model.name}. /help for commands.", file=sys.stderr)
        if conversation is not None:
            _print_transcript(services, conversation)
        return _repl(services, conversation)
    finally:
        services.close()


def _print_transcript(services, conversation_id: int) -> None:
    for message in services.history.messages(conversation_id):
        who = "you" if message.role == "user" else "locus"
        mark = " [partial]" if message.is_partial else ""
        print(f"{who}> {message.content}{mark}")


def _repl(services, conversation: int | None) -> int:
    from engine.errors import EngineError

    while True:
        try:
            line = input("you> ")
        except EOFError:
            print(file=sys.stderr)
            return EXIT_OK
        except KeyboardInterrupt:
            print(file=sys.stderr)
            return EXIT_OK
        text = line.strip()
        if not text:
            continue
        try:
            if text.startswith("/"):
                command, _, rest = text.partition(" ")
                if command in ("/exit", "/quit"):
                    return EXIT_OK
                conversation = _command(services, conversation, command, rest.strip())
                continue
            open_documents_if_used(services, conversation)
            answer = services.assistant.ask(text, conversation)
            _print_reply(answer)
            if answer.started is not None and answer.started.conversation_id is not None:
                conversation = answer.started.conversation_id
        except EngineError as exc:
            print(f"locus: {exc.user_text()}", file=sys.stderr)


def _command(services, conversation: int | None, command: str, rest: str) -> int | None:
    history = services.history
    if command == "/help":
        print(HELP)
    elif command == "/new":
        print("(new conversation)")
        return None
    elif command == "/list":
        for c in history.conversations():
            print(f"{c.id:5d}  {c.title}  ({c.message_count} messages)")
    elif command == "/open":
        if not rest.isdigit():
            print("Usage: /open ID")
            return conversation
        history.conversation(int(rest))
        _print_transcript(services, int(rest))
        return int(rest)
    elif command == "/search":
        for hit in history.search(rest):
            print(f"{hit.conversation.id:5d}  {hit.conversation.title}: {hit.snippet}")
    elif command == "/title":
        if conversation is None or not rest:
            print("Usage: /title TEXT (in a conversation that has started)")
        else:
            history.rename_conversation(conversation, rest)
    elif command == "/delete":
        target = int(rest) if rest.isdigit() else conversation if not rest else None
        if target is None:
            print("Usage: /delete [ID] (this conversation when no ID is given)")
            return conversation
        print(services.assistant.delete_conversation(target).describe())
        return None if target == conversation else conversation
    elif command == "/regenerate":
        if conversation is None:
            print("Nothing to regenerate yet.")
        else:
            open_documents_if_used(services, conversation)
            _print_reply(services.assistant.regenerate(conversation))
    else:
        print(f"Unknown command {command}. /help lists them.")
    return conversation


def _print_reply(answer) -> None:
    """One answer in the conversation, after its prompt; how it ended on stderr (a conversation with tools
    asks for each call's approval at the terminal)."""
    sys.stdout.write("locus> ")
    ended = follow_answer(answer, approvals=TerminalApprovals())
    _end_line()
    exit_code(ended)
