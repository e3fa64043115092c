"""The remote backend against a real OpenAI-compatible server on loopback: llama-cpp-python's own server."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time

import pytest

from engine.assistant import Assistant, ChatSettings
from engine.errors import InvalidRequestError
from engine.history.store import HistoryStore
from engine.runtime.backend import BackendRegistry
from engine.runtime.remote import RemoteBackendError, RemoteRuntime
from engine.runtime.types import ChatMessage, Done, Failed, GenerationRequest, SamplingParams, Started, Token
from engine.trace.store import TraceStore
from engine.trace.tracing import Tracing
from tests.llama_server import ALIAS, API_KEY, free_port


@pytest.fixture()
def server(llama_server):
    return llama_server


@pytest.fixture()
def remote(server):
    rt = RemoteRuntime(server, model=ALIAS, api_key=API_KEY, timeout_s=30)
    yield rt
    rt.shutdown()


def chat(text="Say hello.", max_tokens=12, **kw) -> GenerationRequest:
    return GenerationRequest((ChatMessage("user", text),), SamplingParams(max_tokens=max_tokens, seed=1), **kw)


def test_connect_reports_the_served_model(remote, server):
    info = remote.connect()
    assert info.name == ALIAS and info.path == server and info.chat_template_source == "remote"
    assert remote.model_info == info and info.n_ctx > 0


def test_a_streamed_chat_answer_arrives_in_order_with_usage(remote):
    events = list(remote.submit(chat()).events())
    assert isinstance(events[0], Started)
    tokens = events[1:-1]
    assert tokens and all(isinstance(e, Token) for e in tokens)
    done = events[-1]
    assert isinstance(done, Done) and done.text == "".join(e.text for e in tokens) and done.text.strip()
    st = done.stats
    assert st.prompt_tokens > 0 and 0 < st.completion_tokens <= 12 and st.finish_reason in ("stop", "length")
    assert st.time_to_first_token_s is not None and st.model == ALIAS and st.seed == 1
    assert remote.queue_length == 0


def test_the_assistant_answers_through_the_remote_backend_and_saves_it(remote, tmp_path):
    history = HistoryStore(tmp_path / "locus.sqlite3")
    assistant = Assistant(
        BackendRegistry.of(remote), history, ChatSettings("You are brief.", SamplingParams(seed=1, max_tokens=16))
    )
    try:
        answer = assistant.ask("What is the capital of France?")
        done = answer.wait(60)
        assert done.complete and done.text.strip() and answer.started.backend == "remote"
        saved = history.messages(answer.started.conversation_id)
        assert [(m.role, m.status) for m in saved] == [("user", "complete"), ("assistant", "complete")]
        assert saved[1].content == done.text and saved[1].stats["completion_tokens"] > 0
    finally:
        assistant.close()
        history.close()


def test_cancel_closes_the_stream_and_keeps_the_partial_text(remote):
    tokens: list[str] = []
    got_three = threading.Event()

    def on_event(event):
        if isinstance(event, Token):
            tokens.append(event.text)
            if len(tokens) >= 3:
                got_three.set()

    handle = remote.submit(chat("Write a very long story about a dragon.", max_tokens=1500), on_event)
    assert got_three.wait(30)
    cancelled_at = time.perf_counter()
    handle.cancel()
    done = handle.wait(5)
    assert time.perf_counter() - cancelled_at < 2
    assert isinstance(done, Done) and done.stats.finish_reason == "cancelled"
    assert done.text == "".join(tokens) and len(tokens) < 1500
    after = remote.submit(chat()).wait(60)  # the server keeps serving
    assert isinstance(after, Done) and after.stats.finish_reason != "cancelled" and after.text


def test_a_prompt_request_uses_text_completion(remote):
    request = GenerationRequest(prompt="Once upon a time", sampling=SamplingParams(max_tokens=8, seed=2))
    done = remote.submit(request).wait(60)
    assert isinstance(done, Done) and done.text and done.stats.completion_tokens > 0


def test_requests_run_concurrently(remote):
    handles = [remote.submit(chat(f"Count to {n}.")) for n in range(3)]
    assert all(isinstance(h.wait(60), Done) for h in handles)


def test_grammar_is_refused_unless_the_server_takes_it(remote, server):
    failed = remote.submit(chat(grammar='root ::= "yes" | "no"')).wait(30)
    assert isinstance(failed, Failed) and isinstance(failed.error, InvalidRequestError)
    rt = RemoteRuntime(server, model=ALIAS, api_key=API_KEY, grammar_field="grammar")
    try:
        done = rt.submit(chat("Is the sky blue?", grammar='root ::= "yes" | "no"')).wait(60)
    finally:
        rt.shutdown()
    assert isinstance(done, Done) and done.text in ("yes", "no")


def test_a_closed_port_fails_with_cannot_reach():
    rt = RemoteRuntime(f"http://127.0.0.1:{free_port()}/v1", model="m")
    try:
        failed = rt.submit(chat()).wait(10)
    finally:
        rt.shutdown()
    assert isinstance(failed, Failed) and isinstance(failed.error, RemoteBackendError)
    assert failed.error.message.startswith("Cannot reach the model server at http://127.0.0.1:")


def test_an_unknown_model_is_named_with_the_ones_offered(server):
    # llama.cpp's server answers any model name with its default model, so Locus checks the list itself.
    rt = RemoteRuntime(server, model="no-such-model", api_key=API_KEY)
    try:
        with pytest.raises(RemoteBackendError) as caught:
            rt.connect()
        failed = rt.submit(chat()).wait(10)
    finally:
        rt.shutdown()
    assert caught.value.message == "The server has no model 'no-such-model'." and ALIAS in caught.value.hint
    assert isinstance(failed, Failed) and failed.error.message == caught.value.message


@pytest.mark.parametrize("key", [None, "wrong-key-abcdef123456"])
def test_a_missing_or_wrong_api_key_is_explained_without_the_key(server, key):
    rt = RemoteRuntime(server, model=ALIAS, api_key=key)
    try:
        failed = rt.submit(chat()).wait(10)
    finally:
        rt.shutdown()
    assert isinstance(failed, Failed)
    text = failed.error.user_text() + (failed.error.detail or "")
    assert ("refused the API key" if key else "asks for an API key") in text
    assert (key or API_KEY) not in text


def test_a_generation_span_records_the_remote_provider(server, tmp_path):
    store = TraceStore(tmp_path / "traces.sqlite3")
    tracing = Tracing(store, schedule_delay_ms=50)
    rt = RemoteRuntime(server, model=ALIAS, api_key=API_KEY, tracing=tracing)
    try:
        assert isinstance(rt.submit(chat()).wait(60), Done)
        tracing.flush()
        spans = [s for t in store.list_traces() for s in store.trace(t.trace_id)]
    finally:
        rt.shutdown()
        tracing.shutdown()
        store.close()
    span = next(s for s in spans if s.name == f"chat {ALIAS}")
    a = span.attributes
    assert a["gen_ai.provider.name"] == "openai_compatible" and a["server.address"] == "127.0.0.1"
    assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] > 0
    assert API_KEY not in json.dumps([s.to_dict() for s in spans])


class _Silent:
    """A port that accepts connections and never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"


