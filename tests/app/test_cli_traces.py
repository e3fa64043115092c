"""`locus traces` as a user runs it: the trace of a real `locus ask`, listed, shown and exported."""

from __future__ import annotations

import json
import re
import time

import pytest

from engine.trace.store import SpanRecord, TraceStore
from tests.app.helpers import locus

QUESTION = "What colour is the sky?"


@pytest.fixture(scope="module")
def asked(tmp_path_factory):
    """A home with the trace of one real question, the answer and the stats `ask --stats` printed."""
    home = tmp_path_factory.mktemp("home")
    result = locus(home, "ask", QUESTION, "--max-tokens", "8", "--seed", "1", "--stats")
    assert result.returncode == 0, result.stderr
    stats = dict(re.findall(r"^(\w+): (.*)$", result.stderr, re.MULTILINE))
    return home, result.stdout.strip(), int(stats["prompt_tokens"]), int(stats["completion_tokens"])


def only_trace(home) -> dict:
    result = locus(home, "traces", "list", "--json")
    assert result.returncode == 0, result.stderr
    [summary] = json.loads(result.stdout)
    return summary


def test_list_shows_the_question_as_a_table_and_as_json(asked):
    home, _, prompt_tokens, completion_tokens = asked
    table = locus(home, "traces", "list")
    assert table.returncode == 0, table.stderr
    header, row = table.stdout.splitlines()
    assert header.split()[:4] == ["ID", "STARTED", "TASK", "STATUS"]
    summary = only_trace(home)
    assert row.startswith(summary["trace_id"][:12] + " ") and QUESTION in row
    assert row.split()[3:5] == ["chat", "ok"] and f"{prompt_tokens}/{completion_tokens}" in row
    assert (summary["task"], summary["status"], summary["summary"]) == ("chat", "ok", QUESTION)
    assert (summary["input_tokens"], summary["output_tokens"]) == (prompt_tokens, completion_tokens)


def test_show_prints_the_span_tree_with_the_counts_ask_reported(asked):
    home, _, prompt_tokens, completion_tokens = asked
    result = locus(home, "traces", "show", only_trace(home)["trace_id"][:6])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].split()[:4] == ["Task", "chat", "status", "ok"]
    ask = next(i for i, line in enumerate(lines) if re.search(r"s  ask ", line))
    chat = next(i for i, line in enumerate(lines) if "└─ chat " in line)
    decode = next(i for i, line in enumerate(lines) if "└─ decode" in line)
    assert ask < chat < decode
    assert lines[decode].index("decode") > lines[chat].index("chat")  # a child of the generation span
    assert f"tokens {prompt_tokens} in / {completion_tokens} out" in lines[chat]
    assert f"tokens {completion_tokens} out" in lines[decode] and "tok/s" in lines[decode]
    assert "TTFT" in lines[ask] and "finish " in lines[ask]


def test_show_content_prints_the_question_and_the_answer(asked):
    home, answer, _, _ = asked
    result = locus(home, "traces", "show", only_trace(home)["trace_id"], "--content")
    assert result.returncode == 0, result.stderr
    question_at = result.stdout.index("── Question ──\n" + QUESTION)
    assert result.stdout.index(QUESTION, result.stdout.index("── Prompt")) > question_at  # the prompt holds it
    assert answer in result.stdout[result.stdout.index("── Response ──") :]


def test_export_writes_the_whole_trace_as_json(asked, tmp_path):
    home, _, _, _ = asked
    summary = only_trace(home)
    target = tmp_path / "trace.json"
    result = locus(home, "traces", "export", summary["trace_id"][:8], "-o", str(target))
    assert result.returncode == 0 and result.stdout == ""
    assert str(target) in result.stderr
    exported = json.loads(target.read_text(encoding="utf-8"))
    assert exported["trace_id"] == summary["trace_id"] and len(exported["spans"]) == summary["n_spans"]
    assert {"ask", "decode", "prompt_eval"} <= {s["name"] for s in exported["spans"]}


def test_an_unknown_id_fails_with_a_reason(asked):
    home, _, _, _ = asked
    result = locus(home, "traces", "show", "0123456789ab0123")
    assert result.returncode == 1 and "No trace has the id '0123456789ab0123'" in result.stderr
    assert "Traceback" not in result.stderr


def test_filters_that_match_nothing_say_so(asked):
    home, _, _, _ = asked
    result = locus(home, "traces", "list", "--since", "1h", "--task", "summarize")
    assert result.returncode == 0 and result.stdout == ""
    assert "No traces match" in result.stderr and "traces.sqlite3" in result.stderr


def test_a_fresh_home_has_no_traces_and_gets_no_trace_file(tmp_path):
    result = locus(tmp_path, "traces", "list")
    assert result.returncode == 0 and "No traces yet" in result.stderr
    assert not (tmp_path / "traces.sqlite3").exists()


def test_prune_applies_the_configured_retention(tmp_path):
    (tmp_path / "config.toml").write_text("[traces]\nretention_days = 7\n", encoding="utf-8")
    store = TraceStore(tmp_path / "traces.sqlite3")
    now = time.time_ns()
    for trace_id, start in (("a" * 32, now - 8 * 86400 * 10**9), ("b" * 32, now)):
        store.add_spans(
            [
                SpanRecord(
                    trace_id,
                    "1" * 16,
                    None,
                    "ask",
                    "internal",
                    start,
                    start + 10**6,
                    "unset",
                    "",
                    {"locus.task": "chat", "locus.summary": trace_id[0]},
                    [],
                )
            ]
        )
    store.close()
    result = locus(tmp_path, "traces", "prune")
    assert result.returncode == 0 and result.stdout.startswith("Deleted 1 trace ")
    assert only_trace(tmp_path)["trace_id"] == "b" * 32
