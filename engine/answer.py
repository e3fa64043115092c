"""One shape for every answer: chat, answers from documents, tasks (and, later, agent steps).

An answer is one stream of events. It always begins with ``AnswerStarted`` (which names the
conversation and the saved messages, so a consumer never has to wait for a handle to learn
them) and always ends with exactly one ``AnswerEnded`` (outcome, whole text, stats, trace id).
In between, any of: ``Retrieved`` (passages found for a question from documents), ``Generating``
(the model began evaluating a prompt), ``TextDelta`` (more text, in order), ``Progress`` (a step
of a multi-step task), ``Cited`` (the sources the answer rests on, just before the end), and for an
answer that uses tools, per call: ``ToolCallStarted``, maybe ``ApprovalNeeded``, then ``ToolCallEnded``.

The runtime's own events (``engine.runtime.types``: Started, Token, Done, Failed) describe one
generation; an answer may hold several generations (a long summary) or none (it failed first).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Literal

from engine.errors import EngineError
from engine.tools.base import ToolCall, ToolResult

if TYPE_CHECKING:
    from engine.rag.cite import Citation
    from engine.rag.retrieve import Passage
    from engine.runtime.types import GenerationStats

Outcome = Literal["complete", "cancelled", "failed"]


@dataclass(frozen=True)
class AnswerStats:
    """How an answer went, over all of its generations (one for a chat answer, many for a long task).

    Timings to the first token come from the first generation; ``finish_reason`` and ``seed`` from
    the last one. Saved with the answer (``to_dict``) and shown in the status bar.
    """

    model: str = ""
    generations: int = 0
    prompt_tokens: int = 0
    reused_prompt_tokens: int = 0
    completion_tokens: int = 0
    queue_s: float = 0.0
    prompt_eval_s: float = 0.0
    time_to_first_token_s: float | None = None
    generation_s: float = 0.0
    total_s: float = 0.0
    dropped_messages: int = 0
    truncated_prompts: int = 0
    finish_reason: str = ""
    seed: int | None = None
    healed_text: str = ""
    details: dict = field(default_factory=dict)  # a task's own figures (translate: languages, paragraphs kept)

    @property
    def tokens_per_s(self) -> float | None:
        """Decoding speed over the answer's generations (None before any token was decoded)."""
        return self.completion_tokens / self.generation_s if self.completion_tokens and self.generation_s else None

    def plus(self, stats: GenerationStats) -> AnswerStats:
        """These stats with one more finished generation added."""
        first = self.generations == 0
        return AnswerStats(
            model=stats.model or self.model,
            generations=self.generations + 1,
            prompt_tokens=self.prompt_tokens + stats.prompt_tokens,
            reused_prompt_tokens=self.reused_prompt_tokens + stats.reused_prompt_tokens,
            completion_tokens=self.completion_tokens + stats.completion_tokens,
            queue_s=self.queue_s + stats.queue_s,
            prompt_eval_s=self.prompt_eval_s + stats.prompt_eval_s,
            time_to_first_token_s=stats.time_to_first_token_s if first else self.time_to_first_token_s,
            generation_s=self.generation_s + stats.generation_s,
            total_s=self.total_s + stats.total_s,
            dropped_messages=self.dropped_messages + stats.dropped_messages,
            truncated_prompts=self.truncated_prompts + int(stats.truncated_input),
            finish_reason=stats.finish_reason,
            seed=stats.seed,
            healed_text=self.healed_text or stats.healed_text,
            details=self.details,
        )

    def with_total(self, total_s: float, details: dict | None = None) -> AnswerStats:
        """These stats with the answer's own wall-clock time (which includes retrieval and waiting), and
        the task's own figures when given."""
        return AnswerStats(
            **{**asdict(self), "total_s": total_s, "details": dict(details) if details is not None else self.details}
        )

    def to_dict(self) -> dict:
        """A JSON-ready dict (saved with the message), ``tokens_per_s`` included."""
        return {**asdict(self), "tokens_per_s": self.tokens_per_s}

    @classmethod
    def from_dict(cls, data: dict | None) -> AnswerStats:
        """Stats saved by ``to_dict`` (or by an older Locus, whose extra keys are ignored)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (data or {}).items() if k in known})


@dataclass(frozen=True)
class AnswerStarted:
    """Always the first event: what is answering, and where the answer is saved.

    ``conversation_id`` and the message ids are None for an answer that is not saved
    (``locus ask --no-history``, a task run from the terminal).
    """

    answer_id: int
    kind: str  # "chat", "doc_qa", or a task's name ("summarize", "translate", "code", "extract")
    conversation_id: int | None
    user_message_id: int | None
    assistant_message_id: int | None
    backend: str  # the backend that answers ("local" or "remote")
    trace_id: str | None


@dataclass(frozen=True)
class Retrieved:
    """The passages found for a question from documents, before generation starts."""

    answer_id: int
    passages: tuple[Passage, ...]
    collections: tuple[str, ...]  # () means all documents


@dataclass(frozen=True)
class Generating:
    """The model began evaluating a prompt for this answer (it left the queue)."""

    answer_id: int


@dataclass(frozen=True)
class TextDelta:
    """More of the answer's text, in order."""

    answer_id: int
    text: str


@dataclass(frozen=True)
class Progress:
    """A multi-step answer advanced: ``done`` of ``total`` steps of ``stage`` (e.g. "Summarizing part")."""

    answer_id: int
    stage: str
    done: int
    total: int


@dataclass(frozen=True)
class Cited:
    """The sources an answer from documents rests on (comes just before AnswerEnded)."""

    answer_id: int
    citations: tuple[Citation, ...]


@dataclass(frozen=True)
class ToolCallStarted:
    """The model asked for a tool call (an agent answer); the call runs next, or waits for approval."""

    answer_id: int
    call: ToolCall
    step: int  # which model turn of the answer asked for it (1, 2, ...)


@dataclass(frozen=True)
class ApprovalNeeded:
    """A tool call waits for the user: answer with ``handle.approve(call_id, "once" | "conversation" |
    "deny")``. Nothing a tool or a model says can answer it."""

    answer_id: int
    call: ToolCall


@dataclass(frozen=True)
class ToolCallEnded:
    """A tool call ended (ran, failed, timed out, was denied or cancelled); ``result.text`` is untrusted."""

    answer_id: int
    result: ToolResult


@dataclass(frozen=True)
class AnswerEnded:
    """Always the last event, exactly once.

    ``text`` is the whole answer: everything, when complete; what was said before the stop, when
    cancelled; what was said before the failure, when failed (``error`` then says why).
    """

    answer_id: int
    outcome: Outcome
    text: str
    stats: AnswerStats
    trace_id: str | None
    error: EngineError | None = None

    @property
    def complete(self) -> bool:
        return self.outcome == "complete"

    @property
    def cancelled(self) -> bool:
        return self.outcome == "cancelled"

    @property
    def failed(self) -> bool:
        return self.outcome == "failed"


AnswerEvent = (
    AnswerStarted
    | Retrieved
    | Generating
    | TextDelta
    | Progress
    | ToolCallStarted
    | ApprovalNeeded
    | ToolCallEnded
    | Cited
    | AnswerEnded
)
