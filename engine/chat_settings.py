"""What every answer gets unless its request says otherwise, and the one default system prompt (the
settings file's default is this text too: app/settings.py imports it)."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.runtime.types import SamplingParams

DEFAULT_SYSTEM_PROMPT = ("You are Locus, a helpful assistant running privately on the user's computer. "
                         "Answer clearly and concisely.")


@dataclass(frozen=True)
class ChatSettings:
    """What every request gets unless it says otherwise."""

    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    sampling: SamplingParams = field(default_factory=SamplingParams)
    token_healing: bool = True  # for completion-style prompts (tasks, the local API)
