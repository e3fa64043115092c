"""Projects, pins and copies in the window: what the sidebar's menus, buttons and drops ask for, carried out
off the GUI thread (engine/history/projects.py), with the dialogs they need.

A new chat in a project is made at once, in the project, with its default assistant and documents, and
opened (its first question titles it). Deleting a project asks whether its conversations go too; those are
deleted the way the sidebar deletes one (the Assistant's delete_conversation: traces and cached model
states with them).
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QInputDialog,
    QLineEdit,
    QMessageBox,
    QVBoxLayout,
    QWidget,
)

from engine.assistants import Assistants
from engine.history.projects import Project, Projects
from ui.errors import show_error
from ui.ops import run_in_background
from ui.plain import message_box, mnemonic_safe

KEEP, DELETE_ALL = "keep", "delete"


class ProjectSettings(QDialog):
    """A project's name, default assistant and default documents (for conversations started in it)."""

    def __init__(self, parent: QWidget | None, project: Project, assistants, collections: list[str]):
        super().__init__(parent)
        self.setObjectName("projectSettings")
        self.setWindowTitle("Project settings")
        self.name = QLineEdit(project.name, self)
        self.name.setObjectName("projectName")
        self.assistant = QComboBox(self)
        self.assistant.setObjectName("projectAssistant")
        self.assistant.addItem("No assistant", None)
        for preset in assistants:
            self.assistant.addItem(mnemonic_safe(preset.name), preset.id)
        self.assistant.setCurrentIndex(max(self.assistant.findData(project.assistant_id), 0))
        self.documents = QComboBox(self)
        self.documents.setObjectName("projectDocuments")
        self.documents.addItem("Don't use documents", "off")
        self.documents.addItem("All documents", "all")
        for name in sorted(set(collections) | set(project.collections or [])):
            self.documents.addItem(mnemonic_safe(f"Collection: {name}"), name)
        value = project.collections
        chosen = "off" if value is None else "all" if not value else value[0]
        self.documents.setCurrentIndex(max(self.documents.findData(chosen), 0))
        form = QFormLayout()
        form.addRow("Name", self.name)
        form.addRow("New chats' assistant", self.assistant)
        form.addRow("New chats' documents", self.documents)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(buttons)

    def values(self) -> tuple[str, str | None, list[str] | None]:
        documents = self.documents.currentData()
        collections = None if documents == "off" else [] if documents == "all" else [documents]
        return self.name.text(), self.assistant.currentData(), collections


