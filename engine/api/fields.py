"""Reading the fields of a JSON request body, each mistake reported with the field's name.

JSON ``true`` is a Python ``int`` too, so every number check leaves booleans out.
"""

from __future__ import annotations

import math

from engine.api.errors import invalid
from engine.errors import EngineError

_MISSING = object()


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def number(body: dict, name: str, low: float, high: float, default=None):
    """An optional number in [low, high] (null counts as not given)."""
    value = body.get(name)
    if value is None:
        return default
    if not _is_number(value):
        raise invalid(f"'{name}' must be a number, not {_show(value)}.", name)
    if not low <= value <= high:
        raise invalid(f"'{name}' is {value}; it must be between {low:g} and {high:g}.", name)
    return value


def integer(body: dict, name: str, low: int, high: int | None = None, default=None):
    """An optional whole number of at least ``low`` (and at most ``high``)."""
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise invalid(f"'{name}' must be a whole number, not {_show(value)}.", name)
    if value < low or (high is not None and value > high):
        bound = f"at least {low}" if high is None else f"between {low} and {high}"
        raise invalid(f"'{name}' is {value}; it must be {bound}.", name)
    return value


def boolean(body: dict, name: str, default: bool = False) -> bool:
    """An optional true/false."""
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise invalid(f"'{name}' must be true or false, not {_show(value)}.", name)
    return value


def text(body: dict, name: str, *, required: bool = False, default: str | None = None) -> str | None:
    """An optional (or required) string."""
    value = body.get(name, _MISSING)
    if value is _MISSING or value is None:
        if required:
            raise invalid(f"'{name}' is required.", name)
        return default
    if not isinstance(value, str):
        raise invalid(f"'{name}' must be a string, not {_show(value)}.", name)
    return value


def mapping(body: dict, name: str) -> dict | None:
    """An optional JSON object."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid(f"'{name}' must be an object, not {_show(value)}.", name)
    return value


def stop_strings(body: dict, name: str = "stop", most: int = 16) -> tuple[str, ...]:
    """``stop`` as a string or a list of strings (each non-empty)."""
    value = body.get(name)
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
        raise invalid(f"'{name}' must be a string or a list of strings.", name)
    if any(not s for s in items):
        raise invalid(f"'{name}' must not contain empty strings.", name)
    if len(items) > most:
        raise invalid(f"'{name}' has {len(items)} sequences; at most {most} are allowed.", name)
    return tuple(dict.fromkeys(items))


def seed(body: dict) -> int:
    """``seed`` as the engine takes it (0 to 2**32-1; -1 for a fresh one); any whole number is accepted."""
    value = integer(body, "seed", -(2**63), 2**64 - 1)
    return -1 if value is None else value % 2**32


def sampling(make, **fields):
    """Build SamplingParams, turning its own range checks into a 400 (it names the setting)."""
    try:
        return make(**fields)
    except EngineError as exc:
        raise invalid(exc.user_text()) from None


def _show(value: object) -> str:
    kind = {dict: "an object", list: "a list", str: "a string", bool: "true/false"}.get(type(value))
    if kind:
        return kind
    if value is None:
        return "null"
    return repr(value)[:40]
