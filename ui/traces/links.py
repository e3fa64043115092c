"""Which trace an answer belongs to: the trace id its events carry, or the one saved with its stats."""

from __future__ import annotations

import re

_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


def valid_trace_id(value) -> str | None:
    """``value`` when it is a 32-hex-digit trace id, else None."""
    return value if isinstance(value, str) and _TRACE_ID.match(value) else None


def stats_trace_id(stats: dict | None) -> str | None:
    """The trace id saved in a message's stats, if any."""
    return valid_trace_id((stats or {}).get("trace_id"))


def link_answer(widget, trace_id: str | None) -> None:
    """Offer 'Show trace' on an answer's widget (a widget already gone is left alone)."""
    if widget is not None:
        widget.set_trace_id(valid_trace_id(trace_id))