def test_a_server_that_stops_answering_times_out():
    silent = _Silent()
    rt = RemoteRuntime(silent.url, model="m", timeout_s=0.5)
    try:
        failed = rt.submit(chat()).wait(10)
    finally:
        rt.shutdown()
        silent.sock.close()
    assert isinstance(failed, Failed) and "stopped responding" in failed.error.message


def test_a_malformed_stream_is_reported():
    # llama.cpp's server never sends a broken stream, so a few lines of stdlib server do.
    class Broken(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # like a gateway that lists no models: the configured name is trusted
            self.send_error(404)

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            self.wfile.write(b'data: {"choices": [{"delta": {"content": "Hi"}}]}\n\ndata: {not json\n\n')

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Broken)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    rt = RemoteRuntime(f"http://127.0.0.1:{httpd.server_address[1]}", model="m")
    try:
        events = []
        failed = rt.submit(chat(), events.append).wait(10)
    finally:
        rt.shutdown()
        httpd.shutdown()
    assert isinstance(failed, Failed) and "cannot read" in failed.error.message
    assert [type(e) for e in events] == [Started, Token, Failed]


def test_shutdown_cancels_what_runs_and_refuses_what_comes(server):
    rt = RemoteRuntime(server, model=ALIAS, api_key=API_KEY)
    first_token = threading.Event()
    handle = rt.submit(
        chat("Write a very long story about a ship.", max_tokens=1500),
        lambda e: isinstance(e, Token) and first_token.set(),
    )
    assert first_token.wait(30)
    rt.shutdown()
    done = handle.wait(5)
    assert isinstance(done, Done) and done.stats.finish_reason == "cancelled"
    late = rt.submit(chat()).wait(1)
    assert isinstance(late, Failed) and late.error.code == "runtime_stopped"


def test_a_long_conversation_is_fitted_with_the_shared_prompt_budget():
    """The model server's prompt leaves the answer the room engine/runtime/budget.py gives it (at most half
    the window), as the local runtime does: old turns go, the system prompt and the question stay."""
    from engine.runtime.budget import prompt_budget

    received = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # lists no models: the configured name and n_ctx are trusted
            self.send_error(404)

        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            self.wfile.write(
                b'data: {"choices": [{"delta": {"content": "ok"}, "finish_reason": null}]}\n\n'
                b'data: {"choices": [{"delta": {}, "finish_reason": "stop"}]}\n\ndata: [DONE]\n\n'
            )

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    rt = RemoteRuntime(f"http://127.0.0.1:{httpd.server_address[1]}/v1", model="m", n_ctx=1000)
    turns = [ChatMessage("user" if i % 2 == 0 else "assistant", f"Turn {i}: " + "words " * 30) for i in range(10)]
    messages = (ChatMessage("system", "Be brief."), *turns, ChatMessage("user", "And the question?"))
    try:
        rt.connect()
        done = rt.submit(GenerationRequest(messages, SamplingParams(max_tokens=900))).wait(10)
    finally:
        rt.shutdown()
        httpd.shutdown()
    assert isinstance(done, Done) and done.text == "ok"
    kept = received[0]["messages"]
    assert kept[0]["content"] == "Be brief." and kept[-1]["content"] == "And the question?"
    assert sum(rt.count_tokens(m["content"]) + 4 for m in kept) <= prompt_budget(1000, 900) == 500
    assert len(kept) > 4  # a budget of 1000 - 900 = 100 tokens keeps only these two and one turn
    assert done.stats.dropped_messages == len(messages) - len(kept)
