"""A real ApiServer on a free loopback port over the bundled model and embedder, and clients for it."""

from __future__ import annotations

import http.client
import json
import time
from urllib.parse import urlsplit

import openai
import pytest

from engine.api import ApiServer
from engine.api.endpoints import token_counter
from engine.runtime.backend import BackendRegistry
from engine.runtime.runtime import Runtime
from engine.runtime.types import ModelConfig
from engine.trace.store import TraceFilter, TraceStore
from engine.trace.tracing import Tracing

ENDLESS = 'root ::= "la " root'  # a grammar the model can never finish: only cancelling ends it early


def wait_until(condition, timeout: float = 60.0) -> None:
    """Poll until ``condition()`` holds (a deadline for the test, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


@pytest.fixture()
def api(runtime, embedder):
    """The API over the `runtime` fixture (bundled model, n_ctx 2048) and the bundled embedder."""
    server = ApiServer(
        BackendRegistry.of(runtime),
        embed=embedder.embed,
        embedding_model=embedder.name,
        embedding_tokens=token_counter(embedder.tokenizer_file),
        port=0,
        max_tokens=8192,
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture()
def traced(tmp_path, model_path):
    """A runtime whose spans go to a trace store in tmp_path: (runtime, store, tracing)."""
    store = TraceStore(tmp_path / "traces.sqlite3")
    tracing = Tracing(store, schedule_delay_ms=50)
    runtime = Runtime(tracing)
    runtime.load(ModelConfig(model_path, n_ctx=2048)).result(timeout=120)
    yield runtime, store, tracing
    runtime.shutdown()
    tracing.shutdown()
    store.close()


def api_traces(store: TraceStore, tracing: Tracing) -> list:
    """The API requests' traces written so far."""
    tracing.flush()
    return store.list_traces(TraceFilter(task="api"))


@pytest.fixture()
def client(api) -> openai.OpenAI:
    """The official openai client, pointed at the API (no retries: each error must come back as sent)."""
    return openai.OpenAI(base_url=api.url, api_key="unused-on-loopback", max_retries=0, timeout=120)


@pytest.fixture()
def model_id(runtime) -> str:
    return runtime.model_info.name


def raw(
    target: ApiServer | str,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict | None = None,
    timeout: float = 120,
):
    """One plain HTTP request to a server (or its base URL): (status, headers, parsed JSON body or text)."""
    parts = urlsplit(target if isinstance(target, str) else target.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        try:
            parsed = json.loads(data)
        except ValueError:
            parsed = data.decode("utf-8", "replace")
        return resp.status, dict(resp.getheaders()), parsed
    finally:
        conn.close()
