"""What an imported answer keeps of its ``stats`` and ``answered_by``: only the keys Locus writes
(engine/answer.py AnswerStats.to_dict, engine/assistants.py AnsweredBy), each with its type and within bounds;
a value of another type or out of bounds is dropped (the answer is kept), and so is every other key.

``trace_id`` is never kept: a copy must not share trace ids with the original, or deleting the copy's branch
would delete the original's traces.
"""

from __future__ import annotations

import math
from typing import Any

_INTS = (
    "generations",
    "prompt_tokens",
    "reused_prompt_tokens",
    "completion_tokens",
    "dropped_messages",
    "truncated_prompts",
)
_SECONDS = ("queue_s", "prompt_eval_s", "time_to_first_token_s", "generation_s", "total_s")
_TEXTS = {"model": 500, "finish_reason": 50, "healed_text": 10_000}
_MAX_COUNT = 10**12
_MAX_SECONDS = 10**8
_MAX_RATE = 10**7
_MAX_CALLS = 1000
_CALL_TEXTS = {"id": 200, "name": 200, "status": 20, "approval": 20, "result": 100_000}
_BY_TEXTS = {"assistant": 200, "name": 200, "model": 500, "model_wanted": 500, "system_prompt": 128, "source": 50}


def _int(value: Any, low: int, high: int) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high else None


def _float(value: Any, high: float) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if math.isfinite(value) and 0 <= value <= high else None


def _text(value: Any, limit: int) -> str | None:
    return value if isinstance(value, str) and len(value) <= limit and "\x00" not in value else None


def _scalar(value: Any) -> Any:
    """A plain value a task's figures may hold (text, a number, true/false), or None."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return _int(value, -_MAX_COUNT, _MAX_COUNT)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return _text(value, 1000)


def _call(raw: Any) -> dict | None:
    """One tool call as the answer's stats keep it (ui/chat/tool_calls.py CallState.saved)."""
    if not isinstance(raw, dict):
        return None
    out: dict[str, Any] = {}
    for key, limit in _CALL_TEXTS.items():
        if (text := _text(raw.get(key), limit)) is not None:
            out[key] = text
    if isinstance(raw.get("arguments"), (dict, list, str, int, float, bool)):
        out["arguments"] = raw["arguments"]  # shown as indented JSON text, never run
    if (step := _int(raw.get("step"), 1, 10_000)) is not None:
        out["step"] = step
    if isinstance(raw.get("truncated"), bool):
        out["truncated"] = raw["truncated"]
    if (duration := _float(raw.get("duration_s"), _MAX_SECONDS)) is not None:
        out["duration_s"] = duration
    return out


def _details(raw: Any) -> dict | None:
    if not isinstance(raw, dict):
        return None
    out: dict[str, Any] = {}
    for key, value in list(raw.items())[:100]:
        if key == "tool_calls":
            if isinstance(value, list):
                out[key] = [c for c in (_call(v) for v in value[:_MAX_CALLS]) if c is not None]
        elif len(key) <= 100 and (kept := _scalar(value)) is not None:
            out[key] = kept
    return out


def stats(raw: dict | None) -> dict | None:
    """The known stats of an imported answer, each of its type and within bounds; None when none is left."""
    if raw is None:
        return None
    out: dict[str, Any] = {}
    for key in _INTS:
        if (n := _int(raw.get(key), 0, _MAX_COUNT)) is not None:
            out[key] = n
    for key in _SECONDS:
        if (s := _float(raw.get(key), _MAX_SECONDS)) is not None:
            out[key] = s
    if (rate := _float(raw.get("tokens_per_s"), _MAX_RATE)) is not None:
        out["tokens_per_s"] = rate
    for key, limit in _TEXTS.items():
        if (text := _text(raw.get(key), limit)) is not None:
            out[key] = text
    if (seed := _int(raw.get("seed"), -(2**63), 2**64)) is not None:
        out["seed"] = seed
    if (details := _details(raw.get("details"))) is not None:
        out["details"] = details
    return out or None


def answered_by(raw: dict | None) -> dict | None:
    """Who answered an imported message: the known keys, of their types; None when none is left."""
    if raw is None:
        return None
    out: dict[str, Any] = {}
    for key, limit in _BY_TEXTS.items():
        if (text := _text(raw.get(key), limit)) is not None:
            out[key] = text
    sampling = raw.get("sampling")
    if isinstance(sampling, dict):
        kept = {k: _scalar(v) for k, v in list(sampling.items())[:50] if len(k) <= 50}
        out["sampling"] = {k: v for k, v in kept.items() if v is not None}
    return out or None


def by_model(model: object, source: str) -> dict | None:
    """``answered_by`` of an answer from another app: the model it names (None when it names none)."""
    return answered_by({"model": model, "source": source}) if isinstance(model, str) else None
