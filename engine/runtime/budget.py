"""How much of the context window a prompt may take, and fitting a conversation into it.

``context_window`` and ``prompt_budget`` are the one source of those numbers for every backend, the
Assistant and the tasks. Oldest turns go first, whole exchanges at a time, and the system prompt always
stays. When trimming is needed it trims down to a low-water mark rather than to
the edge, and the caller remembers the starting turn: the next few turns then
start at the same place, so their prompt prefix (and its KV cache) is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from engine.runtime.types import ChatMessage, ModelInfo

DEFAULT_N_CTX = 4096  # the window assumed when a backend does not say (before a load, a server that reports none)
OMISSION = "\n[…part of this message was left out to fit the context window…]\n"

Encode = Callable[[Sequence[ChatMessage]], list[int]]
Shorten = Callable[[str, int], str]


def context_window(info: ModelInfo | None) -> int:
    """The context window of the model that answers (DEFAULT_N_CTX when it is not known)."""
    return info.n_ctx if info is not None and info.n_ctx else DEFAULT_N_CTX


def prompt_budget(n_ctx: int, max_tokens: int) -> int:
    """Tokens a prompt may take in a window of ``n_ctx``: the answer keeps room for ``max_tokens``, but never
    more than half the window (a long answer cut short beats a question left out)."""
    return n_ctx - max(1, min(max_tokens, n_ctx // 2))


@dataclass(frozen=True)
class FittedPrompt:
    tokens: list[int]
    start: int  # index into the non-system messages of the first one kept
    truncated: bool  # a kept message had to be shortened
    messages: tuple[ChatMessage, ...] | None  # what the tokens encode; None after a hard cut

    @property
    def dropped(self) -> int:
        """How many of the oldest messages were left out."""
        return self.start


def fit_prompt(
    messages: Sequence[ChatMessage],
    *,
    encode: Encode,
    shorten: Shorten,
    budget: int,
    start: int = 0,
    low_water: float = 0.75,
) -> FittedPrompt:
    """Tokens of the longest suffix of the conversation that fits in ``budget`` tokens."""
    system = [messages[0]] if messages and messages[0].role == "system" else []
    body = list(messages[len(system) :])
    last = len(body) - 1
    start = _turn_start(body, min(max(start, 0), last))

    tokens = encode(system + body[start:])
    if len(tokens) <= budget:
        return FittedPrompt(tokens, start, False, tuple(system + body[start:]))

    # Binary search over the turn boundaries for the oldest start that fits the
    # low-water mark: a few renders instead of one per dropped turn.
    target = int(budget * low_water)
    starts = sorted({_turn_start(body, i) for i in range(start + 1, last + 1)})
    lo, hi, best = 0, len(starts) - 1, None
    while lo <= hi:
        mid = (lo + hi) // 2
        candidate = encode(system + body[starts[mid] :])
        if len(candidate) <= target:
            best, hi = (starts[mid], candidate), mid - 1
        else:
            lo = mid + 1
    if best is not None:
        start, tokens = best
    elif starts:
        start = starts[-1]
        tokens = encode(system + body[start:])
    if len(tokens) <= budget:
        return FittedPrompt(tokens, start, False, tuple(system + body[start:]))

    # Even the newest turn alone does not fit: shorten it, then the system prompt.
    kept = system + body[start:]
    for index in [len(kept) - 1] + ([0] if system else []):
        for _ in range(8):
            excess = len(tokens) - budget
            if excess <= 0:
                break
            message = kept[index]
            own = len(encode([replace(message, content="")]))
            allowed = max(0, len(encode([message])) - own - excess - 16)
            kept[index] = replace(message, content=shorten(message.content, allowed))
            tokens = encode(kept)
        if len(tokens) <= budget:
            break
    if len(tokens) <= budget:
        return FittedPrompt(tokens, start, True, tuple(kept))
    return FittedPrompt(tokens[-budget:], start, True, None)  # last resort: keep the end


def _turn_start(body: list[ChatMessage], index: int) -> int:
    """The first user message at or after index (a kept history must not open mid-exchange)."""
    last = len(body) - 1
    while index < last and body[index].role != "user":
        index += 1
    return index
