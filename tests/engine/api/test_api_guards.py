"""What the API refuses before it reads or generates: oversized or broken chunked bodies, web pages of
other sites, bodies that are not JSON. Each over raw sockets or http.client, as a client would send it."""

from __future__ import annotations

import http.client
import json
import socket

import openai
import pytest

from engine.api import ApiServer
from engine.runtime.backend import BackendRegistry
from tests.engine.api.conftest import api_traces, raw

pytestmark = pytest.mark.slow

JSON = {"Content-Type": "application/json"}
CHUNKED = (
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)


def exchange(server: ApiServer, data: bytes) -> tuple[bytes, dict]:
    """Send raw bytes and keep the connection open; read the answer until the server closes its side.

    The timeout is the test's deadline: a server that waits for the rest of a body never answers."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(data)
        answer = sock.makefile("rb").read()
    head, _, body = answer.partition(b"\r\n\r\n")
    return head, json.loads(body)


def test_a_chunk_larger_than_the_limit_is_refused_before_it_is_read(api, client):
    api.max_request_bytes = 1024
    # A 64 MB chunk is announced, and only its first kilobyte sent: the 413 comes without waiting for the rest.
    head, reply = exchange(api, CHUNKED + b"4000000\r\n" + b"x" * 1000)
    assert head.startswith(b"HTTP/1.1 413") and b"Connection: close" in head
    assert reply["error"]["code"] == "request_too_large" and "1 KB" in reply["error"]["message"]
    # Chunks that fit one by one, but not together.
    head, reply = exchange(api, CHUNKED + b"300\r\n" + b"x" * 0x300 + b"\r\n300\r\n" + b"x" * 10)
    assert head.startswith(b"HTTP/1.1 413") and reply["error"]["code"] == "request_too_large"
    # A size no memory holds (0x10000000000 bytes) is a 413 too, not a failed allocation.
    head, reply = exchange(api, CHUNKED + b"10000000000\r\nxx")
    assert head.startswith(b"HTTP/1.1 413") and reply["error"]["code"] == "request_too_large"
    assert client.models.list().data  # the server goes on answering


@pytest.mark.parametrize("line", [b"zz", b"1_0", b"+5", b"-1", b"0x10", b"", b"f" * 40, b"1" * 2000])
def test_a_chunk_size_that_is_not_one_is_a_400(api, line):
    head, reply = exchange(api, CHUNKED + line + b"\r\n" + b"x" * 20)
    assert head.startswith(b"HTTP/1.1 400") and b"Connection: close" in head
    assert reply["error"]["code"] == "invalid_chunked_body" and reply["error"]["type"] == "invalid_request_error"


def test_a_chunked_body_within_the_limit_is_read(api):
    body = json.dumps({"model": "nothing-here", "messages": [{"role": "user", "content": "hi"}]}).encode()
    framed = b"".join(
        b"%x;ext=1\r\n%s\r\n" % (len(body[i : i + 10]), body[i : i + 10]) for i in range(0, len(body), 10)
    )
    closing = CHUNKED.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")  # the server closes after
    head, reply = exchange(api, closing + framed + b"0\r\nX-Trailer: dropped\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 404") and reply["error"]["code"] == "model_not_found"  # the body was parsed
    head, reply = exchange(api, CHUNKED + b"5\r\n{}xxxxxxx\r\n0\r\n\r\n")  # more data than the chunk said
    assert head.startswith(b"HTTP/1.1 400") and reply["error"]["code"] == "invalid_chunked_body"


def test_web_pages_of_other_sites_cannot_use_the_keyless_api(traced):
    """A page on another site can POST text/plain to 127.0.0.1 without a preflight: it is refused unanswered."""
    runtime, store, tracing = traced
    body = json.dumps(
        {"model": runtime.model_info.name, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
    ).encode()
    with ApiServer(BackendRegistry.of(runtime), port=0) as server:
        for origin in (
            "https://evil.example",
            "http://evil.example:8765",
            "null",
            "http://127.0.0.1.evil.example",
            "file://",
            "http://localhost@evil.example",
            "http://[::1",
        ):
            for kind in ("text/plain", "application/json"):
                status, _, reply = raw(
                    server, "POST", "/v1/chat/completions", body, {"Content-Type": kind, "Origin": origin}
                )
                assert status == 403, (origin, kind)
                assert reply["error"]["code"] == "forbidden_origin" and reply["error"]["type"] == "permission_error"
        assert raw(server, "GET", "/v1/models", headers={"Origin": "https://evil.example"})[0] == 403
        for origin in ("http://localhost:3000", "http://127.0.0.1:8080", "https://[::1]", "http://localhost"):
            assert raw(server, "POST", "/v1/chat/completions", body, {**JSON, "Origin": origin})[0] == 200, origin
    assert len(api_traces(store, tracing)) == 4  # the refused requests reached no generation, and no trace


def test_with_an_api_key_the_key_decides_whatever_the_origin(runtime):
    key = "sk-locus-origin-test-123456"
    with ApiServer(BackendRegistry.of(runtime), port=0, api_key=key) as server:
        evil = {"Origin": "https://evil.example"}
        assert raw(server, "GET", "/v1/models", headers={**evil, "Authorization": f"Bearer {key}"})[0] == 200
        status, _, reply = raw(server, "GET", "/v1/models", headers=evil)
        assert status == 401 and reply["error"]["code"] == "invalid_api_key"


def test_a_body_that_is_not_declared_json_is_a_415(api, embedder):
    body = json.dumps({"model": embedder.name, "input": "hello"}).encode()
    for headers in (
        {"Content-Type": "text/plain"},
        {"Content-Type": "application/x-www-form-urlencoded"},
        {"Content-Type": "multipart/form-data; boundary=x"},
        {"Content-Type": "application/jsonx"},
        {},
    ):
        status, _, reply = raw(api, "POST", "/v1/embeddings", body, headers)
        assert status == 415, headers
        assert reply["error"]["code"] == "unsupported_media_type" and "application/json" in reply["error"]["message"]
    for kind in ("application/json; charset=utf-8", "Application/JSON", " application/json ;charset=UTF-8"):
        assert raw(api, "POST", "/v1/embeddings", body, {"Content-Type": kind})[0] == 200, kind
    # The refused body is read and dropped: the kept-alive connection serves the next request.
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=60)
    conn.request("POST", "/v1/embeddings", body=body, headers={"Content-Type": "text/plain"})
    assert conn.getresponse().read() and conn.sock is not None
    conn.request("POST", "/v1/embeddings", body=body, headers=JSON)
    assert conn.getresponse().status == 200
    conn.close()


def test_the_openai_client_sends_what_the_guards_accept(client, embedder):
    """The official client (application/json, no Origin) is unaffected."""
    assert len(client.embeddings.create(model=embedder.name, input="hello").data[0].embedding) > 0
    with pytest.raises(openai.NotFoundError):  # read, parsed and answered: not a 415
        client.embeddings.create(model="text-embedding-3-small", input="hello")
