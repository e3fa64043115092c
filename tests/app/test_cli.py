"""The `locus` command as a user runs it: a subprocess of the installed console script."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.history.store import HistoryStore
from engine.trace.store import TraceStore
from tests.app.helpers import locus


def conversations(home: Path):
    store = HistoryStore(home / "locus.sqlite3")
    try:
        return [(c, store.messages(c.id)) for c in store.conversations()]
    finally:
        store.close()


def test_version(tmp_path):
    result = locus(tmp_path, "--version")
    assert result.returncode == 0 and result.stdout.strip() == "locus 0.1.0"


def test_ask_streams_an_answer_and_saves_it(tmp_path):
    result = locus(tmp_path, "ask", "What colour is the sky?", "--seed", "1", "--max-tokens", "24")
    assert result.returncode == 0, result.stderr
    answer = result.stdout.strip()
    assert answer
    [(conversation, messages)] = conversations(tmp_path)
    assert conversation.title == "What colour is the sky?"
    assert [(m.role, m.status) for m in messages] == [("user", "complete"), ("assistant", "complete")]
    assert messages[1].content.strip() == answer


def test_ask_reads_stdin_and_can_skip_history(tmp_path):
    result = locus(tmp_path, "ask", "-", "--no-history", "--max-tokens", "8", "--stats", stdin="Say hi.\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() and "completion_tokens:" in result.stderr
    assert conversations(tmp_path) == []


def test_ask_continues_a_conversation(tmp_path):
    locus(tmp_path, "ask", "My cat is called Tom.", "--max-tokens", "8")
    [(conversation, _)] = conversations(tmp_path)
    result = locus(
        tmp_path, "ask", "What is my cat called?", "--conversation", str(conversation.id), "--max-tokens", "8"
    )
    assert result.returncode == 0, result.stderr
    [(_, messages)] = conversations(tmp_path)
    assert len(messages) == 4


def test_ask_with_a_corrupt_model_fails_clearly(tmp_path, corrupt_model):
    result = locus(tmp_path, "ask", "--model", str(corrupt_model), "hello")
    assert result.returncode == 1
    assert "could not load 'truncated.gguf'" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (("ask", "hello", "--conversation", "999"), "Conversation 999 does not exist"),
        (("ask", "   "), "The question is empty."),
    ],
)
def test_bad_requests_exit_non_zero_with_a_reason(tmp_path, args, message):
    result = locus(tmp_path, *args)
    assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr


def test_a_bad_config_value_is_reported_and_the_default_used(tmp_path):
    (tmp_path / "config.toml").write_text("[sampling]\nmax_tokens = -5\n", encoding="utf-8")
    result = locus(tmp_path, "ask", "hello", "--no-history")
    assert result.returncode == 0
    assert "sampling.max_tokens" in result.stderr and "a whole number from 1 to" in result.stderr


def test_chat_shares_saved_conversations(tmp_path):
    first = locus(tmp_path, "chat", stdin="Hello there\n/list\n/exit\n")
    assert first.returncode == 0, first.stderr
    assert "locus> " in first.stdout and "Hello there" in first.stdout  # the /list line shows the title
    [(conversation, messages)] = conversations(tmp_path)
    assert [m.role for m in messages] == ["user", "assistant"]
    again = locus(tmp_path, "chat", "--last", stdin="/title Greetings\n")  # ends on EOF
    assert again.returncode == 0, again.stderr
    assert "you> Hello there" in again.stdout  # the transcript of the resumed conversation
    assert conversations(tmp_path)[0][0].title == "Greetings"
    searched = locus(tmp_path, "chat", stdin="/search greet\n/open 999\n/exit\n")
    assert f"{conversation.id:5d}  Greetings" in searched.stdout
    assert "Conversation 999 does not exist" in searched.stderr


def test_ctrl_c_stops_the_answer_keeps_it_and_exits_130(tmp_path):
    import os
    import signal
    import subprocess

    from tests.app.helpers import LOCUS

    env = dict(os.environ, LOCUS_HOME=str(tmp_path))
    child = subprocess.Popen(
        [LOCUS, "ask", "Write a very long story about a lighthouse.", "--max-tokens", "2000", "--temperature", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        assert child.stdout.read(40)  # the answer is streaming
        child.send_signal(signal.SIGINT)
        _out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 130
    assert b"[stopped]" in err and b"Traceback" not in err
    [(_, messages)] = conversations(tmp_path)
    assert messages[1].status == "cancelled" and messages[1].content.strip()


def test_output_cut_short_by_the_reader_is_not_an_error(tmp_path):
    import os
    import subprocess

    from tests.app.helpers import LOCUS

    env = dict(os.environ, LOCUS_HOME=str(tmp_path))
    pipeline = subprocess.run(
        f"'{LOCUS}' ask 'Write a long story.' --max-tokens 400 | head -c 10",
        shell=True,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert "Traceback" not in pipeline.stderr and "BrokenPipe" not in pipeline.stderr


def test_locus_home_that_is_a_file_gets_a_message(tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    result = locus(not_a_folder, "ask", "hello")
    assert result.returncode == 1 and "Traceback" not in result.stderr and "locus:" in result.stderr


def files_holding(folder: Path, marker: str) -> list[str]:
    """Every file under the data folder whose raw bytes hold ``marker`` (databases, logs, caches, all)."""
    return sorted(
        str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and marker.encode() in p.read_bytes()
    )


def test_no_history_leaves_nothing_of_the_question_or_answer_on_disk(tmp_path):
    from engine.trace.store import TraceStore

    result = locus(
        tmp_path,
        "ask",
        "--no-history",
        "Repeat after me: snorkelwhale77 likes toast.",
        "--max-tokens",
        "16",
        "--temperature",
        "0",
    )
    assert result.returncode == 0, result.stderr
    assert files_holding(tmp_path, "snorkelwhale77") == []
    answer = result.stdout.strip()
    assert answer and files_holding(tmp_path, answer[:24]) == []
    assert conversations(tmp_path) == []
    # What was recorded is its timings and token counts: a trace with no text in it.
    store = TraceStore(tmp_path / "traces.sqlite3")
    try:
        (trace,) = store.list_traces()
        assert trace.output_tokens and trace.summary == ""
        for span in store.trace(trace.trace_id):
            assert not {"locus.prompt", "locus.response", "gen_ai.input.messages", "gen_ai.output.messages"} & set(
                span.attributes
            ), span.name
    finally:
        store.close()


def test_chat_delete_removes_the_conversation_and_its_traces_and_says_so(tmp_path):
    result = locus(tmp_path, "chat", stdin="Tell me about the platypus9 of Nowhere.\n/delete\n/list\n/exit\n")
    assert result.returncode == 0, result.stderr
    assert "Deleted conversation \u201cTell me about the platypus9 of Nowhere.\u201d and 1 trace." in result.stdout
    assert conversations(tmp_path) == []
    assert files_holding(tmp_path, "platypus9") == []


SAMPLING = "[sampling]\nmax_tokens = 9\ntemperature = 0.5\nseed = 3\n"


def requested_sampling(home: Path) -> list[tuple]:
    """(max_tokens, temperature, seed) of every generation the home's traces recorded, oldest first."""
    store = TraceStore(home / "traces.sqlite3")
    try:
        return [
            (a["gen_ai.request.max_tokens"], a["gen_ai.request.temperature"], a["gen_ai.request.seed"])
            for trace in sorted(store.list_traces(), key=lambda t: t.start)
            for a in (span.attributes for span in store.trace(trace.trace_id))
            if "gen_ai.request.max_tokens" in a
        ]  # the generation's span (not the question's)
    finally:
        store.close()


