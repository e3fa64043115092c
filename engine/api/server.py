"""ApiServer: the OpenAI-compatible HTTP API over the engine's backends (``locus serve``, or beside the window).

It binds to 127.0.0.1 unless told otherwise, and anywhere else only with an API key.
Each request runs on its connection's thread and is submitted to the runtime like
a chat question (the runtime queues and schedules; nothing here serializes), on the
backend that is the default when the request arrives (resolved once per request), under
a root span ``api`` whose child is the generation. Bad requests get OpenAI-style
error objects with their proper status; an unexpected failure is logged and
answered with a generic 500, never a traceback. Requests run at Priority.NORMAL:
after the window's own chat and quick asks, before background tasks.

What a client can hold is bounded: connections (``max_connections``), the time to
send a request (``read_timeout_s`` for the line and headers, again for the body),
its size (``max_request_bytes``) and the generations waiting or running in the
runtime (``max_queued``); beyond them a client gets 503 with Retry-After (or 408,
413), never another thread or a longer queue.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from urllib.parse import unquote

from engine.api import documents, endpoints, guards, spans
from engine.api.calls import parse_chat, parse_completion, parse_embeddings
from engine.api.errors import INTERNAL_MESSAGE, ApiError, busy, invalid, shutting_down
from engine.api.generation import generate
from engine.api.listener import HttpServer, bind, url_for
from engine.api.transport import ClientGone, Exchange
from engine.runtime.backend import Backend, BackendRegistry
from engine.runtime.types import Priority, SamplingParams
from engine.trace.tracing import Tracing, set_attributes

log = logging.getLogger(__name__)

ROUTES = {  # route -> the methods it answers
    "/v1/models": ("GET",),
    "/v1/models/{model}": ("GET",),
    "/v1/chat/completions": ("POST",),
    "/v1/completions": ("POST",),
    "/v1/embeddings": ("POST",),
}
_SAMPLING_DEFAULTS = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "repeat_last_n")
# Defaults of the limits (the app passes its settings, api.* in config.toml). A desktop model
# answers a few requests at once (n_parallel); more than this many waiting would wait minutes.
MAX_CONNECTIONS = 32
MAX_QUEUED = 16
READ_TIMEOUT_S = 30.0


class ApiServer:
    """An OpenAI-compatible API (/v1/models, chat/completions, completions, embeddings) over the default
    backend of ``backends`` (an app that swaps backends swaps them there; ``BackendRegistry.of(runtime)``
    for one runtime). ``embed`` turns a list of texts into unit vectors for ``embedding_model``.
    ``tracing`` defaults to the request's backend's own. ``defaults`` gives the sampling a request does not set:
    SamplingParams, or a function returning the current ones (read for each request, so changed settings apply at once).
    ``max_connections``, ``max_queued`` and ``read_timeout_s`` bound what clients can hold (see above).
    ``assistant`` and ``open_library`` enable answers from documents (engine/api/extension.py).
    """

    def __init__(
        self,
        backends: BackendRegistry,
        *,
        embed=None,
        embedding_model: str | None = None,
        embedding_tokens=None,
        tracing: Tracing | None = None,
        host: str = "127.0.0.1",
        port: int = 8765,
        api_key: str | None = None,
        max_request_bytes: int = 1024 * 1024,
        max_tokens: int = 4096,
        defaults: SamplingParams | Callable[[], SamplingParams] | None = None,
        priority: Priority = Priority.NORMAL,
        max_connections: int = MAX_CONNECTIONS,
        max_queued: int = MAX_QUEUED,
        read_timeout_s: float = READ_TIMEOUT_S,
        assistant=None,
        open_library: Callable[[], object] | None = None,
    ):
        self._backends = backends
        # Answers from documents (Locus's extension of chat completions): the app's Assistant, and how to
        # open its document library (engine.rag.library.DocumentLibrary; opened on the first such request).
        self.assistant = assistant
        self.open_library = open_library
        self.embed = embed
        self.embedding_model = embedding_model if embed is not None else None
        self.embedding_tokens = embedding_tokens
        self._tracing = tracing
        self.host, self.port = host, port
        self.api_key = api_key or None
        self.max_request_bytes = max_request_bytes
        self.max_tokens = max_tokens
        self._defaults = defaults
        self.priority = priority
        self.max_connections = max(1, int(max_connections))
        self.max_queued = max(1, int(max_queued))
        self.read_timeout_s = float(read_timeout_s)
        self.stopping = False
        self.started_at = int(time.time())
        self._httpd: HttpServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Condition()
        self._runs: set = set()
        self._connections: dict = {}  # handler -> its thread
        self._active = 0  # requests being answered
        self._queued = 0  # generations submitted to the runtime and not yet ended

    # Lifecycle -------------------------------------------------------------------------

    @property
    def open_connections(self) -> int:
        """Client connections held open now (diagnostics; at most ``max_connections``)."""
        with self._lock:
            return len(self._connections)

    def backend(self) -> Backend:
        """The backend that answers a request arriving now (the default one): resolve once per request."""
        return self._backends.resolve(None)[1]

    @property
    def defaults(self) -> dict:
        """The sampling fields a request does not set, as they are now."""
        source = self._defaults
        base = (source() if callable(source) else source) or SamplingParams()
        return {name: getattr(base, name) for name in _SAMPLING_DEFAULTS}

    @property
    def tracing(self) -> Tracing:
        """The tracing a request arriving now is recorded with."""
        return self._tracing or self.backend().tracing

    @property
    def url(self) -> str:
        """The base URL clients use (with /v1), e.g. http://127.0.0.1:8765/v1."""
        return url_for(self.host, self.port)

    def start(self) -> ApiServer:
        """Bind and serve on a background thread (ApiServerError with words if that is impossible)."""
        if self._httpd is not None:
            return self
        self._httpd = httpd = bind(self, self.host, self.port)
        self.port = httpd.server_address[1]
        self.stopping = False
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, name=f"locus-api-{self.port}", daemon=True
        )
        self._thread.start()
        log.info("API listening on %s", self.url)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting, cancel running generations, let their answers end, close every connection."""
        httpd = self._httpd
        if httpd is None:
            return
        deadline = time.monotonic() + timeout
        with self._lock:
            self.stopping = True
            runs = list(self._runs)
        for run in runs:
            run.cancel()
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            self._lock.wait_for(lambda: self._active == 0, max(0.0, deadline - time.monotonic()))
            connections = dict(self._connections)
        for handler in connections:
            with contextlib.suppress(OSError):
                handler.connection.shutdown(2)  # an idle kept-alive connection stops waiting for a request
        for thread in connections.values():
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        self._httpd = None
        log.info("API on %s stopped", self.url)

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def active_requests(self) -> int:
        """Requests being answered now."""
        return self._active

    def connection_opened(self, handler) -> None:
        with self._lock:
            self._connections[handler] = threading.current_thread()

    def connection_closed(self, handler) -> None:
        with self._lock:
            self._connections.pop(handler, None)

    @contextlib.contextmanager
    def queue_place(self):
        """A place for one generation in the runtime, while there are fewer than ``max_queued``; 503 if not."""
        with self._lock:
            if self._queued >= self.max_queued:
                raise busy(f"The server is answering or has queued {self._queued} requests, as many as it takes.")
            self._queued += 1
        try:
            yield
        finally:
            with self._lock:
                self._queued -= 1

    @contextlib.contextmanager
    def tracking(self, run):
        """Remember a running generation, so that stop() can cancel it."""
        with self._lock:
            self._runs.add(run)
            if self.stopping:
                run.cancel()
        try:
            yield run
        finally:
            if run.handle.result is None:  # left before its end (a bug): it must not run on unseen
                run.cancel()
            with self._lock:
                self._runs.discard(run)

    # Requests --------------------------------------------------------------------------

    def handle(self, ex: Exchange) -> None:
        """Answer one request; every failure becomes an OpenAI-style error response."""
        with self._lock:
            self._active += 1
        try:
            self._dispatch(ex)
        except ApiError as error:
            if not ex.headers_sent:
                ex.send_error(error)
        except ClientGone:
            pass
        except Exception:
            log.exception("API request %s %s failed", ex.method, ex.path)
            if not ex.headers_sent:
                ex.send_error(ApiError(500, INTERNAL_MESSAGE, type="server_error", code="internal_error"))
        finally:
            ex.finish(self.max_request_bytes)
            with self._lock:
                self._active -= 1
                self._lock.notify_all()

    def _dispatch(self, ex: Exchange) -> None:
        route = _route(ex.path)
        if route is None:
            raise ApiError(
                404,
                f"Unknown request URL: {ex.method} {ex.path}. This server offers "
                f"{', '.join(r for r in ROUTES if '{' not in r)}.",
                code="unknown_url",
            )
        if ex.method not in ROUTES[route]:
            allowed = ", ".join(ROUTES[route])
            raise ApiError(
                405,
                f"{ex.path} answers {allowed} only, not {ex.method}.",
                code="method_not_allowed",
                headers={"Allow": allowed},
            )
        guards.check_host(self, ex)
        guards.check_origin(self, ex)
        guards.check_key(self, ex)
        if ex.method == "POST":  # checked before a span is started: a refused request leaves no trace
            guards.check_json(ex)
        if self.stopping:
            raise shutting_down()
        backend = self.backend()  # this request's, for its span, its model and its generation
        tracing = self._tracing or backend.tracing
        span = spans.start_request(tracing, ex.method, route, ex.peer)
        outcome, error = None, None
        try:
            outcome = self._answer(ex, route, span, tracing, backend)
        except BaseException as exc:  # recorded on the span; handle() answers it
            error = exc
            raise
        finally:
            status = ex.status or getattr(error, "status", None) or (500 if error else None)
            spans.finish_request(tracing, span, status, outcome, error)

    def _answer(self, ex: Exchange, route: str, span, tracing: Tracing, backend: Backend):
        info = backend.model_info  # read once: a reload in between does not mix two models in one answer
        if route == "/v1/models":
            ex.send_json(200, endpoints.list_models(self, info, self.started_at))
            return None
        if route == "/v1/models/{model}":
            model_id = unquote(ex.path[len("/v1/models/") :])
            ex.send_json(200, endpoints.one_model(self, info, model_id, self.started_at))
            return None
        body = self._json_body(ex)
        if route == "/v1/embeddings":
            call = parse_embeddings(body)
            spans.describe(tracing, span, operation="embeddings", model=call.model, summary=call.inputs[0])
            tokens = endpoints.embed(self, info, ex, call)
            set_attributes(span, {"gen_ai.usage.input_tokens": tokens, "locus.api.inputs": len(call.inputs)})
            return None
        generation = (parse_chat if route == "/v1/chat/completions" else parse_completion)(body)
        spans.describe(
            tracing,
            span,
            operation="chat" if generation.kind == "chat" else "text_completion",
            model=generation.model,
            stream=generation.stream,
            summary=generation.summary,
        )
        model = endpoints.chat_model(self, info, generation.model)
        if generation.documents is not None:
            ended = documents.answer(self, ex, generation, model)
            spans.link_answer(span, ended)
            return ended
        return generate(self, ex, generation, backend, model, span)

    def _json_body(self, ex: Exchange) -> dict:
        raw = ex.read_body(self.max_request_bytes)
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise invalid(
                "We could not parse the JSON body of your request. It must be a JSON object, sent "
                "with Content-Type: application/json.",
                code="invalid_json",
            ) from None
        if not isinstance(body, dict):
            raise invalid("The JSON body of the request must be an object.", code="invalid_json")
        try:  # a \ud800-style escape parses into text that cannot be encoded (or tokenized)
            json.dumps(body, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise invalid(
                "The request contains text with an unpaired UTF-16 surrogate escape.", code="invalid_json"
            ) from None
        return body


def _route(path: str) -> str | None:
    if path in ROUTES:
        return path
    if path.startswith("/v1/models/") and len(path) > len("/v1/models/"):
        return "/v1/models/{model}"
    return None
