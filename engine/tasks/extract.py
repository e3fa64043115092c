"""Extract to JSON: the facts of a text as a JSON document that follows the user's JSON schema.

The schema is checked first (valid JSON, a valid JSON schema, and only features
guided output can honour), then turned into a grammar that restricts every token
the model writes, so the output always parses and validates; it is still
validated before it is returned, pretty-printed.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import TYPE_CHECKING

from engine.errors import GenerationError, InvalidRequestError
from engine.runtime.constrain import schema_to_grammar, validation_error

if TYPE_CHECKING:  # importing the runtime would slow every CLI command that only reads SCHEMA_EXAMPLES
    from engine.tasks.base import TaskContext

TEMPLATE = "extract_json"
# Extraction copies facts; a low temperature keeps the small models from inventing them.
_MAX_TEMPERATURE = 0.3
_DEFAULT_MAX_TOKENS = 1024

SCHEMA_EXAMPLES: dict[str, dict] = {
    "Contact": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "email": {"type": "string"},
            "phone": {"type": "string"},
            "company": {"type": "string"},
        },
        "required": ["name", "email"],
    },
    "Meeting": {
        "type": "object",
        "properties": {
            "title": {"type": "string"},
            "date": {"type": "string", "format": "date"},
            "location": {"type": "string"},
            "attendees": {"type": "array", "items": {"type": "string"}, "maxItems": 20},
        },
        "required": ["title", "date", "attendees"],
    },
    "Sentiment": {
        "type": "object",
        "properties": {
            "sentiment": {"enum": ["positive", "negative", "neutral", "mixed"]},
            "key_phrases": {"type": "array", "items": {"type": "string", "maxLength": 60}, "maxItems": 5},
        },
        "required": ["sentiment", "key_phrases"],
    },
}


def parse_schema(schema: dict | str) -> dict:
    """The schema as a dict: JSON text is parsed, with the place of a syntax error named."""
    if isinstance(schema, str):
        if not schema.strip():
            raise InvalidRequestError("There is no JSON schema.", hint="Pick an example schema or write one.")
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as exc:
            raise InvalidRequestError(
                f"The schema is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}."
            ) from exc
    if not isinstance(schema, dict):
        raise InvalidRequestError('A JSON schema must be a JSON object, like {"type": "object", ...}.')
    return schema


def extract_json(ctx: TaskContext, text: str, schema: dict | str, max_tokens: int | None = None) -> str:
    """The facts of ``text`` as pretty-printed JSON valid under ``schema``; streams the raw JSON as it comes."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidRequestError("There is no text to extract from.")
    schema = parse_schema(schema)
    grammar = schema_to_grammar(schema)  # refuses invalid schemas and unsupported features, in words
    if max_tokens is None:
        max_tokens = max(ctx.sampling.max_tokens, min(_DEFAULT_MAX_TOKENS, ctx.n_ctx // 2))
    sampling = replace(
        ctx.sampling, temperature=min(ctx.sampling.temperature, _MAX_TEMPERATURE), max_tokens=max_tokens, stop=()
    )
    messages = ctx.render(TEMPLATE, text=text, schema=json.dumps(schema, ensure_ascii=False))
    used_before = ctx.stats.completion_tokens
    raw = ctx.generate(messages, stream=True, grammar=grammar, sampling=sampling, token_healing=False)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        # The grammar only lets complete JSON end the answer, so broken JSON means it was cut short.
        if ctx.stats.completion_tokens - used_before >= max_tokens:
            raise GenerationError(
                f"The model used all {max_tokens} tokens it may write before the JSON was complete.",
                hint="Raise the maximum answer length (max tokens), or use a schema with fewer or shorter fields.",
                detail=raw[-200:],
            ) from exc
        raise GenerationError(
            "The context window filled up before the JSON was complete.",
            hint="Shorten the text, or load the model with a larger context.",
            detail=f"{exc}; {raw[-200:]}",
        ) from exc
    problem = validation_error(schema, value)
    if problem is not None:
        raise GenerationError(f"The model's JSON does not follow the schema: {problem}.", detail=raw[-200:])
    return json.dumps(value, indent=2, ensure_ascii=False)
