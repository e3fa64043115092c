"""`locus ask` handed to the running Locus: the answer without the terminal's cold start.

When the window runs, a terminal question goes to it over the single-instance socket
(app/single_instance.py) and its answer streams back: the running Locus has the model
loaded and the embedding model warm, so the first words come in a fraction of a second
instead of after loading both. What the terminal prints is what `locus ask` prints
locally: the answer on stdout as it comes, how it ended on stderr, then the sources.

Who may ask. The socket lives in a folder only this user can enter; the running Locus
also asks the kernel who is at the other end (SO_PEERCRED: the same user only) and
wants the token it wrote, readable by this user only, to its data folder when it began
listening. The terminal, in turn, hands its question only to the process that holds
the data folder's lock, of this user. A handed-off question can do no more than the
command could: it is a question (no tools, no other model, no approvals: those
commands run locally), saved or not as ``--no-history`` says, at normal priority
behind the window's own chat (the runtime's queue, as local API requests).

The wire: the terminal sends ``ask TOKEN`` and one JSON line (the question and its
options); Locus answers with JSON lines: ``accepted``, then ``text``/``status``/
``stderr`` pieces, then ``end`` (outcome, error, stats, the sources as printed). The
terminal may send ``cancel`` (Ctrl-C); closing the connection cancels too.
"""

from __future__ import annotations

import hmac
import io
import json
import logging
import os
import secrets
import signal
import socket
import struct
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

TOKEN_FILE = "handoff.token"
COMMAND = "ask"
REQUEST_LIMIT = 4 * 1024 * 1024  # bytes of one request (a question read from stdin may be long)
CONNECT_TIMEOUT_S = 2.0
LOCAL_ENV = "LOCUS_LOCAL"  # set (to anything but "" or "0"): `locus ask` never hands off


# The token ---------------------------------------------------------------------------


def write_token(data_dir: Path) -> str:
    """A new token in the data folder, readable by this user only (the running Locus, as it starts listening)."""
    token = secrets.token_hex(16)
    path = Path(data_dir) / TOKEN_FILE
    temporary = path.with_name(f".{TOKEN_FILE}.{os.getpid()}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as out:
        out.write(token)
    os.replace(temporary, path)
    return token


def remove_token(data_dir: Path, token: str) -> None:
    """Remove the token file when it is still ``token`` (at quit)."""
    if read_token(data_dir) == token:
        try:
            (Path(data_dir) / TOKEN_FILE).unlink()
        except OSError:
            pass


def read_token(data_dir: Path) -> str | None:
    try:
        text = (Path(data_dir) / TOKEN_FILE).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text or None


def token_matches(expected: str | None, given: str) -> bool:
    return bool(expected) and hmac.compare_digest(expected.encode(), given.encode())


# The request -------------------------------------------------------------------------


@dataclass(frozen=True)
class AskRequest:
    """What `locus ask` asks, as the running Locus receives it (every field checked)."""

    question: str
    conversation: int | None = None
    no_history: bool = False
    docs: bool = False
    collections: tuple[str, ...] = ()
    max_tokens: int | None = None
    temperature: float | None = None
    seed: int | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "question": self.question,
                "conversation": self.conversation,
                "no_history": self.no_history,
                "docs": self.docs,
                "collections": list(self.collections),
                "max_tokens": self.max_tokens,
                "temperature": self.temperature,
                "seed": self.seed,
            }
        )

    @classmethod
    def from_json(cls, line: bytes) -> AskRequest:
        """The request in ``line``; ValueError when it is not one."""
        data = json.loads(line.decode("utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not an object")

        def optional(key: str, kind: type | tuple[type, ...]):
            value = data.get(key)
            if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
                raise ValueError(f"{key} has the wrong type")
            return value

        def flag(key: str) -> bool:
            value = data.get(key, False)
            if not isinstance(value, bool):
                raise ValueError(f"{key} is not true or false")
            return value

        question = data.get("question")
        if not isinstance(question, str) or not question.strip():
            raise ValueError("no question")
        collections = data.get("collections") or []
        if not isinstance(collections, list) or not all(isinstance(c, str) for c in collections):
            raise ValueError("collections is not a list of names")
        temperature = optional("temperature", (int, float))
        return cls(
            question=question,
            conversation=optional("conversation", int),
            no_history=flag("no_history"),
            docs=flag("docs") or bool(collections),
            collections=tuple(collections),
            max_tokens=optional("max_tokens", int),
            temperature=None if temperature is None else float(temperature),
            seed=optional("seed", int),
        )


# The terminal's side -------------------------------------------------------------------


def wants_local(args) -> str | None:
    """Why this `locus ask` runs in this process rather than in the running Locus (None: it may hand off)."""
    if getattr(args, "local", False) or os.environ.get(LOCAL_ENV, "") not in ("", "0"):
        return "--local"
    if args.model:
        return "--model (another model file)"
    if args.tools:
        return "--tools (approvals are asked at this terminal)"
    if args.passages:
        return "--passages"
    return None


def request_for(args, question: str) -> AskRequest:
    return AskRequest(
        question=question,
        conversation=args.conversation,
        no_history=bool(args.no_history),
        docs=bool(args.docs or args.collection),
        collections=tuple(args.collection or ()),
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        seed=args.seed,
    )


def lock_holder(data_dir: Path) -> int:
    """The process id in the data folder's lock file when that process is alive (0 otherwise)."""
    try:
        first = (Path(data_dir) / "locus.lock").read_text(encoding="utf-8", errors="replace").split("\n", 1)[0]
        pid = int(first.strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return 0
    return pid


def peer(conn: socket.socket) -> tuple[int, int] | None:
    """(process id, user id) at the other end of a Unix socket, from the kernel (Linux; None elsewhere)."""
    if not sys.platform.startswith("linux"):
        return None
    size = struct.calcsize("3i")
    pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, size))
    return pid, uid


