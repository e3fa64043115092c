"""Tasks started from outside the composer: on selected text, on a document from the Documents panel,
and the prompt template editor (Tools menu)."""

from __future__ import annotations

from PySide6.QtCore import QObject

from engine.errors import EngineError
from ui.errors import show_error
from ui.tasks.modes import MODES, document_summary_request
from ui.tasks.template_editor import TemplateEditor


class TaskLauncher(QObject):
    """Builds task requests for the window's gestures and hands them to ``window.run_task``."""

    def __init__(self, window, services):
        super().__init__(window)
        self.window = window
        self.services = services
        self.template_editor: TemplateEditor | None = None

    def on_selection(self, mode: str, text: str) -> None:
        """Summarize, translate or explain selected text, with the task bar's options for that mode."""
        window, bar = self.window, self.window.task_bar
        if window.refuse_if_busy():
            return
        bar.set_mode(mode)
        if mode == "code":
            bar.action.setCurrentIndex(max(0, bar.action.findData("explain")))
        try:
            request = bar.request(text)
        except EngineError as exc:
            show_error(window, MODES[mode], exc)
            return
        window.run_task(request)

    def summarize_document(self, title: str, text: str, new_chat: bool = True) -> None:
        """Summarize a document's text (from the Documents panel) at the task bar's chosen length."""
        window = self.window
        if window.refuse_if_busy():
            return
        try:
            request = document_summary_request(title, text, window.task_bar.length.currentData())
        except EngineError as exc:
            show_error(window, "Summarize", exc)
            return
        if new_chat:
            window.new_conversation()
        window.run_task(request)

    def open_template_editor(self) -> TemplateEditor | None:
        """Tools > Prompt templates: one editor window, raised when already open."""
        if self.services.templates is None:
            show_error(self.window, "Prompt templates", "No prompt templates are available.")
            return None
        if self.template_editor is None:
            default = self.services.backends.resolve(None)[1]
            self.template_editor = TemplateEditor(self.services.templates, default, self.window)
        self.template_editor.show()
        self.template_editor.raise_()
        self.template_editor.activateWindow()
        return self.template_editor
