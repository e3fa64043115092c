"""What a client can hold on the API is bounded: connections, the time to send a request, queued generations.

Over raw sockets, as a slow or greedy client would behave. A client that trickles its request is cut off
at the deadline; connections beyond the cap get 503 with Retry-After and cost no thread of their own.
"""

from __future__ import annotations

import json
import socket
import threading

import openai
import pytest

from engine.api import ApiServer
from engine.api.listener import BUSY_RESPONDERS
from engine.runtime.backend import BackendRegistry
from engine.runtime.runtime import Runtime
from tests.engine.api.conftest import ENDLESS, raw, wait_until

MODELS = b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


@pytest.fixture()
def no_model():
    """A runtime with no model: enough for everything but generation."""
    runtime = Runtime()
    yield runtime
    runtime.shutdown()


def connect(server: ApiServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=60)


def trickle_until_closed(sock: socket.socket, data: bytes, stop: threading.Event) -> bool:
    """Send ``data`` one byte at a time (then keep sending spaces); True once the server has closed."""
    sock.settimeout(0.2)
    sent = 0
    while not stop.is_set():
        try:
            if sock.recv(1024) == b"":
                return True
        except TimeoutError:
            pass
        except OSError:  # reset: closed too
            return True
        try:
            sock.send(data[sent : sent + 1] if sent < len(data) else b" ")
        except OSError:
            return True
        sent += 1
    return False


def read_answer(sock: socket.socket) -> tuple[bytes, dict]:
    """The server's whole answer on a connection it closes: (head, JSON body)."""
    sock.settimeout(60)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head, json.loads(body)


def test_a_client_that_trickles_its_headers_is_cut_off_at_the_deadline(no_model):
    with ApiServer(BackendRegistry.of(no_model), port=0, read_timeout_s=1.0) as server:
        stop = threading.Event()
        with connect(server) as sock:
            # The headers never end: one byte every 0.2 s, each well inside any per-read timeout.
            closed = trickle_until_closed(sock, b"GET /v1/models HTTP/1.1\r\nX-Slow: ", stop)
        assert closed
        assert raw(server, "GET", "/v1/models")[0] == 200  # the server goes on


def test_a_body_that_does_not_arrive_in_time_is_answered_408(no_model):
    with ApiServer(BackendRegistry.of(no_model), port=0, read_timeout_s=1.0) as server, connect(server) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{"
        )
        head, body = read_answer(sock)  # the rest of the body never comes
        assert head.startswith(b"HTTP/1.1 408") and b"Connection: close" in head
        assert body["error"]["code"] == "request_timeout" and "1 seconds" in body["error"]["message"]


def test_a_request_head_beyond_64_kb_is_refused_unread(no_model):
    headers = "".join(f"X-Filler-{i}: {'x' * 1000}\r\n" for i in range(90)).encode()  # 90 KB, 90 headers
    with ApiServer(BackendRegistry.of(no_model), port=0) as server, connect(server) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n" + headers + b"\r\n")
        head, body = read_answer(sock)
        assert head.startswith(b"HTTP/1.1 431") and "at most 64 KB" in body["error"]["message"]
    with ApiServer(BackendRegistry.of(no_model), port=0) as server, connect(server) as sock:
        sock.sendall(b"GET /" + b"x" * 70_000 + b" HTTP/1.1\r\n\r\n")
        assert read_answer(sock)[0].startswith(b"HTTP/1.1 414")


def test_connections_beyond_the_cap_get_503_and_no_thread_of_their_own(no_model):
    before = threading.active_count()
    with ApiServer(BackendRegistry.of(no_model), port=0, max_connections=2) as server:
        idle = [connect(server) for _ in range(2)]
        wait_until(lambda: server.open_connections == 2)
        extra = connect(server)
        extra.sendall(MODELS)
        head, body = read_answer(extra)
        assert head.startswith(b"HTTP/1.1 503") and b"Retry-After: 2" in head
        assert body["error"]["code"] == "server_busy" and "2 connections" in body["error"]["message"]
        # Many more at once: some are answered 503, the rest closed at once; threads stay bounded.
        crowd = [connect(server) for _ in range(30)]
        assert threading.active_count() <= before + 1 + 2 + BUSY_RESPONDERS  # the accept loop, slots, responders
        for sock in [*crowd, extra]:
            sock.close()
        for sock in idle:
            sock.close()
        wait_until(lambda: raw(server, "GET", "/v1/models")[0] == 200)


@pytest.mark.slow
def test_generations_beyond_the_queue_bound_get_503_and_the_others_are_answered(runtime):
    with ApiServer(BackendRegistry.of(runtime), port=0, max_queued=2) as server:
        client = openai.OpenAI(base_url=server.url, api_key="x", max_retries=0, timeout=120)
        model = runtime.model_info.name
        song = [{"role": "user", "content": "Sing."}]
        # Both fit the context together (2 x (prompt + 900) cells of 2048), so both run at once.
        streams = [
            client.chat.completions.create(
                model=model, messages=song, max_tokens=900, stream=True, extra_body={"grammar": ENDLESS}
            )
            for _ in range(2)
        ]
        for stream in streams:  # both are being answered: each has sent its first tokens
            chunks = iter(stream)
            assert next(chunks).choices[0].delta.role == "assistant" and next(chunks).choices[0].delta.content
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(model=model, messages=song, max_tokens=4)
        assert caught.value.status_code == 503 and caught.value.response.headers["Retry-After"] == "2"
        assert caught.value.body["code"] == "server_busy"
        for stream in streams:
            stream.close()  # the clients hang up: their generations are cancelled
        wait_until(lambda: runtime.queue_length == 0)
        reply = client.chat.completions.create(model=model, messages=song, max_tokens=4)
        assert reply.choices[0].message.content is not None
