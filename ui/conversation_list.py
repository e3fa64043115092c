"""Keeps the conversation sidebar filled from the history: every conversation, or search hits, and renames."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QWidget

from ui.errors import show_error
from ui.ops import run_in_background
from ui.sidebar import ConversationSidebar


class ConversationList(QObject):
    """Reads the history off the GUI thread for the sidebar; ``current()`` is the open conversation's id."""

    def __init__(self, sidebar: ConversationSidebar, history, current: Callable[[], int | None], window: QWidget):
        super().__init__(window)
        self.sidebar = sidebar
        self.history = history
        self.current = current
        self.window = window
        self.search_text = ""
        self._generation = 0
        sidebar.renameRequested.connect(self.rename)
        sidebar.searchChanged.connect(self.search)

    def refresh(self) -> None:
        """Show every conversation again (or re-run the search being shown)."""
        if self.search_text:
            self.search(self.search_text)
            return
        run_in_background(
            self.history.conversations,
            lambda rows: self.sidebar.set_conversations(rows, self.current()),
            lambda exc: show_error(self.window, "Conversations", exc),
            owner=self,
        )

    def search(self, text: str) -> None:
        self.search_text = text
        self._generation += 1
        generation = self._generation
        if not text:
            self.refresh()
            return

        def show(hits) -> None:
            if generation == self._generation:  # a later search supersedes this one
                self.sidebar.set_search_results(hits, self.current())

        run_in_background(
            lambda: self.history.search(text), show, lambda exc: show_error(self.window, "Search", exc), owner=self
        )

    def rename(self, conversation_id: int, title: str) -> None:
        run_in_background(
            lambda: self.history.rename_conversation(conversation_id, title),
            lambda _c: self.refresh(),
            lambda exc: (show_error(self.window, "Rename", exc), self.refresh()),
            owner=self,
        )
