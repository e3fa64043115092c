"""Plain data that crosses the runtime's boundary: configs, requests, events, stats."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Literal

from engine.errors import EngineError, InvalidRequestError
from engine.runtime.kv_cache import combination_problem
from engine.tools.base import ToolCall, ToolSpec

Role = Literal["system", "user", "assistant", "tool"]
# "tool_calls": the answer is one or more tool calls (Done.tool_calls), for the caller to run.
FinishReason = Literal["stop", "length", "cancelled", "error", "tool_calls"]
TOOL_CHOICES = ("auto", "none", "required")  # or the name of one of the request's tools

_request_ids = itertools.count(1)


def next_request_id() -> int:
    """A process-unique id for a generation request."""
    return next(_request_ids)


@dataclass(frozen=True)
class ModelConfig:
    """What to load and how: the GGUF path and the llama.cpp context settings."""

    path: str
    n_ctx: int = 4096
    n_threads: int = 0  # 0: one per available core
    n_gpu_layers: int = 0  # -1: all layers
    n_batch: int = 512
    display_name: str | None = None  # shown instead of the GGUF's general.name
    n_parallel: int = 4  # requests decoded together in one batch (continuous batching)
    kv_ram_mb: int = 512  # saved KV states of idle conversations kept in RAM
    kv_spill_dir: str | None = None  # where states pushed out of RAM go (None: they are dropped)
    kv_spill_mb: int = 2048  # the most the spill folder holds
    speculative: str = "off"  # speculative decoding: "prompt_lookup", "draft" or "off"
    draft_model: str | None = None  # with "draft": a GGUF of the same vocabulary that drafts
    kv_cache_type: str = "f16"  # K and V cache elements: f16, q8_0 or q4_0 (kv_cache.KV_CACHE_TYPES)
    flash_attention: str = "auto"  # auto, on or off; a quantized cache needs it
    # Sampling in llama.cpp's graph, on the device (sampler.py): "auto" (with layers on a GPU), "on" or "off".
    backend_sampling: str = "auto"

    def __post_init__(self) -> None:
        limits = (
            ("n_ctx", 16, None),
            ("n_batch", 1, None),
            ("n_parallel", 1, 128),
            ("kv_ram_mb", 0, None),
            ("kv_spill_mb", 0, None),
        )
        for name, low, high in limits:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low or (high and value > high):
                within = f"from {low} to {high}" if high else f"of at least {low}"
                raise InvalidRequestError(f"Model setting '{name}' is {value!r}; it must be a whole number {within}.")
        if self.speculative not in ("off", "prompt_lookup", "draft"):
            raise InvalidRequestError(
                f"Model setting 'speculative' is {self.speculative!r}; it must be 'prompt_lookup', 'draft' or 'off'."
            )
        if self.backend_sampling not in ("auto", "on", "off"):
            raise InvalidRequestError(
                f"Model setting 'backend_sampling' is {self.backend_sampling!r}; it must be 'auto', 'on' or 'off'."
            )
        if self.speculative == "draft" and not self.draft_model:
            raise InvalidRequestError("Speculative decoding with a draft model needs the draft model's file.")
        if self.n_batch < self.n_parallel:  # every running request puts at least one token in each batch
            raise InvalidRequestError(
                f"Model setting 'n_batch' ({self.n_batch}) must be at least 'n_parallel' ({self.n_parallel})."
            )
        problem = combination_problem(self.kv_cache_type, self.flash_attention)
        if problem:
            raise InvalidRequestError(problem)


@dataclass(frozen=True)
class ModelInfo:
    """What the loaded model is, for the status bar and traces."""

    path: str
    name: str
    description: str
    n_params: int
    size_bytes: int
    n_ctx: int
    n_ctx_train: int
    n_threads: int
    n_gpu_layers: int
    chat_template_source: str  # "gguf" or "fallback"


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings, applied by llama.cpp's native sampler chain."""

    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    repeat_last_n: int = 64
    seed: int = -1  # -1: a fresh random seed per request
    max_tokens: int = 512
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        checks = [
            ("temperature", self.temperature, 0.0, 5.0),
            ("top_p", self.top_p, 0.0, 1.0),
            ("top_k", self.top_k, 0, 100_000),
            ("min_p", self.min_p, 0.0, 1.0),
            ("repeat_penalty", self.repeat_penalty, 0.1, 5.0),
            ("repeat_last_n", self.repeat_last_n, 0, 100_000),
            ("seed", self.seed, -1, 2**32 - 1),
            ("max_tokens", self.max_tokens, 1, 1_000_000),
        ]
        for name, value, low, high in checks:
            if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
                raise InvalidRequestError(f"Sampling setting '{name}' must be a number, not {value!r}.")
            if not low <= value <= high:
                raise InvalidRequestError(f"Sampling setting '{name}' is {value}; allowed values are {low} to {high}.")
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise InvalidRequestError("Stop strings must be non-empty text.")


@dataclass(frozen=True)
class ChatMessage:
    """One turn of a conversation as the model sees it.

    An assistant turn that called tools carries them in ``tool_calls`` (its ``content`` may be empty);
    each result comes back as a ``tool`` message whose ``content`` is the result text, ``tool_call_id``
    the call it answers and ``name`` the tool's name.
    """

    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None


class Priority(IntEnum):
    """Lower runs first."""

    INTERACTIVE = 0
    NORMAL = 1
    BACKGROUND = 2


