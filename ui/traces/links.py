"""Which trace an answer belongs to: read from the finished event, the handle, or the saved message."""

from __future__ import annotations

import re

from PySide6.QtCore import QObject

from ui.ops import run_in_background

_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


def valid_trace_id(value) -> str | None:
    """``value`` when it is a 32-hex-digit trace id, else None."""
    return value if isinstance(value, str) and _TRACE_ID.match(value) else None


def stats_trace_id(stats) -> str | None:
    """The trace id in a message's or event's stats (a dict or a dataclass), if any."""
    value = stats.get("trace_id") if isinstance(stats, dict) else getattr(stats, "trace_id", None)
    return valid_trace_id(value)


def answer_trace_id(handle, result) -> str | None:
    """The trace id carried by a finished answer's handle or its Done/TaskDone event."""
    for value in (getattr(handle, "trace_id", None), getattr(result, "trace_id", None)):
        if valid_trace_id(value):
            return value
    return stats_trace_id(getattr(result, "stats", None))


def link_answer(widget, handle, result, history, owner: QObject) -> None:
    """Give a finished answer's widget its trace id ('Show trace'); when the events do not carry it,
    read it from the saved message off the GUI thread."""
    if widget is None:
        return
    found = answer_trace_id(handle, result)
    if found or history is None or widget.message_id is None:
        widget.set_trace_id(found)
        return
    message_id = widget.message_id

    def saved_id():
        return stats_trace_id(history.message(message_id).stats)

    def show(trace_id: str | None) -> None:
        try:
            if widget.message_id == message_id:
                widget.set_trace_id(trace_id)
        except RuntimeError:  # the widget was deleted meanwhile (conversation switched)
            pass

    run_in_background(saved_id, show, lambda _exc: None, owner=owner)