def connect(data_dir: Path) -> socket.socket | None:
    """A connection to the running Locus of this data folder, checked to be the lock's holder and of this
    user; None when none runs (or none that can be trusted answers)."""
    if os.name == "nt":
        return None  # a named pipe: the hand-off speaks Unix sockets only (the local path serves)
    holder = lock_holder(data_dir)
    if not holder:
        return None
    from app.instance_paths import socket_paths

    for path in socket_paths(data_dir):
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.settimeout(CONNECT_TIMEOUT_S)
        try:
            conn.connect(path)
        except OSError:
            conn.close()
            continue
        who = peer(conn)
        if who is not None and (who[1] != os.getuid() or who[0] != holder):
            log.warning("hand-off: process %s of user %s answered at %s, not Locus; not asking it", *who, path)
            conn.close()
            continue
        return conn
    return None


class _Lines:
    """JSON lines from a socket."""

    def __init__(self, conn: socket.socket):
        self.conn = conn
        self.buffer = b""

    def next(self) -> dict | None:
        while b"\n" not in self.buffer:
            try:
                chunk = self.conn.recv(65536)
            except OSError:
                return None
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        try:
            message = json.loads(line.decode("utf-8"))
        except ValueError:
            return None
        return message if isinstance(message, dict) else None


def hand_off(args, question: str, data_dir: Path) -> int | None:
    """Ask the running Locus and print its answer as `locus ask` would; the exit code, or None when no
    running Locus took the question (then the caller answers it here)."""
    from app.cli import EXIT_ERROR
    from app.cli.common import write_out

    if wants_local(args) is not None:
        return None
    token = read_token(data_dir)
    if token is None:
        return None
    conn = connect(data_dir)
    if conn is None:
        return None
    with conn:
        try:
            conn.sendall(f"{COMMAND} {token}\n{request_for(args, question).to_json()}\n".encode())
        except OSError:
            return None
        conn.settimeout(None)
        lines = _Lines(conn)
        first = lines.next()
        if first is None or first.get("t") != "accepted":
            why = (first or {}).get("why", "it closed the connection")
            log.warning("hand-off: the running Locus did not take the question (%s); answering here", why)
            return None
        status = StatusLine()
        previous = _cancel_on_ctrl_c(conn)
        try:
            while True:
                message = lines.next()
                if message is None:
                    status.clear()
                    print("\nlocus: Locus closed the connection before the answer ended.", file=sys.stderr)
                    return EXIT_ERROR
                kind, text = message.get("t"), message.get("s")
                if kind == "text" and isinstance(text, str):
                    status.clear()
                    write_out(text)
                elif kind == "status" and isinstance(text, str):
                    status.show(text)
                elif kind == "stderr" and isinstance(text, str):
                    status.clear()
                    print(text, file=sys.stderr, flush=True)
                elif kind == "end":
                    status.clear()
                    return _print_end(message, show_stats=args.stats)
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)


