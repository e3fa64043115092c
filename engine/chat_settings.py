"""What every answer gets unless its request says otherwise, and the one default system prompt (the
settings file's default is this text too: app/settings.py imports it)."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.errors import InvalidRequestError
from engine.runtime.types import SamplingParams

DEFAULT_SYSTEM_PROMPT = (
    "You are Locus, a helpful assistant running privately on the user's computer. Answer clearly and concisely."
)


@dataclass(frozen=True)
class AgentSettings:
    """The limits of an answer that uses tools (engine/agent.py), and which tools run without asking.

    ``max_steps``: model turns in one answer (each may ask for calls); ``max_tokens``: tokens the model may
    write over all of them; ``max_seconds``: wall-clock time of the answer, not counting the time it waits
    for the user's approval; ``call_timeout_s``: one call's time; ``result_max_chars``: the most of one
    result the model is given (longer ones are cut, with a note). ``trusted``: tool names that run without
    asking; ``trust_read_only``: tools that say they only read (MCP's readOnlyHint, built-ins' own) run
    without asking too (off unless the user turns it on). ``reset_tool_choice``: a "required" or named
    tool choice holds for the first step only, so the model can answer with what the calls returned.
    """

    max_steps: int = 8
    max_tokens: int = 4096
    max_seconds: float = 300.0
    call_timeout_s: float = 60.0
    result_max_chars: int = 8000
    trusted: tuple[str, ...] = ()
    trust_read_only: bool = False
    reset_tool_choice: bool = True

    def __post_init__(self) -> None:
        for name, low in (
            ("max_steps", 1),
            ("max_tokens", 1),
            ("max_seconds", 0.001),
            ("call_timeout_s", 0.001),
            ("result_max_chars", 100),
        ):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= low:
                raise InvalidRequestError(f"Tool setting '{name}' is {value!r}; it must be at least {low}.")


@dataclass(frozen=True)
class ChatSettings:
    """What every request gets unless it says otherwise."""

    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    sampling: SamplingParams = field(default_factory=SamplingParams)
    token_healing: bool = True  # for completion-style prompts (tasks, the local API)
    agent: AgentSettings = field(default_factory=AgentSettings)  # answers that use tools
