"""`locus ask` with Locus running: the running app (real, offscreen, its own LOCUS_HOME) answers and the
terminal prints what the local path prints; with nothing running, the terminal answers itself and says on
stderr what it waits for; a connection without the token is refused."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from app.ask_handoff import TOKEN_FILE
from app.single_instance import socket_paths
from tests.app.helpers import LOCUS, locus
from tests.app.test_single_instance import STARTED, log_text, start_first, stop, wait_for_log


def start_app(home: Path):
    """The real Locus window (offscreen) on ``home``, once it says it started."""
    starts = log_text(home).count(STARTED)
    app = start_first(home)
    wait_for_log(home, STARTED, app, count=starts + 1)
    return app


QUESTION = "When does the ferry leave?"
ASK = ("ask", "--docs", "--max-tokens", "12", "--temperature", "0", "--seed", "7", QUESTION)
HANDED = "hand-off: a terminal asks"


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A data folder with one indexed document (indexed by the real `locus index`)."""
    root = tmp_path_factory.mktemp("handoff")
    docs = root / "docs"
    docs.mkdir()
    (docs / "ferry.md").write_text("# Ferry\n\nThe ferry to the island leaves at 7:40 every morning from pier 3.\n")
    home = root / "home"
    home.mkdir()
    indexed = locus(home, "index", str(docs))
    assert indexed.returncode == 0, indexed.stderr
    return home


@pytest.fixture(scope="module")
def local_answer(home) -> str:
    """`locus ask --docs` with no Locus running: answered here, the wait said on stderr."""
    done = locus(home, *ASK)
    assert done.returncode == 0, done.stderr
    assert "Loading the embedding model…" in done.stderr
    assert HANDED not in log_text(home)
    return done.stdout


def test_with_nothing_running_the_terminal_answers_and_says_what_it_waits_for(local_answer):
    assert "Sources:" in local_answer and "ferry.md" in local_answer
    assert "Loading" not in local_answer  # stdout is the answer's alone


def test_the_running_locus_answers_a_terminal_question_as_the_terminal_would(home, local_answer):
    app = start_app(home)
    try:
        handed = locus(home, *ASK)
        assert handed.returncode == 0, handed.stderr
        assert HANDED in log_text(home)
        assert handed.stdout == local_answer  # the same answer (greedy) and the same sources, printed alike
        assert "Loading the embedding model" not in handed.stderr

        unsaved = locus(home, "ask", "--no-history", "--max-tokens", "4", "Say hi.")
        assert unsaved.returncode == 0, unsaved.stderr
        assert "hand-off: a terminal asks (documents False, saved False)" in log_text(home)

        stopped = ctrl_c_while_it_streams(home)
        assert stopped.returncode == 130 and b"[stopped]" in stopped.stderr and b"Traceback" not in stopped.stderr
        assert log_text(home).count(HANDED) == 3

        forced = locus(home, "--verbose", "ask", "--local", "--max-tokens", "4", "Say hi.")
        assert forced.returncode == 0, forced.stderr
        assert log_text(home).count(HANDED) == 3  # --local answered in the terminal
    finally:
        stop(app)


def ctrl_c_while_it_streams(home: Path) -> subprocess.CompletedProcess:
    """Ctrl-C at the terminal once a long handed-off answer streams."""
    env = dict(os.environ, LOCUS_HOME=str(home))
    args = [LOCUS, "ask", "--no-history", "--max-tokens", "2000", "--temperature", "1", "Write a long story."]
    child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        assert child.stdout is not None and child.stdout.read(20)  # the answer is streaming
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    return subprocess.CompletedProcess(args, child.returncode, out, err)


def test_a_connection_without_the_token_is_refused(home):
    app = start_app(home)
    try:
        assert (home / TOKEN_FILE).stat().st_mode & 0o077 == 0
        before = log_text(home).count(HANDED)
        path = next(socket_paths(home))
        request = json.dumps({"question": QUESTION, "docs": True})
        for first_line in ("ask 0123456789abcdef0123456789abcdef", "ask"):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(30)
                conn.connect(path)
                conn.sendall(f"{first_line}\n{request}\n".encode())
                reply = b""
                while chunk := conn.recv(4096):
                    reply += chunk
            assert json.loads(reply.decode().splitlines()[0])["t"] == "refused"
        assert "refused a terminal's question: a wrong token" in log_text(home)
        assert log_text(home).count(HANDED) == before
    finally:
        stop(app)
    assert not (home / TOKEN_FILE).exists()  # removed at quit
