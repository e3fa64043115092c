"""The one way tasks run: a plain function over a TaskContext, on its own thread, with events.

A task (summarize, translate, code help, extract) is ``fn(ctx) -> str``. It asks
the runtime for generations through ``ctx.generate`` (one or many, e.g. map-
reduce), reports ``ctx.progress`` and streams output with ``ctx.emit_text``.
``TaskHandle.cancel()`` stops the generation running now within one token and
makes the task's next ``ctx.generate``/``ctx.check_cancel`` end it; the task
then finishes with ``TaskDone(cancelled=True)`` and the text streamed so far.
Events: TaskProgress* / TaskText*, then TaskDone or TaskFailed.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from engine.errors import EngineError, InvalidRequestError
from engine.runtime.generator import wrap_unexpected
from engine.runtime.runtime import ChannelHandle, EventChannel, RequestHandle, Runtime
from engine.runtime.types import (
    ChatMessage,
    Done,
    Failed,
    GenerationRequest,
    Priority,
    SamplingParams,
    Token,
)
from engine.tasks.templates import TemplateLibrary
from engine.trace.tracing import Tracing, context_of, fail, set_attributes, trace_id_of

log = logging.getLogger(__name__)
_task_ids = itertools.count(1)


@dataclass(frozen=True)
class TaskProgress:
    """A multi-step task advanced: ``done`` of ``total`` steps of ``stage`` (e.g. "Summarizing part")."""

    task_id: int
    stage: str
    done: int
    total: int


@dataclass(frozen=True)
class TaskText:
    """More of the task's output, in order."""

    task_id: int
    text: str


@dataclass(frozen=True)
class TaskDone:
    """The task ended; ``text`` is its whole output (what was streamed, when cancelled)."""

    task_id: int
    text: str
    cancelled: bool = False
    stats: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TaskFailed:
    task_id: int
    error: EngineError


TaskEvent = TaskProgress | TaskText | TaskDone | TaskFailed


class TaskCancelled(Exception):
    """Raised inside a task when the user cancelled it; the runner turns it into TaskDone(cancelled)."""


class TaskContext:
    """What a task function may use: the runtime, the templates, sampling, progress and cancel."""

    def __init__(self, runtime: Runtime, templates: TemplateLibrary, sampling: SamplingParams,
                 emit: Callable[[object], None], task_id: int, priority: Priority = Priority.NORMAL,
                 token_healing: bool = True):
        self.runtime = runtime
        self.token_healing = token_healing  # the user's setting, for completion-style prompts
        self.templates = templates
        self.sampling = sampling
        self.priority = priority
        self.task_id = task_id
        self._emit = emit
        self.trace_parent = None  # the task's span context: its generations become children of it
        self.span = None
        self._cancel = threading.Event()
        self._current: RequestHandle | None = None
        self._lock = threading.Lock()
        self.output: list[str] = []
        self.stats = {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "generation_s": 0.0}

    # Control --------------------------------------------------------------------------

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def cancel(self) -> None:
        with self._lock:
            self._cancel.set()
            if self._current is not None:
                self._current.cancel()

    def check_cancel(self) -> None:
        if self._cancel.is_set():
            raise TaskCancelled()

    def progress(self, stage: str, done: int, total: int) -> None:
        if self.span is not None and self.span.is_recording():
            self.span.add_event("progress", {"stage": stage, "done": done, "total": total})
        self._emit(TaskProgress(self.task_id, stage, done, total))

    def emit_text(self, text: str) -> None:
        """Add to the task's output (streamed to the caller at once)."""
        if text:
            self.output.append(text)
            self._emit(TaskText(self.task_id, text))

    # The model -----------------------------------------------------------------------

    @property
    def n_ctx(self) -> int:
        info = self.runtime.model_info
        return info.n_ctx if info else 4096

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes for the loaded model."""
        return self.runtime.count_tokens(text)

    def render(self, template: str, **values: object) -> tuple[ChatMessage, ...]:
        return self.templates.get(template).render(**values)

    def generate(self, messages: Sequence[ChatMessage] | None = None, *, prompt: str | None = None,
                 stream: bool = False, grammar: str | None = None, max_tokens: int | None = None,
                 sampling: SamplingParams | None = None, token_healing: bool | None = None) -> str:
        """Run one generation to its end and return its text; ``stream`` also emits it as output.

        Raises TaskCancelled when the task is cancelled (the partial text streamed so far
        stays in the output), or the generation's EngineError when it fails.
        """
        self.check_cancel()
        params = sampling or self.sampling
        if max_tokens is not None:
            params = replace(params, max_tokens=max(1, max_tokens))
        healing = self.token_healing if token_healing is None else token_healing
        request = GenerationRequest(tuple(messages or ()), params, priority=self.priority, prompt=prompt,
                                    grammar=grammar, token_healing=healing)

        def on_event(event) -> None:
            if stream and isinstance(event, Token):
                self.emit_text(event.text)

        with self._lock:
            self._current = handle = self.runtime.submit(request, on_event, trace_parent=self.trace_parent)
            if self._cancel.is_set():
                handle.cancel()
        try:
            result = handle.wait()
        finally:
            with self._lock:
                self._current = None
        if isinstance(result, Failed):
            raise result.error
        assert isinstance(result, Done)
        s = result.stats
        self.stats["requests"] += 1
        self.stats["prompt_tokens"] += s.prompt_tokens
        self.stats["completion_tokens"] += s.completion_tokens
        self.stats["generation_s"] += s.total_s
        self.stats["truncated_prompts"] = self.stats.get("truncated_prompts", 0) + int(s.truncated_input)
        if s.finish_reason == "cancelled" or self._cancel.is_set():
            raise TaskCancelled()
        return result.text


class TaskHandle(ChannelHandle):
    """A running task: cancel it, wait for it, or iterate over its events (up to TaskDone or TaskFailed)."""

    def __init__(self, channel: EventChannel, task_id: int):
        self.task_id = task_id
        self.channel = channel
        self.context: TaskContext | None = None
        self.trace_id: str | None = None
        # Set when the task runs as a turn of a conversation (Assistant.run_task).
        self.conversation_id: int | None = None
        self.user_message = None
        self.assistant_message_id: int | None = None

    def cancel(self) -> None:
        if self.context is not None:
            self.context.cancel()


class _TaskChannel(EventChannel):
    """An EventChannel whose terminal events are the task's own."""

    terminal = (TaskDone, TaskFailed)


