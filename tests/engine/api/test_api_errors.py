"""Bad requests get OpenAI-style error objects with the right status, through the openai client and raw HTTP."""

from __future__ import annotations

import http.client
import json
import socket
from urllib.parse import urlsplit

import openai
import pytest

from engine.api import ApiServer
from engine.runtime.backend import BackendRegistry
from engine.runtime.runtime import Runtime
from tests.engine.api.conftest import raw

pytestmark = pytest.mark.slow

HELLO = [{"role": "user", "content": "Hello"}]
JSON = {"Content-Type": "application/json"}


def error_of(exc: openai.APIStatusError) -> dict:
    assert set(exc.body) == {"message", "type", "param", "code"}, exc.body
    return exc.body


def test_malformed_json_is_a_400(api):
    for body in (
        b'{"model": "x", "messages": [',
        b"\xff\xfe not utf-8",
        b"[1, 2, 3]",
        b"",
        b"[" * 100_000,
        b'{"model": "x", "messages": [{"role": "user", "content": "\\ud800"}]}',
    ):
        status, _, reply = raw(api, "POST", "/v1/chat/completions", body, JSON)
        assert status == 400, body[:20]
        assert reply["error"]["type"] == "invalid_request_error" and reply["error"]["code"] == "invalid_json"


def test_a_body_over_the_limit_is_a_413(api, client, model_id):
    api.max_request_bytes = 64 * 1024
    huge = [{"role": "user", "content": "word " * 40_000}]  # 200 KB
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model=model_id, messages=huge, max_tokens=4)
    assert caught.value.status_code == 413 and error_of(caught.value)["code"] == "request_too_large"
    # Chunked bodies are counted as they arrive.
    chunks = (b"x" * 10_000 for _ in range(20))
    status, headers, reply = raw(api, "POST", "/v1/chat/completions", chunks, JSON)  # sent chunked
    assert status == 413 and reply["error"]["code"] == "request_too_large"
    assert headers.get("Connection") == "close"
    # A client that asks first (Expect: 100-continue, as curl does) is refused before it sends the body.
    parts = urlsplit(api.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 5000000000\r\nExpect: 100-continue\r\n\r\n"
        )
        answer = sock.makefile("rb").read()
    assert answer.startswith(b"HTTP/1.1 413") and b"request_too_large" in answer
    assert client.models.list().data  # the server goes on answering


def test_wrong_or_missing_api_key_is_a_401(runtime):
    with ApiServer(BackendRegistry.of(runtime), port=0, api_key="sk-locus-test-key-123456") as server:
        for key in ("sk-wrong-key", "sk-locus-test-key-1234567", "x"):
            client = openai.OpenAI(base_url=server.url, api_key=key, max_retries=0)
            with pytest.raises(openai.AuthenticationError) as caught:
                client.models.list()
            assert error_of(caught.value)["code"] == "invalid_api_key"
            assert "sk-" not in caught.value.body["message"]  # the key sent is never echoed
        status, headers, _reply = raw(server, "GET", "/v1/models")
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
        good = openai.OpenAI(base_url=server.url, api_key="sk-locus-test-key-123456", max_retries=0)
        assert [m.id for m in good.models.list().data] == [runtime.model_info.name]
        # A refused request's body is read and dropped: the kept-alive connection serves the next request.
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.request("POST", "/v1/chat/completions", body=json.dumps({"messages": HELLO}), headers=JSON)
        assert conn.getresponse().read() and conn.sock is not None
        conn.request("GET", "/v1/models", headers={"Authorization": "Bearer sk-locus-test-key-123456"})
        assert conn.getresponse().status == 200
        conn.close()


def test_unknown_model_is_a_404(client, embedder, model_id):
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=HELLO, max_tokens=4)
    error = error_of(caught.value)
    assert error["code"] == "model_not_found" and error["param"] == "model" and model_id in error["message"]
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="text-embedding-3-small", input="hi")
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o")
    with pytest.raises(openai.BadRequestError) as wrong_kind:  # a model of the wrong kind is named as such
        client.chat.completions.create(model=embedder.name, messages=HELLO, max_tokens=4)
    assert "embedding model" in wrong_kind.value.body["message"]


def test_max_tokens_beyond_the_context_is_a_400(client, model_id, api, runtime):
    n_ctx = runtime.model_info.n_ctx
    for field in ("max_tokens", "max_completion_tokens"):
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model=model_id, messages=HELLO, **{field: n_ctx})
        error = error_of(caught.value)
        assert error["code"] == "context_length_exceeded" and error["param"] == field
        assert str(n_ctx) in error["message"]
    with pytest.raises(openai.BadRequestError) as prompt_too_long:
        client.chat.completions.create(model=model_id, messages=[{"role": "user", "content": "lighthouse " * 3000}])
    assert prompt_too_long.value.body["code"] == "context_length_exceeded"
    assert prompt_too_long.value.body["param"] == "messages"
    api.max_tokens = 64  # the server's own limit
    with pytest.raises(openai.BadRequestError) as over_limit:
        client.completions.create(model=model_id, prompt="Once upon a time", max_tokens=65)
    assert over_limit.value.body["code"] == "context_length_exceeded" and "64" in over_limit.value.body["message"]


