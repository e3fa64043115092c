"""Generation on a remote OpenAI-compatible server (vLLM, TGI, llama.cpp server, Ollama, a company gateway).

``RemoteRuntime`` is the REMOTE ``Backend`` (engine/runtime/backend.py): ``submit`` with the same events,
cancellation and generation span as the in-process ``Runtime``. HTTP is the standard library's ``http.client``
(httpx is not installed): one connection per request, streamed as server-sent events on a few worker threads, since
remote servers batch concurrent requests themselves.
"""

from __future__ import annotations

import http.client
import itertools
import json
import logging
import queue
import re
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any
from urllib.parse import urlsplit

from engine.errors import EngineError, InvalidRequestError, RuntimeStoppedError
from engine.runtime.backend import REMOTE
from engine.runtime.budget import DEFAULT_N_CTX, context_window, prompt_budget
from engine.runtime.remote_http import RemoteBackendError, broken, decode, http_error, said, sse
from engine.runtime.runtime import RequestHandle
from engine.runtime.types import (
    ChatMessage,
    Done,
    Failed,
    FinishReason,
    GenerationEvent,
    GenerationRequest,
    GenerationStats,
    ModelInfo,
    Started,
    Token,
)
from engine.tools.base import ToolCall, ToolSpec
from engine.tools.formats import read_call
from engine.tools.grammar import openai_tool
from engine.trace.generation import GenerationSpan
from engine.trace.tracing import Tracing, set_attributes

log = logging.getLogger(__name__)

PROVIDER = "openai_compatible"
_STOP = -100  # a worker's stop signal goes ahead of every queued request


class _RemoteHandle(RequestHandle):
    """A RequestHandle whose cancel also shuts the HTTP socket, so a read waiting on the server returns now."""

    _sock: socket.socket | None = None

    def cancel(self) -> None:
        super().cancel()
        sock = self._sock
        try:
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:  # already closed: nothing is left to interrupt
            pass


