"""Tool calling through /v1/chat/completions with the official openai client: the server returns the calls the
model makes (whole, or streamed as OpenAI's deltas) and never runs anything; a tool message round trip gets
an answer."""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest

from tests.engine.api.conftest import raw

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 40}, "unit": {"enum": ["celsius", "fahrenheit"]}},
            "required": ["city"],
        },
    },
}
CLOCK = {"type": "function", "function": {"name": "current_time", "description": "The current time."}}
SCHEMAS = {"get_weather": WEATHER["function"]["parameters"], "current_time": {"type": "object"}}
QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]


def check(calls) -> list[tuple[str, dict]]:
    """(name, arguments) of each call, after checking its arguments against its tool's schema."""
    out = []
    for call in calls:
        assert call.type == "function" and call.id
        arguments = json.loads(call.function.arguments)
        jsonschema.validate(arguments, SCHEMAS[call.function.name])
        out.append((call.function.name, arguments))
    return out


def test_required_returns_tool_calls_that_validate(client, model_id):
    reply = client.chat.completions.create(
        model=model_id, messages=QUESTION, tools=[WEATHER, CLOCK], tool_choice="required", temperature=0, max_tokens=200
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None and choice.message.role == "assistant"
    assert check(choice.message.tool_calls)
    assert len({c.id for c in choice.message.tool_calls}) == len(choice.message.tool_calls)


def test_a_named_tool_choice_calls_that_tool(client, model_id):
    reply = client.chat.completions.create(
        model=model_id,
        messages=QUESTION,
        tools=[WEATHER, CLOCK],
        temperature=0,
        max_tokens=200,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    calls = check(reply.choices[0].message.tool_calls)
    assert calls and {name for name, _ in calls} == {"get_weather"}


def test_streamed_call_deltas_reassemble_to_the_whole_answer(client, model_id):
    ask = dict(
        model=model_id,
        messages=QUESTION,
        tools=[WEATHER],
        tool_choice="required",
        temperature=0,
        max_tokens=200,
        seed=7,
    )
    whole = client.chat.completions.create(**ask).choices[0].message.tool_calls
    calls: dict[int, dict] = {}
    finish, pieces = None, 0
    for chunk in client.chat.completions.create(**ask, stream=True):
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        assert not choice.delta.content  # the call syntax never arrives as text
        for delta in choice.delta.tool_calls or []:
            if delta.index not in calls:  # the first delta of a call: its id and name
                assert delta.id and delta.function.name and delta.type == "function"
                calls[delta.index] = {"id": delta.id, "name": delta.function.name, "arguments": ""}
            else:
                assert delta.id is None and not delta.function.name
            calls[delta.index]["arguments"] += delta.function.arguments or ""
            pieces += 1
    assert finish == "tool_calls"
    assert pieces > len(calls)  # the arguments came in pieces
    streamed = [(c["name"], json.loads(c["arguments"])) for _, c in sorted(calls.items())]
    assert streamed == check(whole)


def test_a_tool_message_round_trip_gets_an_answer(client, model_id):
    first = client.chat.completions.create(
        model=model_id,
        messages=QUESTION,
        tools=[WEATHER],
        temperature=0,
        max_tokens=200,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    message = first.choices[0].message
    results = [
        {"role": "tool", "tool_call_id": c.id, "content": json.dumps({"temperature": 21, "sky": "sunny"})}
        for c in message.tool_calls
    ]
    messages = [*QUESTION, message.model_dump(exclude_none=True), *results]
    second = client.chat.completions.create(
        model=model_id, messages=messages, tools=[WEATHER], tool_choice="none", temperature=0, max_tokens=40
    )
    choice = second.choices[0]
    assert choice.finish_reason in ("stop", "length") and choice.message.content
    assert not choice.message.tool_calls


def test_auto_answers_in_words_or_with_valid_calls(client, model_id):
    reply = client.chat.completions.create(
        model=model_id, messages=QUESTION, tools=[WEATHER, CLOCK], temperature=0, max_tokens=60
    )
    choice = reply.choices[0]
    if choice.message.tool_calls:
        assert choice.finish_reason == "tool_calls" and check(choice.message.tool_calls)
    else:
        assert choice.finish_reason in ("stop", "length") and choice.message.content


def test_tools_count_in_the_prompt_tokens(client, model_id):
    plain = client.chat.completions.create(model=model_id, messages=QUESTION, max_tokens=1)
    offered = client.chat.completions.create(model=model_id, messages=QUESTION, tools=[WEATHER], max_tokens=1)
    assert offered.usage.prompt_tokens > plain.usage.prompt_tokens + 50


def test_a_tool_schema_the_model_cannot_be_held_to_is_a_400_on_tools(client, model_id):
    bounded = {
        "type": "function",
        "function": {
            "name": "roll",
            "parameters": {"type": "object", "properties": {"sides": {"type": "integer", "minimum": 2}}},
        },
    }
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as refused:
            reply = client.chat.completions.create(
                model=model_id, messages=QUESTION, tools=[bounded], tool_choice="required", max_tokens=20, stream=stream
            )
            list(reply) if stream else None
        assert refused.value.body["param"] == "tools" and "minimum" in refused.value.body["message"]


def test_the_raw_response_has_openais_shape(api, model_id):
    body = {"model": model_id, "messages": QUESTION, "tools": [CLOCK], "tool_choice": "required", "max_tokens": 60}
    status, _, reply = raw(
        api, "POST", "/v1/chat/completions", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    assert status == 200, reply
    message = reply["choices"][0]["message"]
    assert set(message) == {"role", "content", "refusal", "tool_calls"} and message["content"] is None
    call = message["tool_calls"][0]
    assert set(call) == {"id", "type", "function"} and call["function"]["name"] == "current_time"
    assert json.loads(call["function"]["arguments"]) == {}
