"""Every error the window shows goes through here: words for people, never a traceback."""

from __future__ import annotations

import logging

from PySide6.QtWidgets import QMessageBox, QWidget

from engine.errors import EngineError
from ui.plain import message_box

log = logging.getLogger(__name__)


def describe(exc: BaseException) -> str:
    """A readable sentence or two for any exception."""
    if isinstance(exc, EngineError):
        return exc.user_text()
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"A file operation failed: {exc.strerror}{where}."
    log.error("unexpected error", exc_info=exc)
    return f"Something went wrong: {exc or type(exc).__name__}. Details are in the log file."


def details(exc: BaseException) -> str | None:
    """Technical detail worth showing behind a 'Show Details' button, if any."""
    return exc.detail if isinstance(exc, EngineError) else None


def show_error(parent: QWidget | None, title: str, exc: BaseException | str) -> QMessageBox:
    """A non-blocking message box for a failure, in plain text (an error may quote a file name or a model's
    words); returns it (tests look at its text)."""
    box = message_box(
        parent,
        title,
        exc if isinstance(exc, str) else describe(exc),
        detail=(not isinstance(exc, str) and details(exc)) or "",
        icon=QMessageBox.Icon.Warning,
        name="errorBox",
    )
    box.open()
    return box
