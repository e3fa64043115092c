"""File › Export conversation…, Export project…, Import conversations…: the window's side of
engine/history/export.py, ui/export_pdf.py and engine/history/imports/.

The file dialogs run on the GUI thread; reading the history, writing the file and importing run in the
background (``run_in_background``). An import that is refused shows why in a message box and saves
nothing; one that succeeds refreshes the conversation list, opens the first conversation it brought and
says in the status bar what it imported.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QFileDialog, QInputDialog, QMenu

from engine.history.projects import Projects
from ui.errors import show_error
from ui.ops import run_in_background
from ui.plain import message_box

if TYPE_CHECKING:
    from ui.main_window import MainWindow

# Save dialog filters -> export format.
EXPORT_FILTERS = {
    "Markdown (*.md)": "markdown",
    "PDF (*.pdf)": "pdf",
    "Locus JSON: complete, every branch (*.json)": "json",
}
SUFFIXES = {"markdown": ".md", "pdf": ".pdf", "json": ".json"}
IMPORT_FILTER = "Conversation exports (*.json *.jsonl *.zip);;All files (*)"


def write_export(history, fmt: str, ids: list[int], path: Path, title: str | None, project: bool = False) -> Path:
    """Write conversations ``ids`` to ``path`` as ``fmt`` (runs in the background); ``project``: ``title`` is
    a project's name, the heading above its conversations."""
    from engine.history import export

    if fmt == "json":
        text = json.dumps(export.export_json(history, ids), ensure_ascii=False, indent=1) + "\n"
    else:
        text = export.export_markdown(history, ids, title=title if project else None)
    if fmt == "pdf":
        from ui.export_pdf import write_pdf

        write_pdf(text, path, title=title or "Locus conversations")
    else:
        partial = path.with_name(f".{path.name}.part")
        partial.write_text(text, encoding="utf-8")
        partial.replace(path)
    return path


class TransferActions(QObject):
    """The export and import actions of the window's File menu."""

    def __init__(self, window: MainWindow, menu: QMenu):
        super().__init__(window)
        self.window = window
        self.export_conversation_action = QAction(
            "&Export conversation…", window, triggered=self.export_conversation, objectName="exportConversation"
        )
        self.export_project_action = QAction(
            "Export &project…", window, triggered=self.export_project, objectName="exportProject"
        )
        self.import_action = QAction(
            "&Import conversations…", window, triggered=self.import_conversations, objectName="importConversations"
        )
        for action in (self.export_conversation_action, self.export_project_action, self.import_action):
            menu.addAction(action)
        menu.aboutToShow.connect(self._update)

    def _update(self) -> None:
        self.export_conversation_action.setEnabled(self.window.conversation_id is not None)

    # Dialogs (their own methods: tests answer them) -------------------------------------------

    def ask_save_path(self, suggested: str) -> tuple[Path, str] | None:
        """Where to export and in which format; None when cancelled."""
        path, chosen = QFileDialog.getSaveFileName(
            self.window, "Export", suggested, ";;".join(EXPORT_FILTERS), next(iter(EXPORT_FILTERS))
        )
        if not path:
            return None
        by_suffix = next((f for f, suffix in SUFFIXES.items() if path.lower().endswith(suffix)), None)
        fmt = by_suffix or EXPORT_FILTERS.get(chosen, "markdown")
        if not path.lower().endswith(SUFFIXES[fmt]):
            path += SUFFIXES[fmt]
        return Path(path), fmt

    def ask_open_path(self) -> Path | None:
        path, _ = QFileDialog.getOpenFileName(self.window, "Import conversations", "", IMPORT_FILTER)
        return Path(path) if path else None

    def ask_project(self, names: list[str]) -> str | None:
        name, ok = QInputDialog.getItem(self.window, "Export project", "Project:", names, 0, False)
        return name if ok and name else None

    # Export ------------------------------------------------------------------------------------

    def export_conversation(self) -> None:
        conversation_id = self.window.conversation_id
        if conversation_id is None:
            return
        history = self.window.services.history
        run_in_background(
            lambda: history.conversation(conversation_id),
            lambda c: self._export([c.id], _stem(c), c.title),
            lambda exc: show_error(self.window, "Export", exc),
            owner=self.window,
        )

    def export_project(self) -> None:
        history = self.window.services.history
        run_in_background(
            lambda: [p.name for p in Projects(history).all()],
            self._choose_project,
            lambda exc: show_error(self.window, "Export project", exc),
            owner=self.window,
        )

    def _choose_project(self, names: list[str]) -> None:
        if not names:
            message_box(self.window, "Export project", "There are no projects yet.").open()
            return
        name = self.ask_project(list(dict.fromkeys(names)))
        if name is None:
            return
        from engine.history.export import project_conversations

        history = self.window.services.history
        run_in_background(
            lambda: project_conversations(history, name),
            self._export_project,
            lambda exc: show_error(self.window, "Export project", exc),
            owner=self.window,
        )

    def _export_project(self, found: tuple[str, list[int]]) -> None:
        name, ids = found
        if ids:
            stem = "-".join(re.sub(r"[^\w\- ]+", "", name).split())[:60] or "project"
            self._export(ids, stem, name, project=True)
        else:
            self._empty(name)

    def _empty(self, name: str) -> None:
        message_box(self.window, "Export project", f"The project \u201c{name}\u201d has no conversations.").open()

    def _export(self, ids: list[int], stem: str, title: str | None, *, project: bool = False) -> None:
        chosen = self.ask_save_path(stem)
        if chosen is None:
            return
        path, fmt = chosen
        history = self.window.services.history
        run_in_background(
            lambda: write_export(history, fmt, ids, path, title, project),
            lambda done: self.window.statusBar().showMessage(f"Exported to {done}.", 8000),
            lambda exc: show_error(self.window, "Export", exc),
            owner=self.window,
        )

    # Import ------------------------------------------------------------------------------------

    def import_conversations(self) -> None:
        path = self.ask_open_path()
        if path is not None:
            self.import_path(path)

    def import_path(self, path: Path) -> None:
        from engine.history.imports import import_file

        history = self.window.services.history
        library = self.window.documents.library  # None until the index is open: then no source keeps its file

        def read_and_save():
            # What is indexed here (read off the GUI thread): sources and document choices naming it are kept.
            documents = {d.doc_id: d.path for d in library.documents()} if library is not None else None
            collections = library.collections() if library is not None else None
            return import_file(history, path, documents=documents, collections=collections)

        run_in_background(
            read_and_save,
            self._imported,
            lambda exc: show_error(self.window, "Import", exc),
            owner=self.window,
        )

    def _imported(self, result) -> None:
        self.window.refresh_conversations()
        self.window.statusBar().showMessage(result.describe(), 15000)
        if result.conversation_ids:
            self.window.open_conversation(result.conversation_ids[0])


def _stem(conversation) -> str:
    from engine.history.export import file_stem

    return file_stem(conversation)