def _cancel_on_ctrl_c(conn: socket.socket):
    """Ctrl-C asks the running Locus to stop the answer (which then ends as usual); the previous handler."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def cancel(*_):
        try:
            conn.sendall(b'{"t": "cancel"}\n')
        except OSError:
            pass

    return signal.signal(signal.SIGINT, cancel)


def _print_end(message: dict, *, show_stats: bool) -> int:
    """What `locus ask` prints after an answer (chat.ask, common.exit_code, common.print_sources)."""
    from app.cli import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK

    sys.stdout.write("\n")
    sys.stdout.flush()
    outcome, error, stats = message.get("outcome"), message.get("error"), message.get("stats")
    code = EXIT_OK
    if outcome == "failed":
        print(f"locus: {error if isinstance(error, str) else 'the answer failed.'}", file=sys.stderr)
        code = EXIT_ERROR
    else:
        if show_stats and isinstance(stats, dict):
            for key, value in stats.items():
                print(f"{key}: {value}", file=sys.stderr)
        if outcome == "cancelled":
            print("[stopped]", file=sys.stderr)
            code = EXIT_INTERRUPTED
    sources = message.get("sources")
    if isinstance(sources, str) and sources:
        sys.stdout.write(sources)
        sys.stdout.flush()
    return code


class StatusLine:
    """What the terminal waits for, on stderr (stdout stays the answer's): on a terminal one line redrawn
    in place and wiped when the answer starts; otherwise a line per stage."""

    def __init__(self, out=None):
        self.out = out or sys.stderr
        self.tty = self.out.isatty()
        self.drawn = False

    def show(self, text: str) -> None:
        if self.tty:
            print(f"\r\033[K{text}", end="", file=self.out, flush=True)
            self.drawn = True
        else:
            print(text, file=self.out, flush=True)

    def clear(self) -> None:
        if self.drawn:
            print("\r\033[K", end="", file=self.out, flush=True)
            self.drawn = False


# The running Locus's side ----------------------------------------------------------------


def serve_ask(services, conn: socket.socket, received: bytes) -> None:
    """Answer one handed-off question on ``conn`` (a thread of the running Locus; ``received``: what
    arrived after the ``ask`` line)."""
    with conn:
        try:
            _serve(services, conn, received)
        except OSError as exc:  # the terminal went away
            log.info("hand-off: connection ended (%s)", exc)
        except Exception:
            log.exception("hand-off: the question failed")


def _send(conn: socket.socket, lock: threading.Lock, **message) -> None:
    data = (json.dumps(message, ensure_ascii=False) + "\n").encode("utf-8")
    with lock:
        conn.sendall(data)


def _serve(services, conn: socket.socket, received: bytes) -> None:
    from engine.answer import AnswerEnded, ApprovalNeeded, Cited, TextDelta, ToolCallEnded, ToolCallStarted
    from engine.errors import EngineError
    from engine.runtime.types import Priority

    conn.settimeout(10.0)
    buffer = received
    while b"\n" not in buffer and len(buffer) <= REQUEST_LIMIT:
        chunk = conn.recv(65536)
        if not chunk:
            return
        buffer += chunk
    conn.settimeout(None)
    lock = threading.Lock()
    line = buffer.split(b"\n", 1)[0]
    try:
        if len(line) > REQUEST_LIMIT:
            raise ValueError("too long")
        request = AskRequest.from_json(line)
    except ValueError as exc:
        log.warning("hand-off: refused a request that is not a question (%s)", exc)
        _send(conn, lock, t="refused", why="not a question")
        return
    _send(conn, lock, t="accepted")
    log.info("hand-off: a terminal asks (documents %s, saved %s)", request.docs, not request.no_history)
    try:
        handle = _start(services, request, conn, lock, Priority.NORMAL)
    except EngineError as exc:
        _send(conn, lock, t="end", outcome="failed", error=exc.user_text(), stats=None, sources=None)
        return
    threading.Thread(target=_read_cancels, args=(conn, handle), name="handoff-cancel", daemon=True).start()
    citations: list = []
    from app.cli.common import ToolLines

    tool_text = io.StringIO()
    tools = ToolLines(out=tool_text)
    for event in handle.events():
        if isinstance(event, TextDelta):
            _send(conn, lock, t="text", s=event.text)
        elif isinstance(event, Cited):
            citations.extend(event.citations)
        elif isinstance(event, ApprovalNeeded):  # only a saved conversation's tools get here: nobody to ask
            handle.approve(event.call.id, "deny")
            _send(conn, lock, t="stderr", s="(a tool call was denied: ask with --local to approve it here)")
        elif isinstance(event, ToolCallStarted | ToolCallEnded):
            (tools.started if isinstance(event, ToolCallStarted) else tools.ended)(event)  # type: ignore[arg-type]
            _send(conn, lock, t="stderr", s=tool_text.getvalue().rstrip("\n"))
            tool_text.seek(0)
            tool_text.truncate()
        elif isinstance(event, AnswerEnded):
            sources = None
            if request.docs and not request.no_history:
                from app.cli.common import print_sources

                out = io.StringIO()
                print_sources(citations, handle.retrieval, out=out)
                sources = out.getvalue()
            _send(
                conn,
                lock,
                t="end",
                outcome=event.outcome,
                error=event.error.user_text() if event.error is not None else None,
                stats=event.stats.to_dict(),
                sources=sources,
            )
            return


def _start(services, request: AskRequest, conn, lock, priority):
    """Start the answer as `locus ask` would (app/cli/chat.ask), at ``priority``."""
    from app.cli.common import open_documents_if_used, sampling_for

    sampling = sampling_for(services, max_tokens=request.max_tokens, temperature=request.temperature, seed=request.seed)
    assistant = services.assistant
    if request.no_history:
        return assistant.ask(request.question, sampling=sampling, save=False, priority=priority)
    if request.docs:
        if services.library is None:  # opened once; say so while it opens
            _send(conn, lock, t="status", s="Opening the documents in Locus…")
        services.open_library()
        return assistant.ask(
            request.question,
            request.conversation,
            collections=list(request.collections),
            sampling=sampling,
            priority=priority,
        )
    open_documents_if_used(services, request.conversation)
    return assistant.ask(request.question, request.conversation, sampling=sampling, priority=priority)


def _read_cancels(conn: socket.socket, handle) -> None:
    """The terminal's Ctrl-C (a ``cancel`` line) or its going away stops the answer."""
    lines = _Lines(conn)
    while True:
        message = lines.next()
        if message is None or message.get("t") == "cancel":
            handle.cancel()
            return