def start_task(fn: Callable[[TaskContext], str], runtime: Runtime, templates: TemplateLibrary,
               sampling: SamplingParams, on_event: Callable[[object], None] | None = None, *,
               priority: Priority = Priority.NORMAL, name: str = "task",
               tap: Callable[[object], None] | None = None, token_healing: bool = True,
               tracing: Tracing | None = None, summary: str = "", conversation_id: int | None = None) -> TaskHandle:
    """Run ``fn(ctx)`` on its own thread; its return value is the TaskDone text.

    ``tap`` sees every event before the consumer does (the history uses it to save the output).
    The task is one trace (root span named after it); its stats carry the ``trace_id``.
    """
    task_id = next(_task_ids)
    handle = TaskHandle(_TaskChannel(on_event, tap), task_id)
    ctx = TaskContext(runtime, templates, sampling, handle.channel.emit, task_id, priority, token_healing)
    handle.context = ctx
    tracing = tracing or runtime.tracing
    info = runtime.model_info
    span = tracing.start(name, attributes={"locus.task": name, "locus.task_id": task_id,
                                           "gen_ai.request.model": info.name if info else None,
                                           "gen_ai.conversation.id": conversation_id})
    if summary:
        tracing.content(span, "locus.summary", summary[:300])
    ctx.span, ctx.trace_parent = span, context_of(span)
    handle.trace_id = trace_id_of(span)
    if handle.trace_id:
        ctx.stats["trace_id"] = handle.trace_id

    def finish(text: str | None, cancelled: bool = False, error: BaseException | None = None) -> None:
        set_attributes(span, {"locus.cancelled": cancelled, "locus.generations": ctx.stats["requests"],
                              "gen_ai.usage.input_tokens": ctx.stats["prompt_tokens"],
                              "gen_ai.usage.output_tokens": ctx.stats["completion_tokens"]})
        if error is not None:
            fail(span, error)
        elif text:
            tracing.content(span, "locus.response", text)
        span.end()

    def run() -> None:
        t0 = time.perf_counter()
        try:
            text = fn(ctx)
        except TaskCancelled:
            ctx.stats["total_s"] = time.perf_counter() - t0
            text = "".join(ctx.output)
            finish(text, cancelled=True)
            handle.channel.emit(TaskDone(task_id, text, cancelled=True, stats=dict(ctx.stats)))
        except BaseException as exc:  # noqa: BLE001 - every failure becomes an event
            error = exc if isinstance(exc, EngineError) else wrap_unexpected(exc)
            log.warning("task %s (%s) failed: %s (%s)", task_id, name, error, error.detail)
            finish(None, error=error)
            handle.channel.emit(TaskFailed(task_id, error))
        else:
            ctx.stats["total_s"] = time.perf_counter() - t0
            text = text if text is not None else "".join(ctx.output)
            finish(text)
            handle.channel.emit(TaskDone(task_id, text, stats=dict(ctx.stats)))

    threading.Thread(target=run, name=f"locus-task-{name}-{task_id}", daemon=True).start()
    return handle


def require_text(text: str, what: str = "text") -> str:
    """The input of a task, refused when empty."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidRequestError(f"There is no {what} to work on.")
    return text