class ProjectsController(QObject):
    """Connects the sidebar's project, pin, duplicate and move requests to the history."""

    changed = Signal()  # the sidebar was refreshed after a change

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.history = window.services.history
        self.projects = Projects(self.history)
        self.presets = Assistants(self.history)
        sidebar = window.sidebar
        sidebar.pinRequested.connect(self.pin)
        sidebar.duplicateRequested.connect(self.duplicate)
        sidebar.moveRequested.connect(self.move)
        sidebar.newProjectRequested.connect(self.ask_new_project)
        sidebar.projectMenuRequested.connect(self._project_menu)

    # Doing it -----------------------------------------------------------------------------

    def _do(self, fn, title: str, then=None) -> None:
        def done(result) -> None:
            if then is not None:
                then(result)
            self.window.refresh_conversations()
            self.changed.emit()

        run_in_background(fn, done, lambda exc: show_error(self.window, title, exc), owner=self)

    def pin(self, conversation_id: int, pinned: bool) -> None:
        self._do(lambda: self.projects.pin(conversation_id, pinned), "Pin")

    def duplicate(self, conversation_id: int) -> None:
        def opened(copy) -> None:
            self.window.statusBar().showMessage(f"Made a copy: \u201c{copy.title}\u201d.", 5000)

        self._do(lambda: self.projects.duplicate(conversation_id), "Duplicate", opened)

    def move(self, conversation_id: int, project_id: int | None) -> None:
        self._do(lambda: self.projects.move(conversation_id, project_id), "Move to project")

    def create(self, name: str, conversation_id: int | None = None) -> None:
        """Make a project (and move ``conversation_id`` into it)."""

        def make():
            project = self.projects.create(name)
            if conversation_id is not None:
                self.projects.move(conversation_id, project.id)
            return project

        self._do(make, "New project")

    def rename(self, project_id: int, name: str) -> None:
        self._do(lambda: self.projects.rename(project_id, name), "Rename project")

    def configure(self, project_id: int, name: str, assistant_id: str | None, collections: list[str] | None) -> None:
        def save():
            self.projects.rename(project_id, name)
            return self.projects.set_defaults(project_id, assistant_id=assistant_id, collections=collections)

        self._do(save, "Project settings")

    def delete(self, project_id: int, with_conversations: bool, conversations: list[int] | tuple = ()) -> None:
        """Delete a project; ``conversations`` (its conversations' ids, read before asking) are closed first
        when they go with it."""
        window = self.window
        ids = list(dict.fromkeys(conversations))  # only these go: one added since stays (moved out)
        if with_conversations:
            if window.live is not None and window.live.conversation_id in ids:
                window.stop()
            if window.conversation_id in ids:
                window.new_conversation()
        assistant = window.services.assistant

        def deleted(result) -> None:
            window.statusBar().showMessage(result.describe(), 8000)

        self._do(
            lambda: self.projects.delete(
                project_id,
                with_conversations=with_conversations,
                delete_conversation=assistant.delete_conversation,
                conversations=ids,
            ),
            "Delete project",
            deleted,
        )

    def new_chat(self, project_id: int) -> None:
        """A conversation made now in the project, with its default assistant and documents, then opened."""

        def make():
            project = self.projects.get(project_id)
            conversation = self.history.create_conversation()
            self.projects.move(conversation.id, project.id)
            if project.collections is not None:
                self.history.set_options(conversation.id, collections=project.collections)
            if project.assistant_id is not None and self.presets.find(project.assistant_id) is not None:
                self.presets.choose(conversation.id, project.assistant_id)
                if project.collections is not None:  # the project's documents over the assistant's
                    self.history.set_options(conversation.id, collections=project.collections)
            return conversation.id

        def opened(conversation_id: int) -> None:
            self.window.new_conversation()
            self.window.open_conversation(conversation_id)
            self.window.sidebar.select(conversation_id)

        self._do(make, "New chat", opened)

    # Asking -------------------------------------------------------------------------------

    def _ask_name(self, title: str, name: str, then) -> QInputDialog:
        """A window-modal question for a project's name (not a nested event loop); ``then(name)`` when given."""
        dialog = QInputDialog(self.window)
        dialog.setObjectName("projectNameDialog")
        dialog.setWindowTitle(title)
        dialog.setLabelText("Project name:")
        dialog.setTextValue(name)
        dialog.textValueSelected.connect(lambda text: text.strip() and then(text))
        dialog.finished.connect(dialog.deleteLater)
        dialog.open()
        return dialog

    def ask_new_project(self, conversation_id: int | None) -> QInputDialog:
        return self._ask_name("New project", "", lambda name: self.create(name, conversation_id))

    def _project_menu(self, key: str, project_id: int) -> None:
        if key == "new_chat":
            self.new_chat(project_id)
            return
        run_in_background(
            lambda: (self.projects.get(project_id), self.presets.all(), self.projects.conversation_ids(project_id)),
            lambda found: self._ask(key, *found),
            lambda exc: show_error(self.window, "Project", exc),
            owner=self,
        )

    def _ask(self, key: str, project: Project, assistants, conversations: list[int]) -> None:
        if key == "rename":
            self._ask_name("Rename project", project.name, lambda name: self.rename(project.id, name))
        elif key == "settings":
            dialog = ProjectSettings(self.window, project, assistants, self.window.documents_selector.collections)
            dialog.accepted.connect(lambda: self.configure(project.id, *dialog.values()))
            dialog.finished.connect(dialog.deleteLater)
            dialog.open()
        elif key == "delete":
            self.ask_delete(project, conversations).open()

    def ask_delete(self, project: Project, conversations: list[int]) -> QMessageBox:
        """The question before deleting a project: keep its conversations (moved out) or delete them too."""
        count = len(conversations)
        box = message_box(
            self.window,
            "Delete project",
            f"Delete the project \u201c{project.name}\u201d?",
            informative=f"It holds {count} conversation(s). Kept, they move out of the project; deleted, their "
            "messages and traces go too, which cannot be undone.",
            icon=QMessageBox.Icon.Question,
            name="deleteProjectBox",
        )
        keep = box.addButton("Delete project, keep conversations", QMessageBox.ButtonRole.AcceptRole)
        keep.setObjectName("deleteProjectKeep")
        everything = box.addButton(
            f"Delete project and {count} conversation(s)", QMessageBox.ButtonRole.DestructiveRole
        )
        everything.setObjectName("deleteProjectAll")
        box.addButton(QMessageBox.StandardButton.Cancel)

        def answered(button) -> None:
            if button is keep:
                self.delete(project.id, False)
            elif button is everything:
                self.delete(project.id, True, conversations)

        box.buttonClicked.connect(answered)
        box.finished.connect(box.deleteLater)
        return box
