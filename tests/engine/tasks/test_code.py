"""Code help: numbered line ranges, language guesses, and real answers from the bundled model and a real index."""

from __future__ import annotations

import pytest

from engine.answer import Progress, TextDelta
from engine.errors import InvalidRequestError, NotFoundError
from engine.models.bundled import BUNDLED_EMBEDDER_NAME, bundled_embedder_path
from engine.rag.library import DocumentLibrary
from engine.runtime.types import SamplingParams
from engine.tasks.code import (
    ACTIONS,
    code_help,
    code_messages,
    guess_language,
    load_code_range,
    number_lines,
    split_location,
)

SOURCE = "\n".join(f"line_{n} = {n}" for n in range(1, 13)) + "\n"
MEAN = "def mean(values):\n    return sum(values) / len(values)\n"


@pytest.fixture()
def source(tmp_path):
    path = tmp_path / "numbers.py"
    path.write_text(SOURCE, encoding="utf-8")
    return path


def test_a_range_keeps_its_line_numbers(source):
    part = load_code_range(source, "3-5")
    assert (part.text, part.first_line, part.last_line) == ("line_3 = 3\nline_4 = 4\nline_5 = 5", 3, 5)
    assert part.language == "python" and part.location == f"{source}:3-5"
    assert number_lines(part.text, part.first_line) == "3 | line_3 = 3\n4 | line_4 = 4\n5 | line_5 = 5"
    assert number_lines("a\nb", 9) == " 9 | a\n10 | b"
    assert load_code_range(source, "7").text == "line_7 = 7"
    assert load_code_range(source, "11-").text == "line_11 = 11\nline_12 = 12"
    assert load_code_range(source, "10-99").last_line == 12
    whole = load_code_range(source)
    assert (whole.first_line, whole.last_line, whole.location) == (1, 12, str(source))


@pytest.mark.parametrize(
    "lines, message", [("13", "which has 12 lines"), ("5-2", "not in"), ("0-3", "not in"), ("a-b", "not a range")]
)
def test_a_range_outside_the_file_is_refused(source, lines, message):
    with pytest.raises(InvalidRequestError, match=message):
        load_code_range(source, lines)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(NotFoundError, match="There is no file"):
        load_code_range(tmp_path / "gone.py")


def test_file_and_lines_are_split_from_one_argument(source):
    assert split_location("src/app.py:10-20") == ("src/app.py", "10-20")
    assert split_location("src/app.py:7") == ("src/app.py", "7")
    assert split_location("src/app.py") == ("src/app.py", None)
    assert split_location("notes:draft.py") == ("notes:draft.py", None)
    odd = source.with_name("data:12")  # a file whose name ends like a range is the file
    odd.write_text("x = 1\n", encoding="utf-8")
    assert split_location(str(odd)) == (str(odd), None)


@pytest.mark.parametrize(
    "path, code, language",
    [
        ("app.ts", "", "typescript"),
        ("main.rs", "", "rust"),
        ("Query.SQL", "", "sql"),
        (None, "#!/usr/bin/env python3\nprint(1)\n", "python"),
        (None, "#!/bin/sh\necho hi\n", "bash"),
        (None, MEAN, "python"),
        (None, "package main\n\nfunc main() {}\n", "go"),
        (None, "fn main() {\n    let mut x = 1;\n}\n", "rust"),
        (None, "const add = (a, b) => a + b;\n", "javascript"),
        (None, "#include <stdio.h>\nint main(void) { return 0; }\n", "c"),
        (None, "SELECT name FROM users WHERE id = 1;\n", "sql"),
        (None, "Just some words.", None),
    ],
)
def test_language_is_guessed_from_the_extension_or_the_code(path, code, language):
    assert guess_language(path, code) == language


def run(start, runtime, templates, task, max_tokens=24):
    handle = start(
        task, runtime, templates, SamplingParams(seed=3, temperature=0.0, max_tokens=max_tokens), name="code"
    )
    events = list(handle.events())
    return events, events[-1]


def test_every_action_has_a_template_asking_for_tagged_code_blocks(templates):
    for action in ACTIONS:
        template = templates.get(f"code_{action}")
        assert "language tag" in template.system and "```python" in template.examples[0][1]


def test_a_real_explanation_streams_over_numbered_lines(runtime, templates, tmp_path, start, context):
    path = tmp_path / "stats.py"
    path.write_text("import math\n\n\n" + MEAN, encoding="utf-8")
    code = load_code_range(path, "4-5")
    events, done = run(start, runtime, templates, lambda ctx: code_help(ctx, "explain", code))
    assert done.complete and done.text.strip(), done
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == done.text
    assert 0 < done.stats.completion_tokens <= 24
    ctx = context(runtime, templates, SamplingParams())
    messages, _ = code_messages(ctx, "explain", code)
    assert (
        f"Explain this python from {path}:4-5:\n\n```python\n4 | def mean(values):\n5 |     return"
        in messages[-1].content
    )


def test_unknown_actions_and_empty_code_are_refused(runtime, templates, start):
    for action, code, message in (
        ("refactor", MEAN, "Choose one of: explain, review, tests, fix"),
        ("explain", "  \n", "no code"),
    ):
        _, failed = run(start, runtime, templates, lambda ctx, action=action, code=code: code_help(ctx, action, code))
        assert failed.failed and message in failed.error.user_text()


def test_a_real_review_gets_related_code_from_the_index(runtime, templates, tmp_path, start, context):
    project = tmp_path / "project"
    project.mkdir()
    (project / "prices.py").write_text(
        'def parse_price(text):\n    """A price like \'12.50 EUR\' as cents; raises ValueError."""\n'
        "    amount, currency = text.split()\n    return round(float(amount) * 100)\n",
        encoding="utf-8",
    )
    (project / "cart.py").write_text(
        "from prices import parse_price\n\n\ndef cart_total(items):\n"
        "    return sum(parse_price(item) for item in items)\n",
        encoding="utf-8",
    )
    library = DocumentLibrary(tmp_path / "index", bundled_embedder_path(), BUNDLED_EMBEDDER_NAME)
    try:
        assert library.index([project]).wait(300).indexed == 2
        code = load_code_range(project / "cart.py", "4-5")
        ctx = context(runtime, templates, SamplingParams(max_tokens=32))
        messages, _ = code_messages(ctx, "review", code, library=library)
        prompt = messages[-1].content
        assert f"From {project / 'prices.py'}, lines 1–4:\n```python\n1 | def parse_price(text):" in prompt
        assert "4 |     return round(float(amount) * 100)\n```" in prompt
        assert f"From {project / 'cart.py'}" not in prompt  # the code under review is not repeated as context
        events, done = run(start, runtime, templates, lambda ctx: code_help(ctx, "review", code, library=library), 32)
        assert done.complete and done.text.strip(), done
        stages = [(e.stage, e.done) for e in events if isinstance(e, Progress)]
        assert stages == [("Searching the index", 0), ("Searching the index", 1)]
    finally:
        library.close()
