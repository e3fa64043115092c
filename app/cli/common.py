"""What the terminal commands share: loading the model, Ctrl-C, reading input, printing an answer.

An answer (chat, an answer from documents, a task's output) is printed the same way by every
command: its text streams to stdout, progress goes to stderr, Ctrl-C stops it (what was said is
kept) and its end (``engine.answer.AnswerEnded``) gives the exit code. ``follow_answer`` is the one
place that reads an answer's events. An answer that uses tools prints each call and its result on
stderr as plain text (``ToolLines``: control characters shown as escapes, so a tool cannot drive the
terminal) and asks for each approval there (``TerminalApprovals``: [o]nce / [c]onversation / [d]eny).

Per-call options (``--max-tokens``, ``--temperature``, ``--seed``) become a ``SamplingParams`` for
that call (``sampling_for``); they never change the settings a process shares.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from app.cli import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK
from engine.answer import AnswerEnded, ApprovalNeeded, Cited, Progress, TextDelta, ToolCallEnded, ToolCallStarted

if TYPE_CHECKING:
    from app.services import Services
    from engine.runtime.types import SamplingParams

# Kinds that are plain text on disk; PDF, DOCX and HTML go through their loaders instead.
_PLAIN_KINDS = (None, "text", "markdown", "rst", "code")


# Input ------------------------------------------------------------------------------


def read_text(arg: str) -> str:
    """The argument as given, or stdin when it is '-' (decoded as UTF-8 whatever the terminal's encoding)."""
    if arg != "-":
        return arg
    return sys.stdin.buffer.read().decode("utf-8", errors="replace")


def read_file(name: str, parse_timeout_s: float = 60.0, *, ocr: bool | None = None) -> str:
    """A file's text ('-': stdin). Plain text is read here; PDF, DOCX and HTML are parsed in a worker
    process with a time limit, as the indexer does, so a broken file cannot hang the command; ``ocr``: read
    scanned pages and images by OCR (the documents setting), as the indexer does."""
    from engine.errors import NotFoundError
    from engine.rag.loaders import decode_text, kind_for

    if name == "-":
        return read_text("-")
    path = Path(name).expanduser()
    if not path.is_file():
        raise NotFoundError(f"There is no file '{name}'.")
    if kind_for(path) in _PLAIN_KINDS:
        return decode_text(path.read_bytes(), path.name)
    from engine.rag.isolation import ParsePool

    with ParsePool(1, timeout_s=parse_timeout_s, ocr=ocr) as pool:
        outcome = pool.parse(path)
    if outcome.error is not None:
        raise outcome.error
    return "\n\n".join(section.text for section in outcome.document.sections)


def sampling_for(
    services: Services, *, max_tokens: int | None = None, temperature: float | None = None, seed: int | None = None
) -> SamplingParams | None:
    """The settings' sampling with this call's options in it; None when no option was given."""
    options = {
        k: v for k, v in (("max_tokens", max_tokens), ("temperature", temperature), ("seed", seed)) if v is not None
    }
    if not options:
        return None
    return dataclasses.replace(services.assistant.settings.sampling, **options)


# The model and the documents -----------------------------------------------------------


def load_model(services: Services, model: str | None) -> None:
    """Load the model (``model``: a GGUF file for this command only), drawing a progress line on
    stderr when it is a terminal."""
    from engine.runtime.types import LoadProgress

    show = sys.stderr.isatty()

    def on_event(event) -> None:
        if show and isinstance(event, LoadProgress):
            print(f"\rLoading model… {event.fraction:4.0%}", end="", file=sys.stderr, flush=True)

    try:
        services.load_model(on_event, override_path=model).result()
    finally:
        if show:
            print("\r\033[K", end="", file=sys.stderr, flush=True)


class Warming:
    """The document index opening and the embedding model loading on a thread of their own, while the
    model loads: the cold path of `locus ask --docs`. The question is embedded in this process when the
    model is one engine/rag/query_encoder.py covers (the bundled one: ~0.2 s to load), else by the
    embedding worker, whose start (torch and the model) is then the longest part. What it waits for is
    said on stderr (stdout stays the answer's): on a terminal a line redrawn in place and wiped before
    the answer, otherwise one line."""

    def __init__(self, services: Services):
        from app.ask_handoff import StatusLine

        self.services = services
        self.line = StatusLine()
        if not self.line.tty:
            self.line.show(WAITING_FOR_EMBEDDER)
        self.thread = threading.Thread(target=self._run, name="warm-documents", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        from engine.errors import EngineError
        from engine.rag.embed import Embedder

        try:
            library = self.services.open_library()
            if isinstance(library.embedder, Embedder) and library.embedder.query_encoder() is None:
                # A model the in-process question encoder does not cover: start the worker (torch and the
                # model load) and run it once: its first text costs more than the next (torch sets itself
                # up), and the question is the next.
                library.embedder.embed(["Locus"])
        except (EngineError, OSError):
            pass  # the question meets the same problem and says it in words

    def wait(self) -> None:
        """Until the documents and the embedding model are ready (or failed)."""
        if self.thread.is_alive() and self.line.tty:
            self.line.show(WAITING_FOR_EMBEDDER)
        self.thread.join()
        self.line.clear()


WAITING_FOR_EMBEDDER = "Loading the embedding model…"


def open_documents_if_used(services: Services, conversation_id: int | None) -> None:
    """A conversation that answers from documents needs the index open before its next question."""
    if conversation_id is not None and services.history.conversation(conversation_id).uses_documents:
        services.open_library()


# Running an answer -------------------------------------------------------------------


@contextlib.contextmanager
def ctrl_c_cancels(cancel: Callable[[], None]) -> Iterator[None]:
    """While an answer streams, Ctrl-C stops the answer (which then ends as usual), not the program."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda *_: cancel())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def write_out(text: str) -> None:
    """Some of an answer, on stdout at once."""
    sys.stdout.write(text)
    sys.stdout.flush()


def follow_answer(
    handle,
    on_text: Callable[[str], None] = write_out,
    *,
    on_progress: Callable[[Progress], None] | None = None,
    citations: list | None = None,
    approvals: TerminalApprovals | None = None,
    tool_lines: ToolLines | None = None,
) -> AnswerEnded:
    """Follow one answer (an ``engine.answering.AnswerHandle``) to its end: its text to ``on_text`` as it
    comes, its progress to ``on_progress``, its sources into ``citations``, its tool calls and results to
    ``tool_lines`` (stderr by default), each approval it waits for to ``approvals`` (none: every call that
    needs one is denied); Ctrl-C cancels it (what was said is kept). The one place the terminal reads an
    answer's events (engine/answer.py)."""
    lines = tool_lines or ToolLines()
    with ctrl_c_cancels(handle.cancel):
        for event in handle.events():
            if isinstance(event, TextDelta):
                lines.text_resumes()
                on_text(event.text)
            elif isinstance(event, Progress) and on_progress is not None:
                on_progress(event)
            elif isinstance(event, ToolCallStarted):
                lines.started(event)
            elif isinstance(event, ApprovalNeeded):
                approval = approvals.ask(event, handle) if approvals is not None else "deny"
                if approval is not None:
                    handle.approve(event.call.id, approval)
            elif isinstance(event, ToolCallEnded):
                lines.ended(event)
            elif isinstance(event, Cited) and citations is not None:
                citations.extend(event.citations)
            elif isinstance(event, AnswerEnded):
                return event
    raise RuntimeError("an answer's events ended without its last event")


# Tools -------------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def plain(text: str, limit: int | None = None) -> str:
    """Untrusted text (a tool's arguments or result) made safe for a terminal: control characters, escape
    sequences and bidirectional overrides shown as escapes; cut at ``limit`` characters."""
    if limit is not None and len(text) > limit:
        text = text[:limit] + f"… [{len(text) - limit:,} more characters]"
    return _CONTROL.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), text)


