"""Making a ToolResult: text capped to a size, with a note saying so, for every kind of tool."""

from __future__ import annotations

import time

from engine.tools.base import ToolResult, ToolStatus

DEFAULT_RESULT_MAX_CHARS = 8000  # the [tools] result_max_chars default: about 2,000 tokens


def truncation_note(total: int, kept: int) -> str:
    """What the model and the user read at the end of a cut result."""
    return f"\n\n[Result truncated: showing the first {kept:,} of {total:,} characters.]"


def capped(text: str, max_chars: int) -> tuple[str, bool]:
    """``text`` cut to at most ``max_chars`` characters (the note included), and whether it was cut."""
    if len(text) <= max_chars:
        return text, False
    note = truncation_note(len(text), max_chars)
    kept = max(0, max_chars - len(note))
    note = truncation_note(len(text), kept)
    return text[:kept] + note, True


def make_result(status: ToolStatus, text: str, *, started: float, max_chars: int, citations: tuple = ()) -> ToolResult:
    """A ToolResult whose text is capped; ``call_id`` is left for the agent loop to fill in (a Tool does not
    know the id the model gave its call)."""
    text, truncated = capped(text, max_chars)
    return ToolResult(
        call_id="",
        status=status,
        text=text,
        truncated=truncated,
        duration_s=time.perf_counter() - started,
        citations=citations,
    )
