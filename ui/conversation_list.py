"""Keeps the conversation sidebar filled from the history: projects and every conversation (pinned first), or
search hits (in every conversation or one project's), and renames."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QWidget

from engine.history.projects import Projects
from ui.errors import show_error
from ui.ops import run_in_background
from ui.sidebar import ALL, ConversationSidebar


class ConversationList(QObject):
    """Reads the history off the GUI thread for the sidebar; ``current()`` is the open conversation's id."""

    def __init__(self, sidebar: ConversationSidebar, history, current: Callable[[], int | None], window: QWidget):
        super().__init__(window)
        self.sidebar = sidebar
        self.history = history
        self.projects = Projects(history)
        self.current = current
        self.window = window
        self.search_text = ""
        self.hit_messages: dict[int, int] = {}  # conversation -> the message a search found in it
        self._generation = 0
        sidebar.renameRequested.connect(self.rename)
        sidebar.searchChanged.connect(self.search)
        sidebar.scopeChanged.connect(lambda: self.search(self.search_text))

    def refresh(self) -> None:
        """Show every conversation again (or re-run the search being shown)."""
        if self.search_text:
            self.search(self.search_text)
            return
        self._generation += 1
        generation = self._generation

        def show(loaded) -> None:
            projects, conversations = loaded
            self.sidebar.set_projects(projects)
            if generation == self._generation:
                self.sidebar.set_conversations(conversations, self.current())

        run_in_background(
            lambda: (self.projects.all(), self.projects.listed()),
            show,
            lambda exc: show_error(self.window, "Conversations", exc),
            owner=self,
        )

    def search(self, text: str) -> None:
        self.search_text = text
        self._generation += 1
        generation = self._generation
        if not text:
            self.hit_messages = {}
            self.refresh()
            return
        scope = self.sidebar.scope_project()

        def find():
            hits = self.projects.search(text) if scope == ALL else self.projects.search(text, scope)
            return self.projects.all(), hits

        def show(found) -> None:
            projects, hits = found
            self.sidebar.set_projects(projects)
            if generation == self._generation:  # a later search supersedes this one
                self.hit_messages = {}
                for hit in hits:  # the best-ranked matching message of each conversation
                    if hit.message_id is not None:
                        self.hit_messages.setdefault(hit.conversation.id, hit.message_id)
                self.sidebar.set_search_results(hits, self.current())

        run_in_background(find, show, lambda exc: show_error(self.window, "Search", exc), owner=self)

    def rename(self, conversation_id: int, title: str) -> None:
        run_in_background(
            lambda: self.history.rename_conversation(conversation_id, title),
            lambda _c: self.refresh(),
            lambda exc: (show_error(self.window, "Rename", exc), self.refresh()),
            owner=self,
        )