@dataclass(frozen=True)
class GenerationRequest:
    """A chat completion (``messages``) or a plain text completion (``prompt``), and how to sample.

    ``grammar`` (GBNF, see constrain.schema_to_grammar for JSON schemas) restricts the output;
    ``token_healing`` applies to plain prompts that may end in the middle of a token.

    ``tools`` are offered to the model (a chat request only); ``tool_choice`` is "auto" (the model
    decides), "none" (no tool is offered), "required" (at least one call) or one tool's name (a call
    of that tool). A backend answers calls with ``Done.tool_calls`` and finish reason "tool_calls";
    it never runs them.
    """

    messages: tuple[ChatMessage, ...] = ()
    sampling: SamplingParams = field(default_factory=SamplingParams)
    # Requests with the same key are turns of one conversation: the runtime keeps
    # their trimming point stable so the KV cache of the shared prefix is reused.
    conversation_key: str | None = None
    priority: Priority = Priority.INTERACTIVE
    request_id: int = field(default_factory=next_request_id)
    prompt: str | None = None
    grammar: str | None = None
    token_healing: bool = True
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: str = "auto"

    def __post_init__(self) -> None:
        self._check_tools()
        if self.prompt is not None:
            if self.messages:
                raise InvalidRequestError("A request has either messages or a prompt, not both.")
            if not isinstance(self.prompt, str) or not self.prompt:
                raise InvalidRequestError("A completion prompt must be non-empty text.")
        if self.grammar is not None and (not isinstance(self.grammar, str) or not self.grammar.strip()):
            raise InvalidRequestError("A grammar must be non-empty GBNF text.")
        if self.prompt is not None:
            return
        if not self.messages:
            raise InvalidRequestError("A request needs at least one message.")
        for m in self.messages:
            if m.role not in ("system", "user", "assistant", "tool"):
                raise InvalidRequestError(f"Message role '{m.role}' is not one of: system, user, assistant, tool.")
            if not isinstance(m.content, str):
                raise InvalidRequestError("Message content must be text.")
            if m.tool_calls and (m.role != "assistant" or not all(isinstance(c, ToolCall) for c in m.tool_calls)):
                raise InvalidRequestError("Only an assistant message carries tool calls.")
            for text in (m.tool_call_id, m.name):
                if text is not None and (not isinstance(text, str) or not text):
                    raise InvalidRequestError("A tool message's call id and name must be non-empty text.")

    def _check_tools(self) -> None:
        if not isinstance(self.tool_choice, str) or not self.tool_choice:
            raise InvalidRequestError("The tool choice must be auto, none, required or a tool's name.")
        if not self.tools:
            if self.tool_choice not in ("auto", "none"):
                raise InvalidRequestError(f"The tool choice '{self.tool_choice}' needs tools, and none were given.")
            return
        if self.prompt is not None:
            raise InvalidRequestError("Tools are offered in a chat, not with a plain completion prompt.")
        if not all(isinstance(t, ToolSpec) for t in self.tools):
            raise InvalidRequestError("Each tool must be a ToolSpec.")
        names = [t.name for t in self.tools]
        if len(set(names)) != len(names):
            raise InvalidRequestError("Two tools have the same name.")
        if self.tool_choice not in TOOL_CHOICES and self.tool_choice not in names:
            raise InvalidRequestError(f"The tool choice '{self.tool_choice}' is not one of the request's tools.")
        if self.grammar is not None and self.tool_choice != "none":
            raise InvalidRequestError("A request cannot offer tools and a grammar of its own together.")

    @property
    def offered_tools(self) -> tuple[ToolSpec, ...]:
        """The tools the model is told about: none for tool_choice "none", only the named one for a name."""
        if self.tool_choice == "none":
            return ()
        if self.tool_choice in TOOL_CHOICES:
            return self.tools
        return tuple(t for t in self.tools if t.name == self.tool_choice)


@dataclass(frozen=True)
class GenerationStats:
    """How one request went: token counts and timings."""

    prompt_tokens: int = 0
    reused_prompt_tokens: int = 0
    completion_tokens: int = 0
    queue_s: float = 0.0
    prompt_build_s: float = 0.0  # rendering, fitting the window, tokenizing (part of prompt_eval_s)
    prompt_eval_s: float = 0.0
    time_to_first_token_s: float | None = None
    generation_s: float = 0.0
    tokens_per_s: float | None = None
    total_s: float = 0.0
    dropped_messages: int = 0
    truncated_input: bool = False
    finish_reason: FinishReason = "stop"
    model: str = ""
    seed: int | None = None
    healed_text: str = ""  # text taken back from the end of a plain prompt and generated again
    draft_tokens: int = 0  # speculative decoding: guessed tokens checked by the model
    accepted_draft_tokens: int = 0  # of them, the ones the model would have written anyway
    sampled_on: str = ""  # "device": in llama.cpp's graph (backend sampling); "cpu"; "": not known (remote)


# Events ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadProgress:
    """Model loading advanced; ``fraction`` in [0, 1]."""

    fraction: float
    path: str


@dataclass(frozen=True)
class ModelLoaded:
    info: ModelInfo


@dataclass(frozen=True)
class ModelLoadFailed:
    error: EngineError
    path: str


@dataclass(frozen=True)
class Started:
    """The request left the queue and its prompt is being evaluated."""

    request_id: int


@dataclass(frozen=True)
class Token:
    """Newly generated text (may be several tokens' worth, or empty of whitespace)."""

    request_id: int
    text: str
    n_tokens: int


@dataclass(frozen=True)
class Done:
    """The request finished: normally, at max tokens, cancelled, or with tool calls (see stats.finish_reason).

    With tool calls, ``text`` is what the model said beside them (often nothing) and ``tool_calls`` the
    calls, parsed and checked against their tools' schemas (finish reason "tool_calls").
    """

    request_id: int
    text: str
    stats: GenerationStats
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True)
class Failed:
    request_id: int
    error: EngineError


GenerationEvent = Started | Token | Done | Failed
RuntimeEvent = LoadProgress | ModelLoaded | ModelLoadFailed
