"""Tool calling against `locus serve` as a user runs it: a real process, the bundled model, the official openai
client. A required tool call validates against its schema, the streamed deltas reassemble to the same call,
and a tool message round trip gets an answer. The server runs no tool itself."""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest

from tests.app.test_cli_serve import Served

pytestmark = pytest.mark.slow

LOOKUP = {
    "type": "function",
    "function": {
        "name": "lookup_order",
        "description": "Find an order by its number.",
        "parameters": {
            "type": "object",
            "properties": {
                "order_id": {"type": "string", "pattern": "^[A-Z]{2}[0-9]{4}$"},
                "include_items": {"type": "boolean"},
            },
            "required": ["order_id"],
        },
    },
}
QUESTION = [{"role": "user", "content": "Where is my order AB1234?"}]


def test_serve_returns_tool_calls_streams_them_and_answers_a_round_trip(tmp_path):
    served = Served(tmp_path, "--port", "0")
    try:
        client = openai.OpenAI(base_url=served.url, api_key="unused", max_retries=0, timeout=300)
        model = client.models.list().data[0].id
        ask = dict(
            model=model,
            messages=QUESTION,
            tools=[LOOKUP],
            tool_choice="required",
            temperature=0,
            max_tokens=160,
            seed=5,
        )

        reply = client.chat.completions.create(**ask)
        choice = reply.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
        calls = [(c.function.name, json.loads(c.function.arguments)) for c in choice.message.tool_calls]
        for name, arguments in calls:
            assert name == "lookup_order"
            jsonschema.validate(arguments, LOOKUP["function"]["parameters"])

        pieces: dict[int, dict] = {}
        finish = None
        for chunk in client.chat.completions.create(**ask, stream=True):
            finish = chunk.choices[0].finish_reason or finish
            for delta in chunk.choices[0].delta.tool_calls or []:
                call = pieces.setdefault(delta.index, {"name": "", "arguments": ""})
                call["name"] += delta.function.name or ""
                call["arguments"] += delta.function.arguments or ""
        assert finish == "tool_calls"
        assert [(c["name"], json.loads(c["arguments"])) for _, c in sorted(pieces.items())] == calls

        results = [
            {"role": "tool", "tool_call_id": c.id, "content": '{"status": "shipped", "eta": "Friday"}'}
            for c in choice.message.tool_calls
        ]
        answer = client.chat.completions.create(
            model=model,
            messages=[*QUESTION, choice.message.model_dump(exclude_none=True), *results],
            tools=[LOOKUP],
            temperature=0,
            max_tokens=40,
            tool_choice="none",
        )
        assert answer.choices[0].message.content and not answer.choices[0].message.tool_calls
    finally:
        code, stderr = served.stop()
    assert code == 0, stderr
    assert "Traceback" not in stderr
