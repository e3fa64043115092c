"""`locus ask --tools` as a user runs it: the installed command, the bundled model, the built-in clock and
the test MCP server as a real process; approvals answered on stdin."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from app.cli.common import plain
from engine.history.store import HistoryStore
from tests.app.helpers import locus

pytestmark = pytest.mark.slow

SERVER = Path(__file__).resolve().parents[1] / "tools_servers" / "server.py"
ASK_NOTHING_TRUSTED = "[tools]\ntrusted = []\n"
QUESTION = "What time is it?"


def saved(home: Path):
    store = HistoryStore(home / "locus.sqlite3")
    try:
        return [(c, store.messages(c.id)) for c in store.conversations()]
    finally:
        store.close()


def calls_of(message) -> list[dict]:
    return message.stats["details"]["tool_calls"]


def ask(home: Path, *args: str, stdin: str | None = "", config: str = ASK_NOTHING_TRUSTED):
    (home / "config.toml").write_text(config, encoding="utf-8")
    return locus(home, "ask", "--max-tokens", "80", "--seed", "1", "--temperature", "0", *args, stdin=stdin)


def test_a_call_asked_on_the_terminal_and_allowed_once(tmp_path):
    result = ask(tmp_path, "--tools", "current_time", "--tool-choice", "required", QUESTION, stdin="o\n")
    assert result.returncode == 0, result.stderr
    assert "Allow current_time {" in result.stderr and "[o]nce / [c]onversation / [d]eny" in result.stderr
    assert "] current_time {" in result.stderr and "] ok in " in result.stderr  # the call, then its result
    [(conversation, messages)] = saved(tmp_path)
    assert conversation.tools == ["current_time"] and conversation.approved_tools == ()
    first = calls_of(messages[1])[0]
    assert (first["name"], first["status"], first["approval"]) == ("current_time", "ok", "once")
    assert first["result"].splitlines()[0] in result.stderr
    assert messages[1].content.strip() == result.stdout.strip()


def test_a_denied_call_never_runs(tmp_path):
    result = ask(tmp_path, "--tools", "current_time", "--tool-choice", "required", QUESTION, stdin="d\n")
    assert result.returncode == 0, result.stderr
    assert "] denied in " in result.stderr and "did not allow" in result.stderr
    [(_, messages)] = saved(tmp_path)
    assert calls_of(messages[1])[0]["status"] == "denied"


def test_allowed_for_the_conversation_is_not_asked_again(tmp_path):
    first = ask(tmp_path, "--tools", "current_time", "--tool-choice", "required", QUESTION, stdin="c\n")
    assert first.returncode == 0, first.stderr
    [(conversation, _)] = saved(tmp_path)
    assert conversation.approved_tools == ("current_time",)
    again = ask(tmp_path, "--conversation", str(conversation.id), "--tool-choice", "required", "And the date?")
    assert again.returncode == 0, again.stderr
    assert "Allow" not in again.stderr and "] current_time {" in again.stderr
    [(_, messages)] = saved(tmp_path)
    call = calls_of(messages[3])[0]
    assert call["approval"] == "conversation" and call["status"] in ("ok", "error"), call  # it ran, unasked


def test_yes_allows_this_runs_calls_and_no_answer_denies(tmp_path):
    yes = ask(tmp_path, "--tools", "current_time", "--tool-choice", "required", "--yes", QUESTION, stdin=None)
    assert yes.returncode == 0, yes.stderr
    assert "allowed by --yes" in yes.stderr and "Allow" not in yes.stderr and "] ok in " in yes.stderr
    [(conversation, _)] = saved(tmp_path)
    assert conversation.approved_tools == ()  # --yes is for this run only
    unanswered = ask(tmp_path, "--tools", "current_time", "--tool-choice", "required", QUESTION, stdin="")
    assert unanswered.returncode == 0, unanswered.stderr
    assert "(no answer: denied)" in unanswered.stderr and "] denied in " in unanswered.stderr


def test_trusted_tools_run_without_asking_and_unknown_ones_are_refused(tmp_path):
    trusted = ask(tmp_path, "--tools", "current_time", "--tool-choice", "required", QUESTION, stdin=None, config="")
    assert trusted.returncode == 0, trusted.stderr  # current_time is trusted by default
    assert "Allow" not in trusted.stderr and "] ok in " in trusted.stderr
    unknown = ask(tmp_path, "--tools", "current_tim", QUESTION, stdin=None)
    assert unknown.returncode == 1 and "current_time" in unknown.stderr and "Traceback" not in unknown.stderr
    assert len(saved(tmp_path)) == 1  # the refused question left nothing behind


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status  # a zombie has ended


def test_mcp_servers_do_not_outlive_the_command(tmp_path):
    server = tmp_path / "orphan_check_server.py"  # a path of this test's own, to find its processes by
    shutil.copy(SERVER, server)
    (tmp_path / "mcp.json").write_text(
        json.dumps({"mcpServers": {"test": {"command": sys.executable, "args": [str(server)]}}}), encoding="utf-8"
    )
    result = ask(
        tmp_path,
        "--tools",
        "test/spawn_child",
        "--tool-choice",
        "test/spawn_child",
        "--yes",
        "Start a helper.",
        stdin=None,
    )
    assert result.returncode == 0, result.stderr
    [(_, messages)] = saved(tmp_path)
    call = calls_of(messages[1])[0]
    assert call["name"] == "test/spawn_child" and call["status"] == "ok", call
    grandchild = int(call["result"].strip())
    assert not alive(grandchild)  # the server's own child went with it
    left = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if str(server).encode() in cmdline and alive(int(proc.name)):
                left.append(proc.name)
    assert left == []


def test_tool_text_cannot_drive_the_terminal():
    hostile = "ok\x1b[2J\x1b]0;owned\x07 \u202etxt.exe\nnext\tline"
    shown = plain(hostile)
    assert "\x1b" not in shown and "\x07" not in shown and "\u202e" not in shown
    assert shown == "ok\\x1b[2J\\x1b]0;owned\\x07 \\u202etxt.exe\nnext\tline"
    assert plain("x" * 50, 10) == "x" * 10 + "… [40 more characters]"
    assert os.linesep not in plain("a\rb")
