"""The runtime: one thread that owns the generator and serves queued requests.

Callers never touch llama.cpp. They ``load`` a model and ``submit`` requests;
events come back through a callback (called on the runtime thread) or, for
callers that prefer to block, through ``RequestHandle.events()``.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field

from engine.errors import EngineError, ModelLoadError, ModelNotLoadedError, RuntimeStoppedError
from engine.runtime.generator import Generator, wrap_unexpected
from engine.runtime.types import (
    Done,
    Failed,
    GenerationEvent,
    GenerationRequest,
    GenerationStats,
    LoadProgress,
    ModelConfig,
    ModelInfo,
    ModelLoaded,
    ModelLoadFailed,
    RuntimeEvent,
    Started,
)
from engine.trace.generation import GenerationSpan
from engine.trace.tracing import Tracing

log = logging.getLogger(__name__)

_LOAD_PRIORITY = -1  # a model switch goes ahead of queued generations


class EventChannel:
    """Delivers a request's events to a callback, or queues them for ``events()``.

    Either way ``wait()`` returns the terminal event (Done or Failed) once it has been
    delivered. A consumer's exception is logged, never passed back to the sender.
    """

    terminal: tuple[type, ...] = (Done, Failed)  # the events that end the stream

    def __init__(self, on_event: Callable[[object], None] | None, tap: Callable[[object], None] | None = None):
        self._on_event = on_event
        self._tap = tap  # sees every event before the consumer (e.g. to save it)
        self._queue: queue.SimpleQueue | None = None if on_event else queue.SimpleQueue()
        self._finished = threading.Event()
        self.result = None

    def emit(self, event) -> None:
        final = isinstance(event, self.terminal)
        if final:
            self.result = event
        if self._tap is not None:
            try:
                self._tap(event)
            except Exception:  # saving failed: the consumer still gets the event
                log.exception("event tap failed on %s", type(event).__name__)
        try:
            if self._on_event is not None:
                self._on_event(event)
            else:
                self._queue.put(event)
        except Exception:  # a consumer's bug must not take the sending thread down
            log.exception("event consumer failed on %s", type(event).__name__)
        if final:
            self._finished.set()

    def wait(self, timeout: float | None = None) -> Done | Failed | None:
        self._finished.wait(timeout)
        return self.result

    def events(self) -> Iterator:
        """Yield events until Done or Failed (only without a callback)."""
        if self._queue is None:
            raise RuntimeError("These events go to a callback, not to events().")
        while True:
            event = self._queue.get()
            yield event
            if isinstance(event, self.terminal):
                return


class ChannelHandle:
    """Work whose events go through an EventChannel: wait for it, iterate over its events, read its result."""

    channel: EventChannel

    def events(self) -> Iterator:
        """Every event up to the terminal one (only without a callback)."""
        return self.channel.events()

    def wait(self, timeout: float | None = None):
        """The terminal event once it has been delivered (None if ``timeout`` ran out first)."""
        return self.channel.wait(timeout)

    @property
    def result(self):
        return self.channel.result


class RequestHandle(ChannelHandle):
    """A submitted request: cancel it, wait for it, or iterate over its events."""

    def __init__(
        self,
        request: GenerationRequest,
        on_event: Callable[[GenerationEvent], None] | None,
        tap: Callable[[GenerationEvent], None] | None = None,
        trace_parent=None,
    ):
        self.request = request
        self.request_id = request.request_id
        self.submitted_at = time.perf_counter()
        self.submitted_ns = time.time_ns()
        self.trace_parent = trace_parent  # an OpenTelemetry context: the generation span's parent
        self._tap = tap
        self._cancel = threading.Event()
        self.channel = EventChannel(on_event)

    def cancel(self) -> None:
        """Stop the request: before it starts, or within one token step while it runs."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def _emit(self, event: GenerationEvent) -> None:
        if self._tap is not None:
            try:
                self._tap(event)
            except Exception:  # the tap (history) failing must not lose the event for the consumer
                log.exception("event tap failed on %s", type(event).__name__)
        self.channel.emit(event)


@dataclass(order=True)
class _Job:
    priority: int
    seq: int
    kind: str = field(compare=False)  # "load", "unload", "generate", "stop"
    payload: object = field(compare=False, default=None)


@dataclass
class _LoadPayload:
    config: ModelConfig
    future: Future
    on_event: Callable[[RuntimeEvent], None] | None


