"""Tasks on selected text: the context-menu entries that summarize, translate or explain a selection."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import QMenu

SELECTION_ACTIONS = (
    ("summarize", "Summarize selection"),
    ("translate", "Translate selection"),
    ("code", "Explain selection as code"),
)


def selected_text(widget) -> str:
    """The selection of a QTextEdit/QPlainTextEdit/QTextBrowser with real line breaks."""
    return widget.textCursor().selectedText().replace("\u2029", "\n").replace("\u2028", "\n")


def add_selection_actions(menu: QMenu, text: str, run: Callable[[str, str], None]) -> None:
    """Add the selection tasks to a context menu when something is selected; ``run(mode, text)``."""
    if not text.strip():
        return
    menu.addSeparator()
    for mode, label in SELECTION_ACTIONS:
        action = menu.addAction(label)
        action.setObjectName(f"selection_{mode}")
        action.triggered.connect(lambda _=False, m=mode: run(m, text))