@pytest.mark.parametrize(
    "fields, param",
    [
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": 3}, "temperature"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"stop": ["", "x"]}, "stop"),
        ({"n": 2}, "n"),
        ({"stream": "yes"}, "stream"),
        ({"tools": [{"type": "function", "function": {"name": "two words"}}]}, "tools[0].function.name"),
        ({"tools": [{"type": "code_interpreter"}]}, "tools[0].type"),
        (
            {
                "tools": [
                    {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "required": "x"}}}
                ]
            },
            "tools[0].function.parameters",
        ),
        ({"tool_choice": "required"}, "tool_choice"),
        (
            {
                "tool_choice": {"type": "function", "function": {"name": "g"}},
                "tools": [{"type": "function", "function": {"name": "f"}}],
            },
            "tool_choice",
        ),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"logprobs": True}, "logprobs"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
        ({"messages": [{"role": "function", "content": "x", "name": "f"}]}, "messages[0].role"),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{not json"}}
                        ],
                    },
                    {"role": "user", "content": "x"},
                ]
            },
            "messages[0].tool_calls[0].function.arguments",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
            "messages[0].content[0]",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "integer", "minimum": 1}}}},
            "response_format",
        ),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        ({"grammar": 'answer ::= "yes"'}, "grammar"),
        ({"model": None}, "model"),
    ],
)
def test_invalid_fields_are_named_in_a_400(api, model_id, fields, param):
    body = {"model": model_id, "messages": HELLO, "max_tokens": 4, **fields}
    status, _, reply = raw(api, "POST", "/v1/chat/completions", json.dumps(body).encode(), JSON)
    assert status == 400, reply
    assert reply["error"]["param"] == param and reply["error"]["type"] == "invalid_request_error"
    assert reply["error"]["message"]


def test_unknown_routes_methods_and_broken_requests(api):
    status, _, reply = raw(api, "GET", "/v1/assistants")
    assert status == 404 and reply["error"]["code"] == "unknown_url"
    status, headers, reply = raw(api, "GET", "/v1/chat/completions")
    assert status == 405 and headers["Allow"] == "POST" and reply["error"]["code"] == "method_not_allowed"
    status, _, reply = raw(api, "BREW", "/v1/models")
    assert status == 501 and reply["error"]["type"] == "server_error"
    parts = urlsplit(api.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(b"this is not http\r\n\r\n")
        answer = sock.makefile("rb").read()
    assert answer.startswith(b"HTTP/1.1 400") and b'"error"' in answer and b"Traceback" not in answer


def test_requests_addressed_to_another_host_are_refused_on_loopback(api):
    """A web page that points its own domain at 127.0.0.1 (DNS rebinding) cannot use the API."""
    status, _, reply = raw(api, "GET", "/v1/models", headers={"Host": "attacker.example:8765"})
    assert status == 403 and reply["error"]["code"] == "host_not_allowed"
    for host in ("localhost:1", "127.0.0.1", "[::1]:8765"):
        assert raw(api, "GET", "/v1/models", headers={"Host": host})[0] == 200


def test_no_model_loaded_is_a_503(model_path):
    runtime = Runtime()
    try:
        with ApiServer(BackendRegistry.of(runtime), port=0) as server:
            client = openai.OpenAI(base_url=server.url, api_key="x", max_retries=0)
            assert client.models.list().data == []
            with pytest.raises(openai.InternalServerError) as caught:
                client.chat.completions.create(model="anything", messages=HELLO)
            assert caught.value.status_code == 503 and caught.value.body["code"] == "model_not_loaded"
    finally:
        runtime.shutdown()


def test_an_unexpected_failure_is_a_generic_500_without_a_traceback(runtime, caplog):
    def broken_embedder(texts):  # the narrowest seam: a bug in what the server calls
        raise ZeroDivisionError("division by zero in a helper")

    with ApiServer(BackendRegistry.of(runtime), embed=broken_embedder, embedding_model="broken", port=0) as server:
        status, _, reply = raw(server, "POST", "/v1/embeddings", b'{"model": "broken", "input": "hi"}', JSON)
        assert status == 500 and reply["error"]["type"] == "server_error"
        assert "ZeroDivision" not in reply["error"]["message"] and "Traceback" not in json.dumps(reply)
        assert raw(server, "GET", "/v1/models")[0] == 200  # still serving
    assert any(r.exc_info and r.exc_info[0] is ZeroDivisionError for r in caplog.records)  # logged in full


def test_http_1_0_clients_get_a_stream_that_ends_with_the_connection(api, model_id):
    parts = urlsplit(api.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    conn._http_vsn, conn._http_vsn_str = 10, "HTTP/1.0"
    body = {"model": model_id, "messages": HELLO, "max_tokens": 4, "temperature": 0, "stream": True}
    conn.request("POST", "/v1/chat/completions", json.dumps(body), JSON)
    resp = conn.getresponse()
    text = resp.read().decode()
    conn.close()
    assert resp.status == 200 and text.rstrip().endswith("data: [DONE]")
