"""Tool calls on real chat templates: each family is recognised from its template, tools and a tool round trip
render in the shapes those templates read, and answers as those models write them are read back into calls
(checked against the tools' schemas: a bad call is reported, never dropped)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.errors import TemplateError
from engine.runtime.chat_template import ChatTemplate
from engine.runtime.types import ChatMessage
from engine.tools.base import ToolCall, ToolSpec
from engine.tools.formats import FORMATS, GENERIC, CallStream, family_of, parse_calls

TEMPLATES = Path(__file__).resolve().parents[4] / "shared" / "chat-templates"
FIXTURES = json.loads((Path(__file__).parent / "fixtures" / "tool_call_outputs.json").read_text("utf-8"))["cases"]

WEATHER = ToolSpec(
    "get_weather",
    "The weather in a city.",
    {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "The city"},
            "days": {"type": "integer", "description": "Days of forecast"},
        },
        "required": ["city"],
    },
)
CLOCK = ToolSpec("current_time", "The current date and time.", {"type": "object", "properties": {}})
TOOLS = (WEATHER, CLOCK)


def template(name: str) -> ChatTemplate:
    return ChatTemplate((TEMPLATES / name).read_text("utf-8"), bos_token="<s>", eos_token="</s>")


def test_the_real_templates_are_here():
    assert len(list(TEMPLATES.glob("*.jinja"))) > 50


@pytest.mark.parametrize("case", FIXTURES, ids=[c["name"] for c in FIXTURES])
def test_real_outputs_parse_into_checked_calls(case):
    source = (TEMPLATES / case["template"]).read_text("utf-8")
    family = family_of(source)
    assert family == case["family"]
    content, calls = parse_calls(case["output"], family or GENERIC, TOOLS)
    assert content == case["content"]
    assert [(c.name, c.arguments) for c in calls] == [(c["name"], c["arguments"]) for c in case["calls"]]
    for call, expected in zip(calls, case["calls"], strict=True):
        if "id" in expected:
            assert call.id == expected["id"]
        else:
            assert call.id.startswith("call_") and len(call.id) == 14
        if "error" in expected:
            assert call.error is not None and expected["error"] in call.error
        else:
            assert call.error is None
        assert call.raw  # kept for traces and error messages


@pytest.mark.parametrize("case", [c for c in FIXTURES if c["calls"]], ids=lambda c: c["name"])
def test_a_streamed_call_is_held_back_and_the_text_before_it_shown(case):
    fmt = FORMATS[case["family"] or GENERIC]
    stream = CallStream(fmt)
    output = case["output"]
    shown = "".join(stream.feed(output[i : i + 3]) for i in range(0, len(output), 3))
    assert stream.text == output
    assert shown.strip() == case["content"]  # the calls never show as text


def test_a_plain_answer_streams_whole_even_when_it_ends_like_a_marker():
    stream = CallStream(FORMATS["hermes"])
    shown = [stream.feed(p) for p in ("Use the ", "<b>", " tag, not <tool", "_c")]
    assert "".join(shown) == "Use the <b> tag, not "  # "<tool_c" may open a call: held
    assert stream.feed("ar>") == "<tool_car>"
    assert stream.held() == ""


def test_a_template_that_reads_no_tools_has_no_family():
    assert family_of((TEMPLATES / "google-gemma-2-2b-it.jinja").read_text("utf-8")) is None
    assert family_of((TEMPLATES / "meetkai-functionary-medium-v3.1.jinja").read_text("utf-8")) is None
    assert family_of(None) is None


# Rendering -------------------------------------------------------------------------------------------

CALLS = (
    ToolCall("call_Ab12", "get_weather", {"city": "Paris"}),
    ToolCall("call_Cd34", "get_weather", {"city": "Lyon"}),
)
ROUND_TRIP = (
    ChatMessage("system", "Be brief."),
    ChatMessage("user", "Weather in Paris and Lyon?"),
    ChatMessage("assistant", "", tool_calls=CALLS),
    ChatMessage("tool", '{"temp": 21}', tool_call_id="call_Ab12", name="get_weather"),
    ChatMessage("tool", '{"temp": 17}', tool_call_id="call_Cd34", name="get_weather"),
)
ALL = sorted(
    p.name for p in TEMPLATES.glob("*.jinja") if p.name != "fireworks-ai-llama-3-firefunction-v2.jinja"
)  # needs a 'functions' variable


@pytest.mark.parametrize("name", ALL)
def test_every_real_template_renders_tools_and_a_round_trip(name):
    tmpl = template(name)
    offered = tmpl.render(ROUND_TRIP[:2], tools=TOOLS)
    assert "get_weather" in offered and "current_time" in offered
    trip = tmpl.render(ROUND_TRIP, tools=TOOLS)
    assert "21" in trip and "17" in trip and "Lyon" in trip


# The shapes each family's template writes the call and its result in (what the model was trained on).
NATIVE = {
    "meta-llama-Llama-3.1-8B-Instruct.jinja": [
        '<|start_header_id|>assistant<|end_header_id|>\n\n{"name": "get_weather", "parameters": {"city": "Paris"}}',
        '{"name": "get_weather", "parameters": {"city": "Lyon"}}<|eot_id|>',
        "<|start_header_id|>ipython<|end_header_id|>\n\n",
    ],
    "meta-llama-Llama-3.2-3B-Instruct.jinja": ['{"name": "get_weather", "parameters": {"city": "Paris"}}<|eot_id|>'],
    "meta-llama-Llama-3.3-70B-Instruct.jinja": ['{"name": "get_weather", "parameters": {"city": "Lyon"}}<|eot_id|>'],
    "Qwen-Qwen2.5-7B-Instruct.jinja": [
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n<tool_call>',
        '<|im_start|>user\n<tool_response>\n{"temp": 21}\n</tool_response>\n<tool_response>\n{"temp": 17}\n',
    ],
    "Qwen-Qwen3-0.6B.jinja": [
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Lyon"}}\n</tool_call>',
        '<tool_response>\n{"temp": 21}\n</tool_response>',
    ],
    "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja": [
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
        '<|im_start|>tool\n<tool_response>\n{"temp": 21}\n</tool_response>',
    ],
    "NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja": [
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Lyon"}}\n</tool_call>'
    ],
    "mistralai-Mistral-Nemo-Instruct-2407.jinja": [
        '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "',
        '[TOOL_RESULTS]{"content": {"temp": 21}, "call_id": "',
    ],
    "Mistral-Small-3.2-24B-Instruct-2506.jinja": [
        "[TOOL_CALLS]get_weather[CALL_ID]",
        '[ARGS]{"city": "Paris"}',
        '[TOOL_CONTENT]{"temp": 17}[/TOOL_RESULTS]',
    ],
    "Qwen3-Coder.jinja": [
        "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>"
    ],
    "GLM-4.6.jinja": ["<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Lyon</arg_value>\n</tool_call>"],
}


@pytest.mark.parametrize("name", sorted(NATIVE))
def test_tool_aware_templates_get_calls_and_results_in_their_own_shapes(name):
    tmpl = template(name)
    assert tmpl.supports_tools
    trip = tmpl.render(ROUND_TRIP, tools=TOOLS)
    for piece in NATIVE[name]:
        assert piece in trip
    assert "The weather in a city." in trip  # the tools themselves are shown too


def test_mistral_templates_get_the_same_nine_character_id_for_a_call_and_its_result():
    trip = template("mistralai-Mistral-Nemo-Instruct-2407.jinja").render(ROUND_TRIP, tools=TOOLS)
    call_ids = [trip.split('"id": "')[i].split('"')[0] for i in (1, 2)]
    result_ids = [trip.split('"call_id": "')[i].split('"')[0] for i in (1, 2)]
    assert call_ids == result_ids and len(set(call_ids)) == 2
    assert all(len(i) == 9 and i.isalnum() for i in call_ids)


def test_a_template_without_tools_gets_them_described_and_the_round_trip_as_text():
    tmpl = template("microsoft-Phi-3.5-mini-instruct.jinja")
    assert not tmpl.supports_tools
    trip = tmpl.render(ROUND_TRIP, tools=TOOLS, tool_choice="required")
    assert "<tools>" in trip and '"name": "current_time"' in trip and "Answer now with one or more tool calls." in trip
    assert "Be brief." in trip.split("<tools>")[0]  # the conversation's own system prompt comes first
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>' in trip
    assert '<|user|>\n<tool_response>\n{"temp": 21}\n</tool_response>\n<tool_response>\n{"temp": 17}' in trip


def test_a_template_that_refuses_a_system_turn_gets_it_in_the_first_user_turn():
    tmpl = template("google-gemma-2-2b-it.jinja")
    trip = tmpl.render(ROUND_TRIP, tools=TOOLS)
    assert trip.startswith("<s><start_of_turn>user\nBe brief.\n\n# Tools")
    with pytest.raises(TemplateError, match="alternate"):
        tmpl.render((ChatMessage("system", "x"), ChatMessage("assistant", "a"), ChatMessage("user", "b")))


def test_json_in_templates_is_plain_json_not_html_escaped():
    tool = ToolSpec("compare", "Is a < b & c > d?", {"type": "object", "properties": {}})
    text = template("Qwen-Qwen2.5-7B-Instruct.jinja").render((ChatMessage("user", "hi"),), tools=(tool,))
    assert '"description": "Is a < b & c > d?"' in text