class Runtime:
    """Serves generation requests on its own thread, in priority order."""

    def __init__(self, tracing: Tracing | None = None) -> None:
        self.tracing = tracing or Tracing.disabled()
        self.last_tokens_per_s: float | None = None  # of the latest finished generation (a metrics gauge)
        self._jobs: queue.PriorityQueue[_Job] = queue.PriorityQueue()
        self._seq = itertools.count()
        self._generator: Generator | None = None
        self._load_requested = False
        self._stopped = False
        self._lock = threading.Lock()
        self._current: RequestHandle | None = None
        # Held while a generator is swapped out or freed, and while other threads tokenize with it.
        self._model_lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, name="locus-runtime", daemon=True)
        self._thread.start()

    # Public API ------------------------------------------------------------------

    @property
    def model_info(self) -> ModelInfo | None:
        gen = self._generator
        return gen.info if gen else None

    @property
    def queue_length(self) -> int:
        """Requests waiting or running (a metrics gauge)."""
        return self._jobs.qsize() + (1 if self._current is not None else 0)

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes for the loaded model (any thread; tokenizing only reads the vocabulary)."""
        with self._model_lock:
            gen = self._generator
            if gen is None:
                raise ModelNotLoadedError("No model is loaded yet.", hint="Wait for the model to load.")
            return len(gen.model.tokenize(text, add_special=False, parse_special=False))

    def render_prompt(self, messages) -> tuple[str, int]:
        """The exact prompt the loaded model's chat template makes of ``messages``, and its token count."""
        with self._model_lock:
            gen = self._generator
            if gen is None:
                raise ModelNotLoadedError("No model is loaded yet.", hint="Wait for the model to load.")
            text = gen.template.render(messages)
            return text, len(gen.model.tokenize(text, add_special=False, parse_special=True))

    def load(self, config: ModelConfig, on_event: Callable[[RuntimeEvent], None] | None = None) -> Future:
        """Load a model (replacing the current one once the new one is ready); resolves to ModelInfo."""
        future: Future = Future()
        with self._lock:
            if self._stopped:
                future.set_exception(RuntimeStoppedError("The engine is shutting down."))
                return future
            self._load_requested = True
            self._put(_LOAD_PRIORITY, "load", _LoadPayload(config, future, on_event))
        return future

    def submit(
        self,
        request: GenerationRequest,
        on_event: Callable[[GenerationEvent], None] | None = None,
        *,
        tap: Callable[[GenerationEvent], None] | None = None,
        trace_parent=None,
    ) -> RequestHandle:
        """Queue a request. Without a callback, read its events with ``handle.events()``.

        ``tap`` sees every event first, on the runtime thread (the history uses it to
        persist the answer before anyone else hears of it). ``trace_parent`` (an OpenTelemetry
        context) makes the request's generation span a child of the caller's span.
        """
        handle = RequestHandle(request, on_event, tap, trace_parent)
        with self._lock:
            if self._stopped:
                handle._emit(Failed(request.request_id, RuntimeStoppedError("The engine is shutting down.")))
                return handle
            self._put(int(request.priority), "generate", handle)
        return handle

    def cancel_all(self) -> None:
        """Cancel the running request (queued ones are left alone)."""
        current = self._current
        if current is not None:
            current.cancel()

    def shutdown(self, timeout: float = 10.0) -> None:
        """Cancel what runs, fail what waits, free the model, stop the thread."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self.cancel_all()
        self._put(-100, "stop")
        self._thread.join(timeout)

    # The runtime thread ----------------------------------------------------------

    def _put(self, priority: int, kind: str, payload: object = None) -> None:
        self._jobs.put(_Job(priority, next(self._seq), kind, payload))

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            if job.kind == "stop":
                break
            if job.kind == "load":
                self._do_load(job.payload)
            elif job.kind == "generate":
                self._do_generate(job.payload)
        self._drain()
        with self._model_lock:
            if self._generator is not None:
                self._generator.close()
                self._generator = None

    def _drain(self) -> None:
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            if job.kind == "generate":
                job.payload._emit(Failed(job.payload.request_id, RuntimeStoppedError("The engine shut down.")))
            elif job.kind == "load":
                job.payload.future.set_exception(RuntimeStoppedError("The engine shut down."))

    def _do_load(self, payload: _LoadPayload) -> None:
        config, notify = payload.config, payload.on_event or (lambda _e: None)
        last = [-1.0]

        def progress(fraction: float) -> bool:
            if fraction - last[0] >= 0.01 or fraction >= 1.0:
                last[0] = fraction
                notify(LoadProgress(fraction, config.path))
            return not self._stopped

        try:
            generator = Generator(config, progress=progress)
        except BaseException as exc:  # noqa: BLE001 - reported to the caller, runtime keeps its model
            error = exc if isinstance(exc, EngineError) else ModelLoadError(
                f"The model '{config.path}' could not be loaded.", detail=f"{type(exc).__name__}: {exc}"
            )
            log.warning("model load failed: %s (%s)", error, error.detail)
            notify(ModelLoadFailed(error, config.path))
            payload.future.set_exception(error)
            return
        with self._model_lock:
            old, self._generator = self._generator, generator
            if old is not None:
                old.close()
        notify(ModelLoaded(generator.info))
        payload.future.set_result(generator.info)

    def _do_generate(self, handle: RequestHandle) -> None:
        rid = handle.request_id
        generator = self._generator
        span = GenerationSpan(self.tracing, handle, generator.info if generator else None)
        if handle.cancelled:
            done = Done(rid, "", GenerationStats(finish_reason="cancelled"))
            span.finish(done, generator)
            handle._emit(done)
            return
        if generator is None:
            message = (
                "The model failed to load, so there is nothing to answer with."
                if self._load_requested
                else "No model is loaded yet."
            )
            error = ModelNotLoadedError(message, hint="Choose a model in Settings.")
            span.fail(error)
            handle._emit(Failed(rid, error))
            return
        self._current = handle
        try:
            handle._emit(Started(rid))
            done = generator.generate(handle.request, handle._cancel, handle._emit, handle.submitted_at)
        except BaseException as exc:  # noqa: BLE001 - every failure becomes an event
            error = wrap_unexpected(exc)
            log.warning("generation %s failed: %s (%s)", rid, error, error.detail)
            span.fail(error)
            handle._emit(Failed(rid, error))
        else:
            if done.stats.tokens_per_s:
                self.last_tokens_per_s = done.stats.tokens_per_s
            span.finish(done, generator)
            handle._emit(done)
        finally:
            self._current = None
