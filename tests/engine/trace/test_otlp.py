"""Spans reach a real OTLP/HTTP receiver intact and scrubbed; a dead collector never hurts the app."""

from __future__ import annotations

import gzip
import socket
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from engine.trace.store import TraceStore
from engine.trace.tracing import REDACTED, Redactor, Tracing, trace_id_of

SECRET = "sv9Lq2Wm4Xc7Rb1Tz8"
BEARER = "collector-token-5e1f"


class _Collector(ThreadingHTTPServer):
    """Records each POST /v1/traces: its headers and its decoded ExportTraceServiceRequest."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: list[tuple[dict[str, str], ExportTraceServiceRequest]] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        encoding = self.headers.get("Content-Encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        if self.path != "/v1/traces":
            self.send_response(404)
            self.end_headers()
            return
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        self.server.received.append(({k.lower(): v for k, v in self.headers.items()}, request))
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass


@pytest.fixture()
def collector():
    server = _Collector()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture()
def unused_port() -> int:
    """A local port nothing listens on (bound, read, and released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _plain(any_value):
    """An OTLP AnyValue as a Python value."""
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [_plain(v) for v in any_value.array_value.values]
    return getattr(any_value, kind)


def _attributes(key_values) -> dict:
    return {kv.key: _plain(kv.value) for kv in key_values}


def test_spans_reach_the_collector_scrubbed_with_their_tree(collector, tmp_path):
    store = TraceStore(tmp_path / "traces.sqlite3")
    tracing = Tracing(
        store,
        otlp_endpoint=collector.url,
        otlp_headers={"authorization": f"Bearer {BEARER}"},
        redactor=Redactor(lambda: [SECRET]),
        service_version="0.5.0",
    )
    root = tracing.start(
        "ask",
        attributes={
            "locus.task": "ask",
            "gen_ai.request.model": "smollm2",
            "gen_ai.usage.output_tokens": 42,
            "locus.sources": ["a.pdf", "b.md"],
            "gen_ai.prompt": f"the key is {SECRET}.",
        },
    )
    trace_id = trace_id_of(root)
    retrieve = tracing.start("retrieve", root, {"locus.rag.k": 4})
    retrieve.end()
    generate = tracing.start("generate", root, {"locus.tokens_per_s": 31.5})
    generate.add_event("first_token", {"locus.note": f"{SECRET} leaked into an event"})
    generate.end()
    root.end()
    assert tracing.flush()
    tracing.shutdown()

    assert collector.received, "the collector received nothing"
    headers = collector.received[0][0]
    assert headers["authorization"] == f"Bearer {BEARER}"  # transport, not span data: sent as given
    assert headers["content-type"] == "application/x-protobuf"

    spans, resources = {}, []
    for _, request in collector.received:
        for resource_spans in request.resource_spans:
            resources.append(_attributes(resource_spans.resource.attributes))
            for scope_spans in resource_spans.scope_spans:
                assert scope_spans.scope.name == "locus.engine"
                spans.update({span.name: span for span in scope_spans.spans})
    assert all(r["service.name"] == "locus" and r["service.version"] == "0.5.0" for r in resources)
    assert set(spans) == {"ask", "retrieve", "generate"}

    ask = spans["ask"]
    assert {s.trace_id.hex() for s in spans.values()} == {trace_id}  # the id the local store uses too
    assert ask.parent_span_id == b""
    assert spans["retrieve"].parent_span_id == ask.span_id
    assert spans["generate"].parent_span_id == ask.span_id
    assert _attributes(ask.attributes) == {
        "locus.task": "ask",
        "gen_ai.request.model": "smollm2",
        "gen_ai.usage.output_tokens": 42,
        "locus.sources": ["a.pdf", "b.md"],
        "gen_ai.prompt": f"the key is {REDACTED}.",
    }
    assert _attributes(spans["retrieve"].attributes) == {"locus.rag.k": 4}
    (event,) = spans["generate"].events
    assert event.name == "first_token"
    assert _attributes(event.attributes) == {"locus.note": f"{REDACTED} leaked into an event"}
    for _, request in collector.received:
        assert SECRET.encode() not in request.SerializeToString()

    # The local store holds the same trace, scrubbed the same way.
    assert [s.name for s in store.trace(trace_id)] == ["ask", "retrieve", "generate"]
    store.close()


def test_an_unreachable_collector_never_reaches_the_app(tmp_path, unused_port):
    store = TraceStore(tmp_path / "traces.sqlite3")
    tracing = Tracing(store, otlp_endpoint=f"http://127.0.0.1:{unused_port}")
    root = tracing.start("ask", attributes={"locus.task": "ask"})
    tracing.start("generate", root).end()
    root.end()

    outcome: list = []

    def flush():
        try:
            outcome.append(tracing.flush())
        except BaseException as exc:  # noqa: BLE001 - the assertion below reports it
            outcome.append(exc)

    flusher = threading.Thread(target=flush, daemon=True)
    flusher.start()
    # The local store does not wait for the collector: its spans land while the exporter still retries.
    deadline = time.monotonic() + 5
    while store.count() == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [t.name for t in store.list_traces()] == ["ask"]
    assert store.list_traces()[0].n_spans == 2

    # flush() waits for the local store only; the exporter's retries against the dead collector do not hold it.
    flusher.join(2)
    assert not flusher.is_alive(), "flush waited for the unreachable collector"
    assert outcome and outcome[0] is True, outcome
    started = time.monotonic()
    tracing.shutdown()
    assert time.monotonic() - started < 3.5  # exit is not held by the retries either
    store.close()