def test_ask_options_hold_for_that_question_only(tmp_path):
    (tmp_path / "config.toml").write_text(SAMPLING, encoding="utf-8")
    first = locus(tmp_path, "ask", "Count to ten.", "--temperature", "0", "--max-tokens", "5", "--seed", "7")
    assert first.returncode == 0, first.stderr
    second = locus(tmp_path, "ask", "Count to ten.")
    assert second.returncode == 0, second.stderr
    assert (tmp_path / "config.toml").read_text(encoding="utf-8") == SAMPLING
    assert requested_sampling(tmp_path) == [(5, 0.0, 7), (9, 0.5, 3)]


def test_ask_options_do_not_reach_the_next_question_in_the_same_process(locus_home, capsys):
    from app.cli import build_parser
    from app.cli.chat import ask
    from app.cli.common import load_model
    from app.services import build_services

    (locus_home / "config.toml").write_text(SAMPLING, encoding="utf-8")
    parser = build_parser()
    services = build_services()
    try:
        load_model(services, None)
        settings = services.assistant.settings
        for argv in (
            ["ask", "Count to ten.", "--max-tokens", "5", "--temperature", "0", "--seed", "7"],
            ["ask", "Count to ten."],
            ["ask", "Count to ten.", "--no-history", "--max-tokens", "4"],
            ["ask", "Count to ten.", "--no-history"],
        ):
            args = parser.parse_args(argv)
            assert ask(services, args, args.question) == 0, capsys.readouterr().err
        assert services.assistant.settings is settings
    finally:
        services.close()
    assert requested_sampling(locus_home) == [(5, 0.0, 7), (9, 0.5, 3), (4, 0.5, 3), (9, 0.5, 3)]


def test_python_m_app_cli_is_the_locus_command(tmp_path):
    import os
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "--version"],
        capture_output=True,
        text=True,
        env=dict(os.environ, LOCUS_HOME=str(tmp_path)),
        timeout=60,
    )
    assert result.returncode == 0 and result.stdout.strip() == "locus 0.1.0"


def test_the_frozen_apps_worker_flag_starts_its_worker(model_path):
    """The frozen app starts its helpers as `locus --grammar-check-worker` (and --parse-worker, --embed-worker)."""
    import json
    import subprocess

    from tests.app.helpers import LOCUS

    request = json.dumps({"model": model_path, "grammar": 'root ::= "yes" | "no"', "limit_s": 60})
    result = subprocess.run(
        [LOCUS, "--grammar-check-worker"], input=request, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["stage"] for line in result.stdout.splitlines()] == ["loaded", "checked"]
