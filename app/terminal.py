"""`locus ask` and `locus chat`: the engine in a terminal."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import signal
import sys
import threading
from collections.abc import Iterable, Iterator

from app.cli import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK
from app.services import Services, build_services
from engine.assistant import AnswerHandle, Cited
from engine.errors import EngineError, InvalidRequestError
from engine.runtime.types import (
    ChatMessage,
    Done,
    Failed,
    GenerationEvent,
    GenerationRequest,
    LoadProgress,
    RuntimeEvent,
    Token,
)


def _load(services: Services, model: str | None) -> None:
    """Load the model, drawing a progress line on stderr when it is a terminal."""
    show = sys.stderr.isatty()

    def on_event(event: RuntimeEvent) -> None:
        if show and isinstance(event, LoadProgress):
            print(f"\rLoading model… {event.fraction:4.0%}", end="", file=sys.stderr, flush=True)

    try:
        services.load_model(on_event, override_path=model).result()
    finally:
        if show:
            print("\r\033[K", end="", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _ctrl_c_cancels(cancel) -> Iterator[None]:
    """While an answer streams, Ctrl-C stops the answer (which then ends as usual), not the program."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda *_: cancel())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _stream(events: Iterable[GenerationEvent], cancel, citations: list | None = None) -> Done | Failed | None:
    """Write tokens to stdout as they come, until Done or Failed; Ctrl-C cancels and keeps what was said."""
    result = None
    with _ctrl_c_cancels(cancel):
        for event in events:
            if isinstance(event, Token):
                sys.stdout.write(event.text)
                sys.stdout.flush()
            elif isinstance(event, Cited) and citations is not None:
                citations.extend(event.citations)
            elif isinstance(event, (Done, Failed)):
                result = event
    return result


def _print_sources(citations: list, retrieval) -> None:
    if citations:
        print("\nSources:")
        for c in citations:
            where = ", ".join(x for x in (c.passage.path, c.passage.location()) if x)
            print(f"[{c.number}] {where}")
            print(f"    \u201c{c.quote}\u201d")
    elif retrieval is not None and not retrieval.passages:
        print("\n(No passage in the documents matched this question.)")


def _finish(result: Done | Failed | None, show_stats: bool) -> int:
    sys.stdout.write("\n")
    sys.stdout.flush()
    if isinstance(result, Failed):
        print(f"locus: {result.error.user_text()}", file=sys.stderr)
        return EXIT_ERROR
    if isinstance(result, Done):
        if show_stats:
            for key, value in dataclasses.asdict(result.stats).items():
                print(f"{key}: {value}", file=sys.stderr)
        if result.stats.finish_reason == "cancelled":
            print("[stopped]", file=sys.stderr)
            return EXIT_INTERRUPTED
    return EXIT_OK


def _read_question(arg: str) -> str:
    if arg != "-":
        return arg
    return sys.stdin.buffer.read().decode("utf-8", errors="replace")  # whatever the terminal's encoding


def _open_documents_if_used(services: Services, conversation: int | None) -> None:
    """A conversation that answers from documents needs the index open before its next question."""
    if conversation is not None and services.history.conversation(conversation).uses_documents:
        services.open_library()


def ask(args: argparse.Namespace) -> int:
    question = _read_question(args.question)
    if not question.strip():
        raise InvalidRequestError("The question is empty.")
    if args.no_history and (args.docs or args.collection or args.conversation is not None):
        raise InvalidRequestError("--no-history cannot be combined with --docs, --collection or --conversation.",
                                  hint="Those answer inside a saved conversation; leave out --no-history.")
    # "Not saved" holds for the traces too: they keep this answer's timings and token counts, no text.
    services = build_services(record_content=not args.no_history)
    try:
        overrides = {k: v for k, v in (("max_tokens", args.max_tokens), ("temperature", args.temperature),
                                       ("seed", args.seed)) if v is not None}
        if overrides:
            chat = services.assistant.settings
            services.assistant.settings = dataclasses.replace(
                chat, sampling=dataclasses.replace(chat.sampling, **overrides))
        _load(services, args.model)
        if args.no_history:
            chat = services.assistant.settings
            messages = ((ChatMessage("system", chat.system_prompt),) if chat.system_prompt else ()) + (
                ChatMessage("user", question),)
            handle = services.runtime.submit(GenerationRequest(messages, chat.sampling))
            result = _stream(handle.events(), handle.cancel)
        elif args.docs or args.collection:
            services.open_library()
            citations: list = []
            answer = services.assistant.ask(question, args.conversation, collections=list(args.collection or []))
            result = _stream(answer.events(), answer.cancel, citations)
            code = _finish(result, args.stats)
            _print_sources(citations, answer.retrieval)
            return code
        else:
            _open_documents_if_used(services, args.conversation)
            answer = services.assistant.ask(question, args.conversation)
            result = _stream(answer.events(), answer.cancel)
        return _finish(result, args.stats)
    finally:
        services.close()


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


def chat(args: argparse.Namespace) -> int:
    services = build_services()
    try:
        conversation = args.conversation
        if conversation is None and args.last:
            recent = services.history.conversations(limit=1)
            conversation = recent[0].id if recent else None
        if conversation is not None:
            services.history.conversation(conversation)  # fail early on a bad id
        _load(services, args.model)
        print(f"Locus chat on {services.runtime.model_info.name}. /help for commands.", file=sys.stderr)
        if conversation is not None:
            _print_transcript(services, conversation)
        return _repl(services, conversation)
    finally:
        services.close()


def _print_transcript(services: Services, conversation_id: int) -> None:
    for message in services.history.messages(conversation_id):
        who = "you" if message.role == "user" else "locus"
        mark = " [partial]" if message.is_partial else ""
        print(f"{who}> {message.content}{mark}")


def _repl(services: Services, conversation: int | None) -> int:
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
            _open_documents_if_used(services, conversation)
            answer: AnswerHandle = services.assistant.ask(text, conversation)
            conversation = answer.conversation_id
            sys.stdout.write("locus> ")
            _finish(_stream(answer.events(), answer.cancel), False)
        except EngineError as exc:
            print(f"locus: {exc.user_text()}", file=sys.stderr)


def _command(services: Services, conversation: int | None, command: str, rest: str) -> int | None:
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
            _open_documents_if_used(services, conversation)
            answer = services.assistant.regenerate(conversation)
            sys.stdout.write("locus> ")
            _finish(_stream(answer.events(), answer.cancel), False)
    else:
        print(f"Unknown command {command}. /help lists them.")
    return conversation
