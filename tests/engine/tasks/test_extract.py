"""Extract to JSON on the real bundled model: valid output streamed, schema problems and cut-offs in words."""

from __future__ import annotations

import json

import pytest

from engine.answer import TextDelta
from engine.errors import GenerationError, InvalidRequestError
from engine.runtime.constrain import schema_to_grammar, validation_error
from engine.runtime.types import SamplingParams
from engine.tasks.extract import SCHEMA_EXAMPLES, extract_json, parse_schema

CONTACT_TEXT = "Hi, I'm Maria Lopez from Acme Corp. Write to maria@acme.com or call +1 555 0100."
GREEDY = SamplingParams(temperature=0.0, seed=1, max_tokens=256)


def run(start, runtime, templates, text, schema, **kwargs):
    handle = start(lambda ctx: extract_json(ctx, text, schema, **kwargs), runtime, templates, GREEDY)
    return list(handle.events())


@pytest.mark.slow
def test_extracts_valid_pretty_json_and_streams_it_as_it_comes(runtime, templates, start):
    schema = SCHEMA_EXAMPLES["Contact"]
    events = run(start, runtime, templates, CONTACT_TEXT, json.dumps(schema))  # as the schema editor sends it
    done = events[-1]
    assert done.complete, done.error
    value = json.loads(done.text)
    assert validation_error(schema, value) is None
    assert "Maria" in value["name"]
    assert done.text == json.dumps(value, indent=2, ensure_ascii=False)
    streamed = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert len([e for e in events if isinstance(e, TextDelta)]) > 3 and json.loads(streamed) == value


@pytest.mark.slow
def test_schema_problems_and_running_out_of_tokens_are_reported_in_words(runtime, templates, start):
    cases = [
        ('{"type": "object", "properties": {', "not valid JSON: "),
        ({"type": "objekt"}, "not valid"),
        ({"type": "object", "properties": {"age": {"type": "integer", "maximum": 120}}}, "'maximum'"),
    ]
    for schema, words in cases:
        failed = run(start, runtime, templates, CONTACT_TEXT, schema)[-1]
        assert failed.failed and isinstance(failed.error, InvalidRequestError)
        assert words in failed.error.message, failed.error.message
    failed = run(start, runtime, templates, " \n", SCHEMA_EXAMPLES["Contact"])[-1]
    assert failed.failed and "no text" in failed.error.message
    failed = run(start, runtime, templates, CONTACT_TEXT, SCHEMA_EXAMPLES["Contact"], max_tokens=5)[-1]
    assert failed.failed and isinstance(failed.error, GenerationError)
    assert "all 5 tokens" in failed.error.message and "max tokens" in failed.error.hint


def test_every_example_schema_is_usable_and_empty_input_is_refused():
    for name, schema in SCHEMA_EXAMPLES.items():
        assert parse_schema(json.dumps(schema)) == schema
        assert "root ::=" in schema_to_grammar(schema), name
    with pytest.raises(InvalidRequestError, match="no JSON schema"):
        parse_schema("  ")
    with pytest.raises(InvalidRequestError, match="JSON object"):
        parse_schema("[1]")


@pytest.mark.slow
def test_a_schema_llama_cpp_cannot_follow_fails_only_its_task(runtime, templates, start):
    """Schemas whose grammar would take the process down (a string no character can fill, nesting that
    overflows llama.cpp's parser) fail their own task in words; the next extraction works."""
    nothing = {
        "type": "object",
        "properties": {"code": {"type": "string", "pattern": r"^[^\x00-\U0010FFFF]$"}},
        "required": ["code"],
    }
    failed = run(start, runtime, templates, CONTACT_TEXT, nothing)[-1]
    assert failed.failed and isinstance(failed.error, InvalidRequestError)
    assert "grammar allows nothing here" in failed.error.message
    deep = {"type": "object", "properties": {"note": {"type": "string", "maxLength": 20_000}}}
    failed = run(start, runtime, templates, CONTACT_TEXT, deep)[-1]
    assert failed.failed and "20,000 deep" in failed.error.message
    assert "maxLength" in failed.error.hint
    done = run(start, runtime, templates, CONTACT_TEXT, SCHEMA_EXAMPLES["Contact"])[-1]
    assert done.complete and "Maria" in json.loads(done.text)["name"]