def describe_call(call) -> str:
    """A call as one line: name and arguments (as JSON)."""
    try:
        arguments = json.dumps(call.arguments, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError):
        arguments = call.raw or "?"
    return f"{plain(call.name)} {plain(arguments, 400)}"


class ToolLines:
    """Each tool call and its result, on stderr as they happen (plain text only)."""

    RESULT_CHARS = 600  # the most of a result shown (the model gets more: the settings' result_max_chars)

    def __init__(self, out=None):
        self.out = out
        self._mid_line = False  # answer text was written since the last tool line

    def _print(self, text: str) -> None:
        out = self.out or sys.stderr
        if self._mid_line:
            sys.stdout.write("\n")
            sys.stdout.flush()
            self._mid_line = False
        print(text, file=out, flush=True)

    def text_resumes(self) -> None:
        self._mid_line = sys.stdout.isatty()  # on a terminal, a tool line starts on a line of its own

    def started(self, event: ToolCallStarted) -> None:
        self._print(f"[tool {event.call.id}] {describe_call(event.call)}")

    def ended(self, event: ToolCallEnded) -> None:
        r = event.result
        cut = " (truncated)" if r.truncated else ""
        self._print(
            f"[tool {plain(r.call_id)}] {r.status} in {r.duration_s:.2f} s{cut}:\n{plain(r.text, self.RESULT_CHARS)}"
        )


_APPROVAL_WORDS = {
    "o": "once",
    "once": "once",
    "c": "conversation",
    "conversation": "conversation",
    "d": "deny",
    "deny": "deny",
    "n": "deny",
    "no": "deny",
}


