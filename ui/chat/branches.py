"""Branches in the window: "‹ 2 / 3 ›" on a message that has versions (with a menu to delete the one shown),
Edit on every question and Regenerate on every answer. Editing or answering again makes a new version
beside the old one (engine/turns.py); switching shows the branch through the version chosen."""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QMenu, QMessageBox, QPushButton, QToolButton, QWidget

from engine.errors import NotFoundError
from engine.history.models import Message
from ui.errors import show_error
from ui.ops import run_in_background
from ui.plain import literal, plain_label

_LINK = "QPushButton { color: palette(link); border: none; padding: 0 4px; }"


def versions_of(messages: Iterable[Message]) -> dict[int, list[int]]:
    """Each message's versions (same parent and role, itself included), oldest first, from every message
    of a conversation (HistoryStore.all_messages)."""
    groups: dict[tuple, list[int]] = {}
    for m in sorted(messages, key=lambda m: m.id):
        groups.setdefault((m.parent_id, m.role), []).append(m.id)
    return {i: ids for ids in groups.values() for i in ids}


class VersionSwitcher(QWidget):
    """‹ n / N › between the versions of one message, and a menu to delete the version shown."""

    chosen = Signal(int)  # the message id of the version to show
    deleteRequested = Signal(int)  # the message id of the version to delete (with what follows it)

    def __init__(self, message_id: int, versions: list[int], parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("versionSwitcher")
        self.message_id, self.versions = message_id, list(versions)
        index = self.versions.index(message_id)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(2)
        self.previous = self._arrow("‹", "versionPrevious", "Show the previous version", index - 1)
        self.label = plain_label(f"{index + 1} / {len(self.versions)}", self, name="versionLabel")
        self.label.setToolTip("Versions of this message: editing a question or answering again adds one")
        self.next = self._arrow("›", "versionNext", "Show the next version", index + 1)
        self.menu_button = QToolButton(self)
        self.menu_button.setObjectName("versionMenu")
        self.menu_button.setText("⋯")
        self.menu_button.setAutoRaise(True)
        self.menu_button.setToolTip("More for this version")
        self.menu_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.menu = QMenu(self.menu_button)
        self.delete_action = self.menu.addAction("Delete this version…")
        self.delete_action.triggered.connect(lambda: self.deleteRequested.emit(self.message_id))
        self.menu_button.setMenu(self.menu)
        for widget in (self.previous, self.label, self.next, self.menu_button):
            row.addWidget(widget)

    def _arrow(self, text: str, name: str, tip: str, target: int) -> QToolButton:
        button = QToolButton(self)
        button.setObjectName(name)
        button.setText(text)
        button.setAutoRaise(True)
        button.setToolTip(literal(tip))
        button.setCursor(Qt.CursorShape.PointingHandCursor)
        button.setEnabled(0 <= target < len(self.versions))
        if 0 <= target < len(self.versions):
            button.clicked.connect(lambda: self.chosen.emit(self.versions[target]))
        return button


def add_branch_controls(widget, versions: list[int] | None, chat) -> None:
    """Edit (a question) or Regenerate (an answer) on a message, and its version switcher when it has
    versions; their clicks go to the chat view's signals."""
    if widget.role not in ("user", "assistant"):
        return
    header = widget.header
    old = getattr(widget, "branch_controls", None)
    if old is not None:
        header.removeWidget(old)
        old.deleteLater()
    box = QWidget(widget)
    box.setObjectName("branchControls")
    row = QHBoxLayout(box)
    row.setContentsMargins(0, 0, 0, 0)
    row.setSpacing(2)
    if versions and len(versions) > 1 and widget.message_id in versions:
        switcher = VersionSwitcher(widget.message_id, versions, box)
        switcher.chosen.connect(chat.versionChosen)
        switcher.deleteRequested.connect(chat.branchDeleteRequested)
        row.addWidget(switcher)
        widget.version_switcher = switcher
    else:
        widget.version_switcher = None
    if widget.role == "user":
        action = QPushButton("Edit", box)
        action.setObjectName("editQuestionButton")
        action.setToolTip("Edit this question and ask it again as a new version (this one stays)")
        action.clicked.connect(lambda: chat.editRequested.emit(widget))
    else:
        action = QPushButton("Regenerate", box)
        action.setObjectName("regenerateAnswerButton")
        action.setToolTip("Answer this question again as a new version (this answer stays)")
        action.clicked.connect(lambda: chat.regenerateRequested.emit(widget))
    action.setFlat(True)
    action.setStyleSheet(_LINK)
    action.setCursor(Qt.CursorShape.PointingHandCursor)
    row.addWidget(action)
    widget.branch_action = action
    widget.branch_controls = box
    header.insertWidget(1, box)  # after the author


class BranchController(QObject):
    """The window's side of branches: switching, deleting a version, editing any question and answering
    any question again (the window's composer, answer and reload do the rest)."""

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.editing_widget = None  # the question being edited (None: the last one)
        self.reload_after_answer = False  # an answer that made a version: show the versions once it ends
        chat = window.chat
        chat.versionChosen.connect(self.switch_to)
        chat.branchDeleteRequested.connect(self.delete)
        chat.editRequested.connect(self.edit)
        chat.regenerateRequested.connect(self.regenerate)
        window.answerFinished.connect(self._answer_finished)

    def load(self, conversation_id: int):
        """(shown messages, versions) of a conversation, read off the GUI thread."""
        history = self.window.services.history
        return history.messages(conversation_id), versions_of(history.all_messages(conversation_id))

    def reload(self) -> None:
        window, conversation_id = self.window, self.window.conversation_id
        if conversation_id is None:
            return
        run_in_background(
            partial(self.load, conversation_id),
            lambda loaded: window.conversation_id == conversation_id and self._show(*loaded),
            lambda exc: show_error(window, "Open conversation", exc),
            owner=window,
        )

    def _show(self, messages, versions) -> None:
        window = self.window
        if window.live is not None:  # an answer began meanwhile: its widgets stay; show the versions after it
            self.reload_after_answer = True
            return
        window.chat.show_messages(messages, versions)
        window._update_buttons()

    def switch_to(self, message_id: int) -> None:
        window = self.window
        if window.refuse_if_busy() or window.conversation_id is None:
            return
        history, conversation_id = window.services.history, window.conversation_id
        window._set_editing(False)
        run_in_background(
            lambda: (history.switch_to(message_id), self.load(conversation_id))[1],
            lambda loaded: window.conversation_id == conversation_id and self._show(*loaded),
            lambda exc: show_error(window, "Switch version", exc),
            owner=window,
        )

    def delete(self, message_id: int) -> None:
        window = self.window
        if window.refuse_if_busy():
            return
        asked = QMessageBox.question(
            window,
            "Delete this version",
            literal(
                "Delete this version of the message and everything that follows it on its branch? "
                "The other versions stay."
            ),
            buttons=QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            defaultButton=QMessageBox.StandardButton.No,
        )
        if asked != QMessageBox.StandardButton.Yes:
            return
        assistant = window.services.assistant
        run_in_background(
            lambda: assistant.delete_branch(message_id),
            lambda _gone: (self.reload(), window.refresh_conversations()),
            lambda exc: show_error(window, "Delete version", exc),
            owner=window,
        )

    def edit(self, widget) -> None:
        window = self.window
        if window.refuse_if_busy() or widget.message_id is None:
            return
        self.editing_widget = widget
        window.composer.setPlainText(widget.text)
        window._set_editing(True)
        window.composer.setFocus()

    def edit_target(self):
        """The question an edit replaces: the one whose Edit was clicked, else the last one."""
        widget, self.editing_widget = self.editing_widget, None
        return widget if widget is not None and widget.message_id is not None else window_last_question(self.window)

    def regenerate(self, widget) -> None:
        window = self.window
        if window.refuse_if_busy() or window.conversation_id is None or widget.message_id is None:
            return
        window.regenerate(widget)

    def _answer_finished(self, _ended) -> None:
        if self.reload_after_answer:
            self.reload_after_answer = False
            self.reload()


def window_last_question(window):
    for widget in reversed(window.chat.messages()):
        if widget.role == "user":
            return widget
    return None


def show_hit_branch(history, conversation_id: int, message_id: int) -> None:
    """Before a conversation opens on a search hit: show the branch that holds the matching message when it
    is on another one (off the GUI thread). A message gone meanwhile leaves the branch as it was."""
    if any(m.id == message_id for m in history.messages(conversation_id)):
        return
    try:
        if history.message(message_id).conversation_id == conversation_id:
            history.switch_to(message_id)
    except NotFoundError:
        pass
