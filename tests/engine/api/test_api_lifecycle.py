"""The API's life: clients that leave, stopping mid-stream, where it may listen, and its traces."""

from __future__ import annotations

import json
import socket
import threading

import openai
import pytest

from engine.api import ApiServer, ApiServerError
from engine.runtime.backend import BackendRegistry
from engine.runtime.types import SamplingParams
from tests.engine.api.conftest import ENDLESS, api_traces, raw, wait_until

pytestmark = pytest.mark.slow

SONG = [{"role": "user", "content": "Sing."}]


def send(server: ApiServer, body: dict) -> socket.socket:
    """A chat completion request written on a raw socket, so the test can hang up whenever it likes."""
    data = json.dumps(body).encode()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=120)
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(data), data)
    )
    return sock


@pytest.mark.parametrize("stream", [True, False])
def test_a_client_that_hangs_up_cancels_its_generation(traced, stream):
    runtime, store, tracing = traced
    with ApiServer(BackendRegistry.of(runtime), port=0) as server:
        sock = send(
            server,
            {
                "model": runtime.model_info.name,
                "messages": SONG,
                "max_tokens": 1500,
                "grammar": ENDLESS,
                "stream": stream,
            },
        )
        if stream:
            reader = sock.makefile("rb")
            pieces = 0
            while pieces < 3:
                pieces += reader.readline().startswith(b'data: {"id"')
            reader.close()
        else:
            wait_until(lambda: server.active_requests == 1 and runtime.queue_length == 1)
        sock.close()
        wait_until(lambda: server.active_requests == 0 and runtime.queue_length == 0)
        assert server.active_requests == 0
    [trace] = api_traces(store, tracing)
    assert trace.status == "cancelled" and 0 <= trace.output_tokens < 1500


def test_stop_ends_running_streams_and_closes(traced):
    runtime, _, _ = traced
    server = ApiServer(BackendRegistry.of(runtime), port=0).start()
    client = openai.OpenAI(base_url=server.url, api_key="x", max_retries=0)
    stream = iter(
        client.chat.completions.create(
            model=runtime.model_info.name, messages=SONG, max_tokens=1500, stream=True, extra_body={"grammar": ENDLESS}
        )
    )
    assert next(stream).choices[0].delta.role == "assistant"
    stopper = threading.Thread(target=server.stop)
    stopper.start()
    with pytest.raises(openai.APIError, match="shutting down"):
        for _ in stream:
            pass
    stopper.join(30)
    assert not stopper.is_alive()
    wait_until(lambda: runtime.queue_length == 0)
    with pytest.raises(openai.APIConnectionError):
        client.models.list()


def test_listening_beyond_loopback_needs_a_key(runtime):
    with pytest.raises(ApiServerError, match="API key"):
        ApiServer(BackendRegistry.of(runtime), host="0.0.0.0", port=0).start()
    with ApiServer(BackendRegistry.of(runtime), host="0.0.0.0", port=0, api_key="sk-locus-0123456789abcdef") as server:
        assert server.url == f"http://0.0.0.0:{server.port}/v1"
        local = f"http://127.0.0.1:{server.port}"
        assert raw(local, "GET", "/v1/models")[0] == 401
        ok = raw(local, "GET", "/v1/models", headers={"Authorization": "Bearer sk-locus-0123456789abcdef"})
        assert ok[0] == 200 and ok[2]["data"][0]["id"] == runtime.model_info.name


def test_a_port_in_use_or_a_foreign_address_is_said_in_words(runtime):
    with ApiServer(BackendRegistry.of(runtime), port=0) as first:
        with pytest.raises(ApiServerError, match=f"Port {first.port} .* already in use"):
            ApiServer(BackendRegistry.of(runtime), port=first.port).start()
    with pytest.raises(ApiServerError, match="not an address"):
        ApiServer(BackendRegistry.of(runtime), host="203.0.113.7", port=0, api_key="sk-locus-0123456789abcdef").start()
    with pytest.raises(ApiServerError, match="not an address"):
        ApiServer(
            BackendRegistry.of(runtime), host="no-such-host.invalid", port=0, api_key="sk-locus-0123456789abcdef"
        ).start()


def test_api_requests_are_traced_as_roots_with_the_generation_below(traced):
    runtime, store, tracing = traced
    name = runtime.model_info.name
    with ApiServer(BackendRegistry.of(runtime), port=0) as server:
        client = openai.OpenAI(base_url=server.url, api_key="x", max_retries=0)
        reply = client.chat.completions.create(
            model=name, messages=[{"role": "user", "content": "Hello there"}], temperature=0, max_tokens=8
        )
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="gpt-4o", messages=SONG)
    traces = api_traces(store, tracing)
    [ok] = [t for t in traces if t.status == "ok"]
    [failed] = [t for t in traces if t.status == "error"]
    assert ok.model == name and ok.summary == "Hello there"
    assert ok.output_tokens == reply.usage.completion_tokens and ok.input_tokens == reply.usage.prompt_tokens
    spans = store.trace(ok.trace_id)
    [root] = [s for s in spans if s.parent_id is None]
    assert root.name == "api"
    assert root.attributes["http.route"] == "/v1/chat/completions"
    assert root.attributes["http.response.status_code"] == 200
    assert root.attributes["locus.api.stream"] is False
    [generation] = [s for s in spans if s.parent_id == root.span_id]
    assert generation.name == f"chat {name}"
    assert {s.name for s in spans if s.parent_id == generation.span_id} >= {"queue", "prompt_eval", "decode"}
    [failed_root] = [s for s in store.trace(failed.trace_id) if s.parent_id is None]
    assert failed_root.attributes["http.response.status_code"] == 404
    assert failed_root.attributes["error.type"] == "model_not_found"


def test_api_generations_run_at_normal_priority_with_the_current_defaults(traced):
    """API requests queue behind the window's own (NORMAL, not INTERACTIVE), and the sampling defaults are
    read for each request, so a settings change reaches API clients without a restart."""
    runtime, store, tracing = traced
    name = runtime.model_info.name
    current = {"defaults": SamplingParams(temperature=0.25, top_k=7)}
    with ApiServer(BackendRegistry.of(runtime), port=0, defaults=lambda: current["defaults"]) as server:
        client = openai.OpenAI(base_url=server.url, api_key="x", max_retries=0)
        client.chat.completions.create(model=name, messages=[{"role": "user", "content": "First"}], max_tokens=2)
        current["defaults"] = SamplingParams(temperature=0.9, top_k=3)
        client.chat.completions.create(model=name, messages=[{"role": "user", "content": "Second"}], max_tokens=2)
        client.chat.completions.create(
            model=name, messages=[{"role": "user", "content": "Third"}], max_tokens=2, temperature=0.5
        )  # what a request sets wins over the defaults
    generations = {}
    for trace in api_traces(store, tracing):
        spans = store.trace(trace.trace_id)
        [root] = [s for s in spans if s.parent_id is None]
        [generation] = [s for s in spans if s.parent_id == root.span_id]
        generations[trace.summary] = generation.attributes
    assert {
        summary: (a["gen_ai.request.temperature"], a["gen_ai.request.top_k"]) for summary, a in generations.items()
    } == {"First": (0.25, 7), "Second": (0.9, 3), "Third": (0.5, 3)}
    assert {a["locus.priority"] for a in generations.values()} == {"normal"}
