"""Tool calling through the remote backend, in OpenAI's wire format: against Locus's own API server on loopback
(a real OpenAI-compatible server over the bundled model), and against a few lines of stdlib server that
streams tool calls in pieces the way OpenAI's API does and shows what the backend sent."""

from __future__ import annotations

import http.server
import json
import threading
from typing import ClassVar

import pytest

from engine.api import ApiServer
from engine.runtime.backend import BackendRegistry
from engine.runtime.constrain import validation_error
from engine.runtime.remote import RemoteRuntime, wire_name
from engine.runtime.types import ChatMessage, Done, GenerationRequest, SamplingParams, Token
from engine.tools.base import ToolCall, ToolSpec

WEATHER = ToolSpec(
    "get_weather",
    "The current weather in a city.",
    {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40}}, "required": ["city"]},
)
SEARCH = ToolSpec(
    "notes/search",  # an MCP tool's name: OpenAI's function names take no '/'
    "Search the user's notes.",
    {"type": "object", "properties": {"query": {"type": "string", "maxLength": 60}}, "required": ["query"]},
    source="mcp:notes",
)
QUESTION = (ChatMessage("user", "What do my notes say about Paris?"),)


@pytest.fixture()
def locus_server(runtime):
    server = ApiServer(BackendRegistry.of(runtime), port=0, max_tokens=4096)
    server.start()
    remote = RemoteRuntime(server.url, model=runtime.model_info.name, timeout_s=300)
    yield remote
    remote.shutdown()
    server.stop()


def ask(remote, messages=QUESTION, **kw) -> Done:
    request = GenerationRequest(messages, SamplingParams(temperature=0.0, max_tokens=200, seed=3), **kw)
    done = remote.submit(request).wait(600)
    assert isinstance(done, Done), done
    return done


def test_a_named_mcp_tool_goes_out_under_an_openai_name_and_comes_back_under_its_own(locus_server):
    done = ask(locus_server, tools=(WEATHER, SEARCH), tool_choice="notes/search")
    assert done.stats.finish_reason == "tool_calls"
    assert done.tool_calls and all(c.name == "notes/search" and c.error is None for c in done.tool_calls)
    assert all(validation_error(SEARCH.parameters, c.arguments) is None for c in done.tool_calls)
    assert all(c.id for c in done.tool_calls)


def test_required_over_the_wire_gets_valid_calls_and_a_round_trip_answers(locus_server):
    done = ask(locus_server, tools=(WEATHER, SEARCH), tool_choice="required")
    assert done.stats.finish_reason == "tool_calls" and done.tool_calls
    assert all(c.error is None for c in done.tool_calls)
    results = tuple(
        ChatMessage("tool", "Paris: visited in 2019, loved the Louvre.", tool_call_id=c.id, name=c.name)
        for c in done.tool_calls
    )
    answer = ask(
        locus_server,
        (*QUESTION, ChatMessage("assistant", done.text, tool_calls=done.tool_calls), *results),
        tools=(WEATHER, SEARCH),
        tool_choice="none",
    )
    assert answer.text and not answer.tool_calls and answer.stats.finish_reason in ("stop", "length")


class _OpenAiLike(http.server.BaseHTTPRequestHandler):
    """Streams two parallel calls as OpenAI does: per call its id and name, then the arguments in pieces."""

    bodies: ClassVar[list] = []

    def do_GET(self):
        self.send_error(404)

    def do_POST(self):
        self.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        deltas = [
            {"role": "assistant", "content": None},
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_abc",
                        "type": "function",
                        "function": {"name": "notes__search", "arguments": ""},
                    }
                ]
            },
            {"tool_calls": [{"index": 0, "function": {"arguments": '{"qu'}}]},
            {"tool_calls": [{"index": 0, "function": {"arguments": 'ery": "Paris"}'}}]},
            {
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "call_def",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"town": '},
                    }
                ]
            },
            {"tool_calls": [{"index": 1, "function": {"arguments": '"Paris"}'}}]},
        ]
        for delta in deltas:
            self._send({"choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
        self._send({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
        self.wfile.write(b"data: [DONE]\n\n")

    def _send(self, chunk):
        self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")

    def log_message(self, *args):
        pass


def test_streamed_call_deltas_are_read_back_into_checked_calls_and_the_request_is_openais_format():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _OpenAiLike)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    remote = RemoteRuntime(f"http://127.0.0.1:{httpd.server_address[1]}/v1", model="m", extra_sampling=False)
    earlier = ToolCall("call_0", "notes/search", {"query": "Lyon"})
    messages = (
        *QUESTION,
        ChatMessage("assistant", "", tool_calls=(earlier,)),
        ChatMessage("tool", "nothing about Lyon", tool_call_id="call_0", name="notes/search"),
    )
    try:
        events = []
        done = remote.submit(
            GenerationRequest(messages, tools=(WEATHER, SEARCH), tool_choice="required"), events.append
        ).wait(30)
    finally:
        remote.shutdown()
        httpd.shutdown()
    assert isinstance(done, Done) and done.stats.finish_reason == "tool_calls" and done.text == ""
    assert not [e for e in events if isinstance(e, Token)]
    first, second = done.tool_calls
    assert (first.id, first.name, first.arguments, first.error) == (
        "call_abc",
        "notes/search",
        {"query": "Paris"},
        None,
    )
    assert (second.id, second.name, second.arguments) == ("call_def", "get_weather", {"town": "Paris"})
    assert "'city' is a required property" in second.error  # reported, not dropped, never run

    body = _OpenAiLike.bodies[-1]
    assert body["tool_choice"] == "required"
    assert [t["function"]["name"] for t in body["tools"]] == ["get_weather", "notes__search"]
    assert body["tools"][1] == {
        "type": "function",
        "function": {
            "name": "notes__search",
            "description": "Search the user's notes.",
            "parameters": SEARCH.parameters,
        },
    }
    assistant, tool = body["messages"][1:]
    assert assistant == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_0",
                "type": "function",
                "function": {"name": "notes__search", "arguments": '{"query": "Lyon"}'},
            }
        ],
    }
    assert tool == {"role": "tool", "content": "nothing about Lyon", "tool_call_id": "call_0"}


def test_a_named_choice_and_none_go_out_as_openai_spells_them():
    assert wire_name("notes/search") == "notes__search" and wire_name("a.b-c_d") == "a_b-c_d"
    remote = RemoteRuntime("http://127.0.0.1:9/v1", model="m")
    try:
        _, named, _ = remote._body(GenerationRequest(QUESTION, tools=(WEATHER, SEARCH), tool_choice="notes/search"))
        _, none, _ = remote._body(GenerationRequest(QUESTION, tools=(WEATHER,), tool_choice="none"))
    finally:
        remote.shutdown()
    assert named["tool_choice"] == {"type": "function", "function": {"name": "notes__search"}}
    assert [t["function"]["name"] for t in named["tools"]] == ["notes__search"]  # only the named tool is offered
    assert "tools" not in none and "tool_choice" not in none