class RemoteRuntime:
    """Serves generation requests from an OpenAI-compatible endpoint, with the engine's Runtime API.

    ``extra_sampling`` sends top_k, min_p, repeat_penalty and repeat_last_n (llama.cpp's server and
    llama-cpp-python's) and repetition_penalty (vLLM); turn it off for endpoints that refuse unknown
    fields (OpenAI itself). ``grammar_field`` names the body field that takes GBNF ("grammar" on
    llama.cpp); without it, grammar requests are refused rather than silently run unconstrained.
    """

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        tracing: Tracing | None = None,
        timeout_s: float = 120.0,
        max_concurrent: int = 4,
        n_ctx: int | None = None,
        extra_sampling: bool = True,
        grammar_field: str | None = None,
    ):
        parts = urlsplit(base_url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidRequestError(
                f"'{base_url}' is not a server address.", hint="Use a URL such as http://localhost:8000/v1."
            )
        if parts.username or parts.password:  # the address is shown and traced: it must hold no secret
            raise InvalidRequestError(
                "The server address must not contain a user name or password.", hint="Put the API key in its own field."
            )
        self.base_url = base_url.strip().rstrip("/")
        self.host, self.https = parts.hostname, parts.scheme == "https"
        self.port = parts.port or (443 if self.https else 80)
        path = parts.path.rstrip("/")
        self._prefix = path[:-3] if path.endswith("/v1") else path  # both ".../v1" and the root are accepted
        self.model, self.n_ctx, self.timeout_s = model, n_ctx, timeout_s
        self.extra_sampling, self.grammar_field = extra_sampling, grammar_field
        self._api_key = api_key
        self.tracing = tracing or Tracing.disabled()
        self.last_tokens_per_s: float | None = None
        self._info: ModelInfo | None = None
        self._jobs: queue.PriorityQueue = queue.PriorityQueue()
        self._seq = itertools.count()
        self._running: set[_RemoteHandle] = set()
        self._lock = threading.Lock()
        self._stopped = False
        self._workers = [
            threading.Thread(target=self._serve, name=f"locus-remote-{i}", daemon=True)
            for i in range(max(1, max_concurrent))
        ]
        for worker in self._workers:
            worker.start()

    # Public API ------------------------------------------------------------------

    @property
    def kind(self) -> str:
        """REMOTE: an OpenAI-compatible model server answers."""
        return REMOTE

    @property
    def model_info(self) -> ModelInfo | None:
        return self._info

    @property
    def queue_length(self) -> int:
        """Requests waiting or running (a metrics gauge)."""
        return self._jobs.qsize() + len(self._running)

    def connect(self) -> ModelInfo:
        """Ask the server for its models (GET /v1/models) and check ours is among them; blocks."""
        status, body = self._get("/v1/models")
        entries = body.get("data", []) if status == 200 and isinstance(body, dict) else []
        ids = [e.get("id") for e in entries if isinstance(e, dict)]
        if status == 200 and self.model is not None and self.model not in ids:
            raise RemoteBackendError(
                f"The server has no model '{self.model}'.", hint=f"It offers: {', '.join(map(str, ids)) or 'nothing'}."
            )
        if status != 200 and not (status == 404 and self.model):  # some gateways list nothing: trust the name
            raise http_error(status, body, self)
        name = self.model or (ids[0] if ids else None)
        if not name:
            raise RemoteBackendError(
                f"The server at {self.base_url} offers no models.", hint="Name the model in Settings."
            )
        entry: dict = next((e for e in entries if e.get("id") == name), {})
        meta: dict = entry["meta"] if isinstance(entry.get("meta"), dict) else {}  # llama.cpp's server
        served = entry.get("max_model_len") or entry.get("context_length")  # vLLM; LM Studio, OpenRouter
        n_ctx = int(self.n_ctx or served or DEFAULT_N_CTX)
        self.model = name
        self._info = ModelInfo(
            path=self.base_url,
            name=name,
            description=f"{name} at {self.base_url}",
            n_params=int(meta.get("n_params") or 0),
            size_bytes=int(meta.get("size") or 0),
            n_ctx=n_ctx,
            n_ctx_train=int(meta.get("n_ctx_train") or n_ctx),
            n_threads=0,
            n_gpu_layers=0,
            chat_template_source="remote",
        )
        return self._info

    def count_tokens(self, text: str) -> int:
        """An estimate, about four characters a token: the server's tokenizer is not available here."""
        return (len(text) + 3) // 4

    def render_prompt(self, messages: tuple[ChatMessage, ...], tools: tuple[ToolSpec, ...] = ()) -> tuple[str, int]:
        """A readable rendering of ``messages`` (and ``tools``) and its estimated tokens; the server applies its own
        template."""
        text = "".join(f"{m.role}:\n{_text_of(m)}\n\n" for m in messages) + "assistant:\n"
        if tools:
            text = "tools:\n" + "\n".join(json.dumps(openai_tool(t)) for t in tools) + "\n\n" + text
        return text, self.count_tokens(text)

    def submit(
        self,
        request: GenerationRequest,
        on_event: Callable[[GenerationEvent], None] | None = None,
        *,
        tap: Callable[[GenerationEvent], None] | None = None,
        trace_parent=None,
    ) -> RequestHandle:
        """Queue a request; its events come as from ``Runtime.submit`` (on a worker thread)."""
        handle = _RemoteHandle(request, on_event, tap, trace_parent)
        with self._lock:
            if self._stopped:
                handle._emit(Failed(request.request_id, RuntimeStoppedError("The engine is shutting down.")))
            else:
                self._jobs.put((int(request.priority), next(self._seq), handle))
        return handle

    def forget(self, conversation_key: str) -> Future:
        """Nothing to drop: the model server keeps no state of ours (resolves to 0 caches)."""
        done: Future = Future()
        done.set_result(0)
        return done

    def cancel_all(self) -> None:
        """Cancel the running requests (queued ones are left alone)."""
        for handle in list(self._running):
            handle.cancel()

    def shutdown(self, timeout: float = 10.0) -> None:
        """Cancel what runs, fail what waits, stop the workers."""
        with self._lock:
            was_stopped, self._stopped = self._stopped, True
        if was_stopped:
            return
        self.cancel_all()
        for _ in self._workers:
            self._jobs.put((_STOP, next(self._seq), None))
        deadline = time.monotonic() + timeout
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        while not self._jobs.empty():
            handle = self._jobs.get_nowait()[2]
            if handle is not None:
                handle._emit(Failed(handle.request_id, RuntimeStoppedError("The engine shut down.")))

    # Workers ---------------------------------------------------------------------

    def _serve(self) -> None:
        while True:
            handle = self._jobs.get()[2]
            if handle is None:
                return
            with self._lock:
                self._running.add(handle)
            try:
                self._run(handle)
            finally:
                with self._lock:
                    self._running.discard(handle)

    def _run(self, handle: _RemoteHandle) -> None:
        rid, started = handle.request_id, time.perf_counter()
        unreachable = None
        if self._info is None and not handle.cancelled:
            try:  # first use without connect(): the span is named after the model, so ask for it first
                self.connect()
            except EngineError as exc:
                unreachable = exc
        span = GenerationSpan(self.tracing, handle, self._info)
        set_attributes(
            span.span, {"gen_ai.provider.name": PROVIDER, "server.address": self.host, "server.port": self.port}
        )
        try:
            if handle.request.grammar is not None and not self.grammar_field:
                raise InvalidRequestError(
                    "This model server cannot be asked for constrained (grammar) output.",
                    hint="Use the local model for this task.",
                )
            if unreachable is not None:
                raise unreachable
            if handle.cancelled:
                done = Done(rid, "", GenerationStats(finish_reason="cancelled", model=self.model or ""))
            else:
                handle._emit(Started(rid))
                done = self._stream(handle, started)
        except BaseException as exc:  # noqa: BLE001 - every failure becomes an event
            error = (
                exc
                if isinstance(exc, EngineError)
                else RemoteBackendError(
                    "The request to the model server failed.", detail=f"{type(exc).__name__}: {exc}"
                )
            )
            log.warning("remote generation %s failed: %s (%s)", rid, error, error.detail)
            span.fail(error)
            handle._emit(Failed(rid, error))
            return
        if done.stats.tokens_per_s:
            self.last_tokens_per_s = done.stats.tokens_per_s
        span.finish(done, None)
        handle._emit(done)

    def _body(self, request: GenerationRequest) -> tuple[str, dict, int]:
        """The endpoint, the JSON body and how many old messages were left out to fit the context."""
        s, dropped = request.sampling, 0
        body: dict[str, Any] = {
            "model": self.model,
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": s.temperature,
            "top_p": s.top_p,
            "max_tokens": s.max_tokens,
        }
        if s.stop:
            body["stop"] = list(s.stop)
        if s.seed != -1:
            body["seed"] = s.seed
        if self.extra_sampling:
            body.update(
                top_k=s.top_k,
                min_p=s.min_p,
                repeat_penalty=s.repeat_penalty,
                repeat_last_n=s.repeat_last_n,
                repetition_penalty=s.repeat_penalty,
            )
        if request.grammar is not None and self.grammar_field:
            body[self.grammar_field] = request.grammar
        if request.prompt is not None:
            return "/v1/completions", dict(body, prompt=request.prompt), 0
        messages, dropped = self._fit(list(request.messages), s.max_tokens)
        body["messages"] = [_wire_message(m) for m in messages]
        tools = request.offered_tools
        if tools:
            body["tools"] = [_wire_tool(t) for t in tools]
            choice = request.tool_choice
            body["tool_choice"] = (
                choice
                if choice in ("auto", "required")
                else {"type": "function", "function": {"name": wire_name(choice)}}
            )
        return "/v1/chat/completions", body, dropped

    def _fit(self, messages: list[ChatMessage], max_tokens: int) -> tuple[list[ChatMessage], int]:
        """Leave out the oldest turns (never the system prompt or the question) until the estimate fits the
        prompt budget every backend uses (engine/runtime/budget.py)."""
        budget = prompt_budget(context_window(self._info), max_tokens)
        dropped = 0
        while sum(self.count_tokens(_text_of(m)) + 4 for m in messages) > budget:
            first = 1 if messages and messages[0].role == "system" else 0
            if len(messages) - first <= 1:
                break  # only the question is left: the server will say if it is too long
            del messages[first]
            dropped += 1
        return messages, dropped

    def _headers(self) -> dict:
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _open(self, handle: _RemoteHandle | None = None) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        conn = cls(self.host, self.port, timeout=min(10.0, self.timeout_s))
        try:
            conn.connect()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise RemoteBackendError(
                f"Cannot reach the model server at {self.base_url}.",
                hint="Check that it is running and that the address and port are right.",
                detail=f"{type(exc).__name__}: {exc}",
            ) from None
        conn.sock.settimeout(self.timeout_s)  # the longest wait for the answer or its next piece
        if handle is not None:
            handle._sock = conn.sock
        return conn

    def _get(self, path: str) -> tuple[int, object]:
        conn = self._open()
        try:
            conn.request("GET", self._prefix + path, headers=self._headers())
            resp = conn.getresponse()
            return resp.status, decode(resp.read())
        except (OSError, http.client.HTTPException) as exc:
            raise broken(exc, self) from None
        finally:
            conn.close()

    def _stream(self, handle: _RemoteHandle, started: float) -> Done:
        rid, request = handle.request_id, handle.request
        path, body, dropped = self._body(request)
        parts: list[str] = []
        calls = _CallDeltas()
        usage: dict = {}
        finish, model, t_first = None, self.model or "", None
        conn = self._open(handle)
        try:
            if not handle.cancelled:
                conn.request("POST", self._prefix + path, json.dumps(body), self._headers())
                resp = conn.getresponse()
                if resp.status != 200:
                    raise http_error(resp.status, decode(resp.read()), self)
                for chunk in sse(resp):
                    if handle.cancelled:
                        break
                    if "error" in chunk:
                        raise RemoteBackendError(
                            f"The model server at {self.base_url} reported an error: {said(chunk['error'], self)}"
                        )
                    usage = chunk.get("usage") or usage
                    model = chunk.get("model") or model
                    choice = (chunk.get("choices") or [{}])[0]
                    delta = choice.get("delta") or {}
                    text = choice.get("text") if request.prompt is not None else delta.get("content")
                    finish = choice.get("finish_reason") or finish
                    if request.prompt is None:
                        calls.add(delta.get("tool_calls"))
                        calls.add((choice.get("message") or {}).get("tool_calls"))  # a server that sends it whole
                    if text:
                        t_first = t_first or time.perf_counter()
                        parts.append(text)
                        handle._emit(Token(rid, text, 1))
        except (OSError, http.client.HTTPException) as exc:
            if not handle.cancelled:
                raise broken(exc, self) from None
        finally:
            handle._sock = None
            conn.close()
        end = time.perf_counter()
        tool_calls = calls.read(request.offered_tools) if request.prompt is None else ()
        reason: FinishReason = "cancelled" if handle.cancelled else ("length" if finish == "length" else "stop")
        if tool_calls and reason == "stop":
            reason = "tool_calls"
        t_first = t_first or (end if tool_calls else None)
        n_out = int(usage.get("completion_tokens") or len(parts))
        prompt_text = request.prompt if request.prompt is not None else self.render_prompt(request.messages)[0]
        gen_s = end - t_first if t_first else 0.0
        return Done(
            rid,
            "".join(parts),
            tool_calls=tool_calls,
            stats=GenerationStats(
                prompt_tokens=int(usage.get("prompt_tokens") or self.count_tokens(prompt_text)),
                completion_tokens=n_out,
                queue_s=started - handle.submitted_at,
                prompt_eval_s=(t_first or end) - started,
                time_to_first_token_s=(t_first - handle.submitted_at) if t_first else None,
                generation_s=gen_s,
                tokens_per_s=(n_out - 1) / gen_s if n_out > 1 and gen_s > 0 else None,
                total_s=end - handle.submitted_at,
                dropped_messages=dropped,
                finish_reason=reason,
                model=model,
                seed=request.sampling.seed if request.sampling.seed != -1 else None,
            ),
        )


# Tools on the wire (OpenAI's format) ---------------------------------------------------------------------


def wire_name(name: str) -> str:
    """A tool's name as OpenAI's API takes function names (letters, digits, '_', '-'): an MCP tool's
    "server/tool" goes as "server__tool", a '.' as '_'."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", name.replace("/", "__"))[:64]


def _wire_tool(spec: ToolSpec) -> dict:
    tool = openai_tool(spec)
    tool["function"]["name"] = wire_name(spec.name)
    return tool


def _wire_message(m: ChatMessage) -> dict:
    message: dict = {"role": m.role, "content": m.content}
    if m.tool_calls:
        message["content"] = m.content or None
        message["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": wire_name(c.name), "arguments": json.dumps(c.arguments, ensure_ascii=False)},
            }
            for c in m.tool_calls
        ]
    if m.role == "tool" and m.tool_call_id is not None:
        message["tool_call_id"] = m.tool_call_id
    return message


def _text_of(m: ChatMessage) -> str:
    """What a message says, its calls included (for estimates)."""
    if not m.tool_calls:
        return m.content
    return m.content + "".join(f"\n{c.name}{json.dumps(c.arguments)}" for c in m.tool_calls)


class _CallDeltas:
    """Tool calls as the stream sends them: by index, the id and name first, the arguments in pieces."""

    def __init__(self) -> None:
        self._calls: dict[int, dict] = {}

    def add(self, deltas: object) -> None:
        if not isinstance(deltas, list):
            return
        for n, delta in enumerate(deltas):
            if not isinstance(delta, dict):
                continue
            given = delta.get("index")
            index = given if isinstance(given, int) else n
            call = self._calls.setdefault(index, {"id": None, "name": "", "arguments": ""})
            function = delta.get("function")
            if not isinstance(function, dict):
                function = {}
            if isinstance(delta.get("id"), str) and delta["id"]:
                call["id"] = delta["id"]
            if isinstance(function.get("name"), str):
                call["name"] += function["name"]
            arguments = function.get("arguments")
            if isinstance(arguments, str):
                call["arguments"] += arguments
            elif isinstance(arguments, dict):  # a server that sends an object, not JSON text
                call["arguments"] = json.dumps(arguments)

    def read(self, tools: tuple[ToolSpec, ...]) -> tuple[ToolCall, ...]:
        """The calls, each named as the request's tool it stands for and checked against its schema."""
        names = {wire_name(t.name): t.name for t in tools}
        return tuple(
            read_call(names.get(c["name"], c["name"]), c["arguments"], tools, call_id=c["id"])
            for _, c in sorted(self._calls.items())
        )
