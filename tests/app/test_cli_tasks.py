"""`locus translate` and `locus code` as a user runs them: the installed console script and the bundled model."""

from __future__ import annotations

import pytest

from tests.app.helpers import locus

CODE_BLOCK = "```python\nprint('hello')  # keep me\n```\n"
URL = "https://example.com/docs/start?lang=en"
NOTE = f"# Notes\n\nThe garden is green and the sky is blue.\n\n{CODE_BLOCK}\nSee {URL} for more.\n"


def test_translate_streams_a_file_with_code_and_urls_kept(tmp_path):
    path = tmp_path / "notes.md"
    path.write_text(NOTE, encoding="utf-8")
    result = locus(tmp_path, "translate", "--to", "French", str(path))
    assert result.returncode == 0, result.stderr
    assert CODE_BLOCK in result.stdout and URL in result.stdout and result.stdout.startswith("# ")
    assert not result.stdout.endswith("\n\n")  # the text's own last line end, not one more
    assert "from English (detected) to French" in result.stderr


def test_translate_reads_stdin_and_takes_the_source_language(tmp_path):
    result = locus(tmp_path, "translate", "--to", "de", "--from", "en", "-", stdin="The cat is asleep.\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() and "from English to German" in result.stderr


@pytest.mark.parametrize(
    "args, stdin, message",
    [
        (("translate", "--to", "Klingon", "-"), "Hello", "'Klingon' is not a language Locus translates."),
        (
            ("translate", "--to", "English", "-"),
            "The dog is in the garden with the cat.",
            "already seems to be in English",
        ),
        (("translate", "--to", "fr", "-"), "  \n", "There is no text to work on."),
        (("code", "explain", "missing.py:1-3"), None, "There is no file 'missing.py'."),
    ],
)
def test_bad_task_requests_exit_1_with_a_reason(tmp_path, args, stdin, message):
    result = locus(tmp_path, *args, stdin=stdin)
    assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr


def test_code_explain_streams_an_answer_for_a_line_range(tmp_path):
    path = tmp_path / "stats.py"
    path.write_text("import math\n\n\ndef mean(values):\n    return sum(values) / len(values)\n", encoding="utf-8")
    result = locus(tmp_path, "code", "explain", f"{path}:4-5", "--max-tokens", "24")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    bad = locus(tmp_path, "code", "explain", f"{path}:9-12")
    assert bad.returncode == 1 and "Lines 9-12 are not in 'stats.py', which has 5 lines." in bad.stderr


def test_extract_prints_json_that_validates_against_the_schema(tmp_path):
    import json

    import jsonschema

    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "city": {"type": "string"}},
        "required": ["name", "city"],
        "additionalProperties": False,
    }
    schema_file = tmp_path / "person.json"
    schema_file.write_text(json.dumps(schema), encoding="utf-8")
    result = locus(
        tmp_path, "extract", "-", "--schema", str(schema_file), stdin="Maria Lopez moved to Lisbon last spring.\n"
    )
    assert result.returncode == 0, result.stderr
    jsonschema.validate(json.loads(result.stdout), schema)
    refused = locus(tmp_path, "extract", "-", "--schema", '{"type": "integer", "minimum": 3}', stdin="Five.\n")
    assert refused.returncode == 1 and "minimum" in refused.stderr and "Traceback" not in refused.stderr


def generation_spans(home):
    """Every generation span in the home's trace store (the runtime's request, as it was submitted)."""
    from engine.trace.store import TraceStore

    store = TraceStore(home / "traces.sqlite3")
    try:
        return [
            (t.task, span)
            for t in store.list_traces()
            for span in store.trace(t.trace_id)
            if "gen_ai.request.max_tokens" in span.attributes
        ]
    finally:
        store.close()


@pytest.mark.parametrize("healing", [False, True])
def test_task_commands_follow_the_token_healing_setting(tmp_path, healing):
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text(
        f"[tasks]\ntoken_healing = {str(healing).lower()}\n\n[sampling]\ntemperature = 0.0\nmax_tokens = 8\n",
        encoding="utf-8",
    )
    code = tmp_path / "add.py"
    code.write_text("def add(a, b):\n    return a + b\n", encoding="utf-8")
    runs = [("summarize", "-"), ("code", "explain", str(code)), ("translate", "--to", "fr", "--from", "en", "-")]
    for args in runs:
        result = locus(home, *args, stdin="The ferry leaves the pier at eight every weekday morning.\n")
        assert result.returncode == 0, result.stderr
    spans = generation_spans(home)
    assert {task for task, _ in spans} == {"summarize", "code-explain", "translate"}
    assert [span.attributes.get("locus.request.token_healing") for _, span in spans] == [healing] * len(spans)


def test_code_max_tokens_holds_for_that_answer_only(locus_home, tmp_path, capsys):
    from app.cli import build_parser
    from app.cli.code import answer
    from app.cli.common import load_model
    from app.services import build_services

    (locus_home / "config.toml").write_text("[sampling]\nmax_tokens = 9\ntemperature = 0.0\n", encoding="utf-8")
    source = "def add(a, b):\n    return a + b\n"
    parser = build_parser()
    services = build_services()
    try:
        load_model(services, None)
        settings = services.assistant.settings
        for argv in (["code", "explain", "add.py", "--max-tokens", "5"], ["code", "explain", "add.py"]):
            assert answer(services, parser.parse_args(argv), source) == 0, capsys.readouterr().err
        assert services.assistant.settings is settings
    finally:
        services.close()
    requested = [span.attributes["gen_ai.request.max_tokens"] for _, span in generation_spans(locus_home)]
    assert sorted(requested) == [5, 9]