class TerminalApprovals:
    """Asks on the terminal whether a tool call may run: [o]nce / [c]onversation / [d]eny. ``yes``: every call
    of this run is allowed once without asking (``--yes``). End of input denies; Ctrl-C stops the answer."""

    def __init__(self, *, yes: bool = False, read_line: Callable[[], str] | None = None):
        self.yes = yes
        self._read_line = read_line or _read_stdin_line

    def ask(self, event: ApprovalNeeded, handle) -> str | None:
        """The approval for one call (None: the answer was stopped instead)."""
        if self.yes:
            print(f"[tool {event.call.id}] allowed by --yes", file=sys.stderr, flush=True)
            return "once"
        while True:
            print(
                f"Allow {describe_call(event.call)}? [o]nce / [c]onversation / [d]eny: ",
                end="",
                file=sys.stderr,
                flush=True,
            )
            try:
                with _interruptible():
                    line = self._read_line()
            except KeyboardInterrupt:
                print(file=sys.stderr)
                handle.cancel()
                return None
            if not line:  # end of input: nobody to ask
                print("\n(no answer: denied)", file=sys.stderr, flush=True)
                return "deny"
            choice = _APPROVAL_WORDS.get(line.strip().lower())
            if choice is not None:
                return choice


def _read_stdin_line() -> str:
    return sys.stdin.readline()


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """Ctrl-C interrupts a prompt (which ``ctrl_c_cancels`` would otherwise leave waiting on its read)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def exit_code(ended: AnswerEnded, *, show_stats: bool = False) -> int:
    """Say how a finished answer ended (on stderr) and return the command's exit code for it."""
    if ended.failed:
        print(f"locus: {ended.error.user_text()}", file=sys.stderr)
        return EXIT_ERROR
    if show_stats:
        for key, value in ended.stats.to_dict().items():
            print(f"{key}: {value}", file=sys.stderr)
    if ended.cancelled:
        print("[stopped]", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK


def print_sources(citations: list, retrieval, out=None) -> None:
    """Every passage an answer from documents was given, the strongest evidence first (those the answer
    rests on, then the rest by retrieval rank), each marked when the answer rests on it; when it rests on
    none, it says so. With no passage at all, a word that nothing matched the question. ``out``: where to
    (stdout when None)."""
    from engine.rag.cite import ranked_sources

    passages = retrieval.passages if retrieval is not None else ()
    if not passages and not citations:
        if retrieval is not None:
            print("\n(No passage in the documents matched this question.)", file=out)
        return
    print("\nSources:", file=out)
    sources = ranked_sources(passages, citations)  # (an answer's Cited already is: ranking it again keeps it)
    for source in sources:
        mark = "  (the answer rests on it)" if source.supported else ""
        print(f"[{source.number}] {plain(source_place(source.passage), 300)}{mark}", file=out)
        print(f"    \u201c{plain(source.quote, 400)}\u201d", file=out)
    if not any(s.supported for s in sources):
        print("(The answer may not rest on these passages: none of its sentences matched one of them.)", file=out)


def print_passages(retrieval) -> None:
    """The passages found for a question, best first, without an answer (`locus ask --passages`)."""
    from engine.rag.cite import opening

    if not retrieval.passages:
        print("(No passage in the documents matched this question.)")
        return
    for rank, p in enumerate(retrieval.passages, start=1):
        print(f"[{rank}] {plain(source_place(p), 300)}")
        print(f"    {plain(opening(p.text), 400)}")


def source_place(passage) -> str:
    """'path, page 3' for a source list."""
    return ", ".join(x for x in (passage.path, passage.location()) if x)


# Tasks -------------------------------------------------------------------------------


class ProgressLine:
    """A task's progress on stderr: one line redrawn in place on a terminal, a line per step otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.drawn = False

    def show(self, event: Progress) -> None:
        if event.done == 0 and not self.tty:
            return  # a stage starting: its first step says as much
        line = f"{event.stage} {event.done}/{event.total}"
        if self.tty:
            print(f"\r\033[K{line}…", end="", file=sys.stderr, flush=True)
            self.drawn = True
        else:
            print(line, file=sys.stderr, flush=True)

    def clear(self) -> None:
        if self.drawn:
            print("\r\033[K", end="", file=sys.stderr, flush=True)
            self.drawn = False


def start_task(services: Services, fn, name: str, *, sampling: SamplingParams | None = None):
    """Start a task function (``fn(ctx) -> str``) as an answer that is not saved (no history, no text in
    its trace); the settings' sampling unless ``sampling`` is given, and the tasks.token_healing setting."""
    return services.assistant.run_task(fn, name, name=name, save=False, sampling=sampling)


def stream_task(
    services: Services, fn, name: str, *, sampling: SamplingParams | None = None, ends_line: bool = False
) -> tuple[AnswerEnded, int]:
    """Run a task with its output to stdout and its progress to stderr until it ends; Ctrl-C cancels.

    Returns how it ended and the exit code. ``ends_line``: the output already ends its last line.
    """
    progress = ProgressLine()

    def on_text(text: str) -> None:
        progress.clear()
        write_out(text)

    ended = follow_answer(start_task(services, fn, name, sampling=sampling), on_text, on_progress=progress.show)
    progress.clear()
    if not (ends_line and ended.complete and ended.text.endswith("\n")):
        sys.stdout.write("\n")
    sys.stdout.flush()
    return ended, exit_code(ended)
