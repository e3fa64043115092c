"""The runtime: one thread that owns the generator and serves many requests at once.

Callers never touch llama.cpp. They ``load`` a model and ``submit`` requests; events come
back through a callback (called on the runtime thread) or, for callers that prefer to
block, through ``RequestHandle.events()``. The thread admits waiting requests by priority
into the generator's batch between two decode steps, and each leaves the batch the moment
it is done (see batcher.py and scheduler.py).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

from engine.errors import EngineError, ModelLoadError, ModelNotLoadedError, RuntimeStoppedError
from engine.runtime.backend import LOCAL
from engine.runtime.generator import Generator, wrap_unexpected
from engine.runtime.grammar_check import GrammarChecker, Verdict, model_key, start_grammar_thread
from engine.runtime.handles import ChannelHandle, EventChannel, RequestHandle
from engine.runtime.scheduler import SCHEDULING, Scheduler, Scheduling, Work
from engine.runtime.sequence import Sequence
from engine.runtime.types import (
    ChatMessage,
    Done,
    Failed,
    GenerationEvent,
    GenerationRequest,
    LoadProgress,
    ModelConfig,
    ModelInfo,
    ModelLoaded,
    ModelLoadFailed,
    RuntimeEvent,
    Started,
)
from engine.tools.base import ToolSpec
from engine.trace.generation import GenerationSpan
from engine.trace.tracing import Tracing

__all__ = ["ChannelHandle", "EventChannel", "RequestHandle", "Runtime", "RuntimeDiagnostics"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RuntimeDiagnostics:
    """A snapshot of the runtime's insides, for tests and benchmarks (exact while it is idle): whether a
    model is loaded and the runtime thread runs, the batch and KV cache sizes it was loaded with,
    llama.cpp's own token counters and the cache's eviction counters."""

    loaded: bool
    thread_alive: bool
    max_active: int = 0  # sequences decoded together
    kv_ram_bytes: int = 0  # saved states of idle conversations kept in RAM
    kv_spill_bytes: int = 0  # and on disk
    # Since the model was loaded or reset_token_counts() (llama.cpp's perf counters, which say 1 for none).
    prompt_tokens_evaluated: int = 0
    tokens_generated: int = 0
    evicted: int = 0  # idle caches given up for room
    restored: int = 0
    recomputed: int = 0


@dataclass
class _LoadPayload:
    config: ModelConfig
    future: Future
    on_event: Callable[[RuntimeEvent], None] | None


class Runtime:
    """Serves generation requests on its own thread: by priority, several at once (see ``Scheduling``).

    The local ``Backend`` (engine/runtime/backend.py): the model runs in this process.

    A request's grammar is checked (grammar_check.py) before its sampler is built; while the check
    runs in a worker process the request is out of the queue and the others go on.
    """

    def __init__(
        self,
        tracing: Tracing | None = None,
        *,
        scheduling: Scheduling = "batch",
        grammar_checker: GrammarChecker | None = None,
    ) -> None:
        if scheduling not in SCHEDULING:
            raise ValueError(f"scheduling must be one of {', '.join(SCHEDULING)}, not {scheduling!r}")
        self.tracing = tracing or Tracing.disabled()
        self.scheduling = scheduling
        self.last_tokens_per_s: float | None = None  # of the latest finished generation (a metrics gauge)
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._grammars = grammar_checker or GrammarChecker()
        self._scheduler = Scheduler(
            scheduling,
            start=self._start,
            fail=self._report_failure,
            end=self._end,
            on_finish=self._finished,
            vet=self._vet,
        )
        self._loads: deque[_LoadPayload] = deque()
        self._generator: Generator | None = None
        self._load_requested = False
        self._stopped = self._stopping = False
        self._lock = threading.Lock()
        self._in_flight = 0  # submitted and not yet finished (a metrics gauge)
        # Held while a generator is swapped out or freed, and while other threads tokenize with it.
        self._model_lock = threading.Lock()
        self._thread = start_grammar_thread(self._serve, "locus-runtime")  # it parses grammars

    # Public API ------------------------------------------------------------------

    @property
    def kind(self) -> str:
        """LOCAL: the model runs in this process."""
        return LOCAL

    @property
    def model_info(self) -> ModelInfo | None:
        gen = self._generator
        return gen.info if gen else None

    @property
    def loads_waiting(self) -> int:
        """Model loads asked for and not yet begun (diagnostics)."""
        return len(self._loads)

    @property
    def generator(self) -> Generator | None:
        """The loaded model's generator (None before a load), for tests and benchmarks that look inside
        the batch and the KV cache (see RuntimeDiagnostics): read it only while the runtime is idle, or
        from an event callback (the runtime thread)."""
        return self._generator

    @property
    def queue_length(self) -> int:
        """Requests waiting or running (a metrics gauge)."""
        return self._in_flight

    def count_tokens(self, text: str, *, special: bool = False) -> int:
        """Tokens ``text`` takes for the loaded model (any thread; tokenizing only reads the vocabulary).
        ``special``: the text is a rendered prompt, whose special tokens (<|im_start|>) count as one each."""
        with self._model_lock:
            gen = self._generator
            if gen is None:
                raise ModelNotLoadedError("No model is loaded yet.", hint="Wait for the model to load.")
            return len(gen.model.tokenize(text, add_special=False, parse_special=special))

    def diagnostics(self) -> RuntimeDiagnostics:
        """What the runtime holds now (see RuntimeDiagnostics)."""
        with self._model_lock:
            gen = self._generator
            alive = self._thread.is_alive()
            if gen is None:
                return RuntimeDiagnostics(loaded=False, thread_alive=alive)
            evaluated, generated = gen.ctx.token_counts()
            slots = gen.slots
            return RuntimeDiagnostics(
                loaded=True,
                thread_alive=alive,
                max_active=gen.batcher.max_active,
                kv_ram_bytes=gen.store.ram_bytes,
                kv_spill_bytes=gen.store.spill_bytes,
                prompt_tokens_evaluated=evaluated,
                tokens_generated=generated,
                evicted=slots.evicted,
                restored=slots.restored,
                recomputed=slots.recomputed,
            )

    def reset_token_counts(self) -> None:
        """Start the token counters of ``diagnostics()`` again from zero (for a test or benchmark that counts
        what one request evaluates; llama.cpp says 1 for each until something was evaluated)."""
        with self._model_lock:
            if self._generator is not None:
                self._generator.ctx.reset_token_counts()

    def render_prompt(self, messages: tuple[ChatMessage, ...], tools: tuple[ToolSpec, ...] = ()) -> tuple[str, int]:
        """The exact prompt the loaded model's chat template makes of ``messages`` (and ``tools`` offered),
        and its token count."""
        with self._model_lock:
            gen = self._generator
            if gen is None:
                raise ModelNotLoadedError("No model is loaded yet.", hint="Wait for the model to load.")
            text = gen.template.render(messages, tools=tools)
            return text, len(gen.model.tokenize(text, add_special=False, parse_special=True))

    def load(self, config: ModelConfig, on_event: Callable[[RuntimeEvent], None] | None = None) -> Future:
        """Load a model (replacing the current one once running requests are done); resolves to ModelInfo."""
        future: Future = Future()
        with self._lock:
            if self._stopped:
                future.set_exception(RuntimeStoppedError("The engine is shutting down."))
                return future
            self._load_requested = True
            self._inbox.put(("load", _LoadPayload(config, future, on_event)))
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
            self._in_flight += 1
            self._inbox.put(("generate", handle))
        return handle

    def forget(self, conversation_key: str) -> Future:
        """Drop a deleted conversation's cached state (its idle slot, RAM and spill file) on the runtime
        thread; resolves to how many caches were dropped."""
        future: Future = Future()
        with self._lock:
            if self._stopped:
                future.set_result(0)
                return future
            self._inbox.put(("forget", (conversation_key, future)))
        return future

    def cancel_all(self) -> None:
        """Cancel the running requests (queued ones are left alone)."""
        for work in list(self._scheduler.running.values()):
            work.handle.cancel()

    def shutdown(self, timeout: float = 10.0) -> None:
        """Cancel what runs, fail what waits, free the model, stop the thread."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self.cancel_all()
        self._inbox.put(("stop", None))
        self._thread.join(timeout)

    # The runtime thread ----------------------------------------------------------

    def _busy(self) -> bool:
        gen = self._generator
        return gen is not None and gen.batcher.busy

    def _serve(self) -> None:
        scheduler = self._scheduler
        while True:
            idle = not (self._busy() or len(scheduler.waiting) or self._loads)
            # Idle time goes into copying idle conversations' caches to the store, one at a time
            # (milliseconds each), so that making room later costs a request nothing.
            working = idle and self._save_one_idle()
            self._take_messages(block=idle and not working)
            if self._stopping:
                break
            try:
                self._turn(scheduler)
            except Exception as exc:
                log.exception("the runtime's scheduling failed")
                self._recover(wrap_unexpected(exc))
        self.cancel_all()  # shutdown cancelled them already; let them finish as cancelled
        while self._busy():
            self._step()
        scheduler.sweep_cancelled()
        scheduler.stop(RuntimeStoppedError("The engine shut down."))
        while self._loads:
            self._loads.popleft().future.set_exception(RuntimeStoppedError("The engine shut down."))
        self._grammars.close()  # requests whose grammar was being checked come back as messages
        self._take_messages(block=False)  # anything that arrived while stopping
        scheduler.stop(RuntimeStoppedError("The engine shut down."))
        with self._model_lock:
            if self._generator is not None:
                self._generator.close()
                self._generator = None

    def _turn(self, scheduler: Scheduler) -> None:
        """Between two decode steps: drop what was cancelled, load a model, admit waiting requests, step."""
        scheduler.sweep_cancelled()
        if self._loads and not self._busy() and not scheduler.preempted:
            self._do_load(self._loads.popleft())
            return
        no_model = (
            "The model failed to load, so there is nothing to answer with."
            if self._load_requested
            else "No model is loaded yet."
        )
        scheduler.admit(self._generator, no_model, resume_only=bool(self._loads))
        if self._busy():
            self._step()
        elif len(scheduler.waiting) and not self._loads:
            scheduler.unschedulable()

    def _save_one_idle(self) -> bool:
        if self._generator is None:
            return False
        try:
            return self._generator.slots.save_one_idle()
        except Exception:
            log.exception("copying an idle conversation's cache failed")
            return False

    def _recover(self, error: EngineError) -> None:
        """After an unexpected failure between steps: fail what runs and the request at the head of the
        queue (the likeliest cause), so the thread goes on serving the rest instead of failing forever."""
        if self._generator is not None and self._generator.batcher.busy:
            self._generator.batcher.fail_all(error)
        if len(self._scheduler.waiting):
            self._scheduler.fail_head(error)

    def _take_messages(self, block: bool) -> None:
        try:
            message = self._inbox.get() if block else self._inbox.get_nowait()
        except queue.Empty:
            return
        while True:
            kind, payload = message
            if kind == "generate":
                self._scheduler.add(payload)
            elif kind == "load":
                self._loads.append(payload)
            elif kind == "checked":
                self._checked(*payload)
            elif kind == "forget":
                self._forget(*payload)
            else:
                self._stopping = True
            try:
                message = self._inbox.get_nowait()
            except queue.Empty:
                return

    def _forget(self, key: str, future: Future) -> None:
        try:
            future.set_result(self._generator.slots.forget(key) if self._generator is not None else 0)
        except Exception as exc:
            log.exception("forgetting a conversation's cache failed")
            future.set_exception(wrap_unexpected(exc))

    def _vet(self, work: Work, gen: Generator) -> bool:
        """Whether the request's grammar may be built for this model: True once its check passed, False
        while it is being checked (the request leaves the queue, and comes back as a "checked" message);
        raises the check's error when it failed."""
        grammar = gen.grammar_of(work.handle.request)  # a tools request's grammar is built here, once
        if grammar is None:
            return True
        model = model_key(gen.config.path)
        if work.vetted == model:
            return True
        verdict = self._grammars.known(grammar, gen.config.path)
        if verdict is None:
            self._grammars.submit(grammar, gen.config.path, lambda v: self._inbox.put(("checked", (work, model, v))))
            return False
        verdict.raise_if_bad()
        work.vetted = model
        return True

    def _checked(self, work: Work, model: str, verdict: Verdict) -> None:
        if verdict.ok:
            work.vetted = model
        self._scheduler.requeue(work, None if verdict.ok else verdict.error())

    def _step(self) -> None:
        gen = self._generator
        assert gen is not None  # steps run only while a model is loaded
        try:
            gen.batcher.step()
        except Exception as exc:
            log.exception("decode step failed")
            gen.batcher.fail_all(wrap_unexpected(exc))

    def _start(self, work: Work) -> None:
        """A request leaves the queue: its span opens and its caller hears it started."""
        work.span = GenerationSpan(self.tracing, work.handle, self._generator.info if self._generator else None)
        work.handle._emit(Started(work.request_id))

    def _finished(self, seq: Sequence) -> None:
        """A sequence is done (called by the batcher): trace it and tell the caller."""
        work = self._scheduler.running.pop(seq.request_id, None)
        if work is None:
            return
        if seq.error is not None:
            self._report_failure(work, seq.error)
            return
        done = seq.done
        assert done is not None and work.span is not None  # it ended, and it had started
        if done.stats.tokens_per_s:
            self.last_tokens_per_s = done.stats.tokens_per_s
        work.span.finish(done, seq)
        self._emit_final(work.handle, done)

    def _report_failure(self, work: Work, error: EngineError) -> None:
        log.warning("generation %s failed: %s (%s)", work.handle.request_id, error, error.detail)
        if work.span is not None:  # (None when opening it was what failed)
            work.span.fail(error)
        self._emit_final(work.handle, Failed(work.handle.request_id, error))

    def _end(self, work: Work, event: Done | Failed) -> None:
        """A request that never started ends (cancelled in the queue, no model, shutdown)."""
        span = GenerationSpan(self.tracing, work.handle, self._generator.info if self._generator else None)
        if isinstance(event, Failed):
            span.fail(event.error)
        else:
            span.finish(event, None)
        self._emit_final(work.handle, event)

    def _emit_final(self, handle: RequestHandle, event: Done | Failed) -> None:
        with self._lock:
            self._in_flight -= 1
        handle._emit(event)

    def _do_load(self, payload: _LoadPayload) -> None:
        config, on_event = payload.config, payload.on_event

        def notify(event: RuntimeEvent) -> None:
            if on_event is None:
                return
            try:
                on_event(event)
            except Exception:
                log.exception("load event consumer failed on %s", type(event).__name__)

        last = [-1.0]

        def progress(fraction: float) -> bool:
            if fraction - last[0] >= 0.01 or fraction >= 1.0:
                last[0] = fraction
                notify(LoadProgress(fraction, config.path))
            return not self._stopped

        try:
            generator = Generator(config, progress=progress, max_active=None if self.scheduling == "batch" else 1)
        except BaseException as exc:  # noqa: BLE001 - reported to the caller, runtime keeps its model
            error = (
                exc
                if isinstance(exc, EngineError)
                else ModelLoadError(
                    f"The model '{config.path}' could not be loaded.", detail=f"{type(exc).__name__}: {exc}"
                )
            )
            log.warning("model load failed: %s (%s)", error, error.detail)
            notify(ModelLoadFailed(error, config.path))
            payload.future.set_exception(error)
            return
        self._scheduler.rebuild()
        with self._model_lock:
            old, self._generator = self._generator, generator
            if old is not None:
                old.close()
        notify(ModelLoaded(generator.info))
        payload.future.set_result(generator.info)
