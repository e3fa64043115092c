"""The one way an answer's generations run: a plain function over a TaskContext.

A task (summarize, translate, code help, extract) is ``fn(ctx) -> str``; so is a chat answer (one
streamed generation of the conversation). It asks the backend for generations through ``ctx.generate``
(one or many, e.g. map-reduce), reports ``ctx.progress`` and streams output with ``ctx.emit_text``; all of
it goes out as the answer's events (engine/answer.py). ``AnswerHandle.cancel()`` stops the generation
running now within one token and makes the task's next ``ctx.generate``/``ctx.check_cancel`` end it;
``run_steps`` then reports the answer cancelled, with the text streamed so far.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace

from engine.answer import AnswerEvent, AnswerStats, ApprovalNeeded, Generating, Outcome, Progress
from engine.answering import AnswerStream, Cancellation
from engine.errors import EngineError, InvalidRequestError
from engine.runtime.backend import Backend
from engine.runtime.budget import context_window
from engine.runtime.generator import wrap_unexpected
from engine.runtime.types import ChatMessage, Done, Failed, GenerationRequest, Priority, SamplingParams, Started, Token
from engine.tasks.templates import PromptTemplate, TemplateLibrary
from engine.tools.base import Approval, ToolCall, ToolSpec

log = logging.getLogger(__name__)


class TaskCancelled(Exception):
    """Raised inside a task when the user cancelled it; ``run_steps`` turns it into a cancelled answer."""


class TaskContext:
    """What a task function may use: the backend that answers, the templates, sampling, progress and cancel.

    ``stats`` adds up the task's generations (an AnswerStats); ``details`` holds the task's own figures
    (translate: the languages and paragraphs), sent with the answer's stats; ``citations``, sources the
    steps found themselves (a document search tool's), cited with the answer.
    """

    def __init__(
        self,
        backend: Backend,
        templates: TemplateLibrary | None,
        sampling: SamplingParams,
        stream: AnswerStream,
        cancellation: Cancellation,
        *,
        priority: Priority = Priority.NORMAL,
        token_healing: bool = True,
        span=None,
        trace_parent=None,
        conversation_key: str | None = None,
    ):
        self.backend = backend
        self.templates = templates
        self.sampling = sampling
        self.priority = priority
        self.token_healing = token_healing  # the user's setting, for completion-style prompts
        self.span = span  # the answer's root span (a task may add attributes to it)
        self.trace_parent = trace_parent  # its generations become children of the answer's span
        self.conversation_key = conversation_key  # turns of one conversation reuse its cached prompt
        self.stats = AnswerStats()
        self.details: dict = {}
        self.citations: list = []
        self.answer_id = stream.answer_id
        self._stream = stream
        self._cancellation = cancellation

    # Control --------------------------------------------------------------------------

    @property
    def cancelled(self) -> bool:
        return self._cancellation.cancelled

    def check_cancel(self) -> None:
        if self._cancellation.cancelled:
            raise TaskCancelled()

    def progress(self, stage: str, done: int, total: int) -> None:
        if self.span is not None and self.span.is_recording():
            self.span.add_event("progress", {"stage": stage, "done": done, "total": total})
        self._stream.emit(Progress(self._stream.answer_id, stage, done, total))

    def emit_text(self, text: str) -> None:
        """Add to the answer's output (streamed to the caller at once)."""
        self._stream.text(text)

    @property
    def output(self) -> str:
        """All the output streamed so far."""
        return self._stream.said

    # The model -----------------------------------------------------------------------

    @property
    def n_ctx(self) -> int:
        return context_window(self.backend.model_info)

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes for the model that answers."""
        return self.backend.count_tokens(text)

    def template(self, name: str) -> PromptTemplate:
        """The prompt template of that name; InvalidRequestError when there are none."""
        if self.templates is None:
            raise InvalidRequestError("No prompt templates are available.")
        return self.templates.get(name)

    def render(self, template: str, **values: object) -> tuple[ChatMessage, ...]:
        return self.template(template).render(**values)

    def generate(
        self,
        messages: Sequence[ChatMessage] | None = None,
        *,
        prompt: str | None = None,
        stream: bool = False,
        grammar: str | None = None,
        max_tokens: int | None = None,
        sampling: SamplingParams | None = None,
        token_healing: bool | None = None,
    ) -> str:
        """Run one generation to its end and return its text; ``stream`` also emits it as output.

        Raises TaskCancelled when the answer is cancelled (the partial text streamed so far
        stays in the output), or the generation's EngineError when it fails.
        """
        healing = self.token_healing if token_healing is None else token_healing
        return self._generate(
            dict(messages=tuple(messages or ()), prompt=prompt, grammar=grammar, token_healing=healing),
            stream,
            max_tokens,
            sampling,
        ).text

    def generate_step(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] = (),
        tool_choice: str = "auto",
        stream: bool = False,
        max_tokens: int | None = None,
    ) -> Done:
        """One model turn of an answer that may call tools: the whole Done (its text and its tool calls)."""
        return self._generate(
            dict(messages=tuple(messages), tools=tuple(tools), tool_choice=tool_choice), stream, max_tokens, None
        )

    def _generate(self, fields: dict, stream: bool, max_tokens: int | None, sampling: SamplingParams | None) -> Done:
        self.check_cancel()
        params = sampling or self.sampling
        if max_tokens is not None:
            params = replace(params, max_tokens=max(1, max_tokens))
        request = GenerationRequest(
            sampling=params, priority=self.priority, conversation_key=self.conversation_key, **fields
        )

        def on_event(event) -> None:  # on the backend's thread: hand over, never wait
            if isinstance(event, Token) and stream:
                self._stream.text(event.text)
            elif isinstance(event, Started) and self.stats.generations == 0:
                self._stream.emit(Generating(self._stream.answer_id))

        handle = self.backend.submit(request, on_event, trace_parent=self.trace_parent)
        self._cancellation.attach(handle)
        try:
            result = handle.wait()
        finally:
            self._cancellation.detach()
        if isinstance(result, Failed):
            raise result.error
        assert isinstance(result, Done)
        self.stats = self.stats.plus(result.stats)
        if result.stats.finish_reason == "cancelled" or self._cancellation.cancelled:
            raise TaskCancelled()
        return result

    # Tools (an agent's answer: engine/agent.py) -------------------------------------------

    def emit(self, event: AnswerEvent) -> None:
        """Send one of the answer's events (a tool call's start or end)."""
        self._stream.emit(event)

    def wait_for_approval(self, call: ToolCall) -> Approval:
        """Ask the user about a tool call (ApprovalNeeded) and wait for ``AnswerHandle.approve``: nothing
        else can answer it. Raises TaskCancelled when the answer is stopped first."""
        approvals = self._stream.handle.approvals
        approvals.expect(call.id)  # before the event: a consumer may answer from its callback
        self._stream.emit(ApprovalNeeded(self._stream.answer_id, call))
        approval = approvals.wait(call.id, self._cancellation)
        if approval is None:
            raise TaskCancelled()
        return approval

    @property
    def cancellation(self) -> Cancellation:
        """The answer's stop request (a running tool attaches to it, as a generation does)."""
        return self._cancellation


def run_steps(fn: Callable[[TaskContext], str | None], ctx: TaskContext) -> tuple[Outcome, str, EngineError | None]:
    """Run an answer's function: its outcome, its whole text (what was streamed, when it stopped early)
    and, when it failed, the error in words for people."""
    try:
        text = fn(ctx)
    except TaskCancelled:
        return "cancelled", ctx.output, None
    except BaseException as exc:  # noqa: BLE001 - every failure becomes the answer's end
        error = exc if isinstance(exc, EngineError) else wrap_unexpected(exc)
        log.warning("answer %s failed: %s (%s)", ctx.answer_id, error, error.detail)
        return "failed", ctx.output, error
    return "complete", text if text is not None else ctx.output, None


def require_text(text: str, what: str = "text") -> str:
    """The input of a task, refused when empty."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidRequestError(f"There is no {what} to work on.")
    return text
