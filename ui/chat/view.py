"""The conversation: a scrolling column of messages that follows a streaming answer (whose text arrives
already coalesced, from ui/chat/live_answer.py)."""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QFrame, QScrollArea, QVBoxLayout, QWidget

from engine.history.models import Message
from ui.chat.branches import add_branch_controls
from ui.chat.message import MessageWidget
from ui.chat.message_details import MessageNavigator
from ui.chat.summary import mark_summaries
from ui.plain import plain_label
from ui.traces.links import stats_trace_id


class ChatView(QScrollArea):
    """Messages of one conversation; the last one may be streaming."""

    sourceClicked = Signal(dict)  # a source of an answer was clicked: open it
    selectionTask = Signal(str, str)  # (task mode, selected text) from a message's context menu
    traceRequested = Signal(str)  # 'Show trace' on an answer: its trace id
    summaryEdited = Signal(int, str)  # a summary's note was edited: (message id, new text) to save
    versionChosen = Signal(int)  # "‹ ›" on a message with versions: the message id of the version to show
    branchDeleteRequested = Signal(int)  # "Delete this version…": its message id
    editRequested = Signal(object)  # Edit on a question: its MessageWidget
    regenerateRequested = Signal(object)  # Regenerate on an answer: its MessageWidget
    shown = Signal()  # show_messages showed a conversation (or another branch of it)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("chatView")
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self._column = QWidget(self)
        self._column.setObjectName("chatColumn")
        self._layout = QVBoxLayout(self._column)
        self._layout.setContentsMargins(24, 16, 24, 16)
        self._layout.setSpacing(12)
        self._empty = plain_label(
            "Ask anything. Your questions and answers stay on this computer.", self._column, name="emptyHint", wrap=True
        )
        self._empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._layout.addWidget(self._empty)
        self._layout.addStretch(1)
        self.setWidget(self._column)
        self._follow = True
        bar = self.verticalScrollBar()
        bar.valueChanged.connect(self._note_position)
        bar.rangeChanged.connect(self._keep_following)
        self.navigator = MessageNavigator(self, self.messages, parent)  # Alt+Up / Alt+Down between messages

    # Content ---------------------------------------------------------------------

    def messages(self) -> list[MessageWidget]:
        items = (self._layout.itemAt(i).widget() for i in range(self._layout.count()))
        return [w for w in items if isinstance(w, MessageWidget)]

    def clear(self) -> None:
        for widget in self.messages():
            self._layout.removeWidget(widget)
            widget.deleteLater()
        self._empty.show()

    def show_messages(self, messages: Iterable[Message], versions: dict[int, list[int]] | None = None) -> None:
        """Show a branch of a conversation; ``versions``: each message's versions (ui/chat/branches.py), for
        the "‹ 2 / 3 ›" switchers."""
        self.clear()
        messages = list(messages)
        question = ""
        for m in messages:
            widget = self.add_message(m.role, m.content, m.status, m.id)
            add_branch_controls(widget, (versions or {}).get(m.id), self)
            if m.role == "user":
                question = m.content
            if m.status == "failed":
                widget.set_status("failed", m.error)
            if m.sources:
                widget.set_sources(m.sources, question)
            if m.role == "assistant":
                widget.set_trace_id(stats_trace_id(m.stats))
                widget.show_saved_tool_calls(m.stats)
                widget.details.set_stats(m.stats)
        mark_summaries(self, messages, self.summaryEdited.emit)
        self.scroll_to_bottom()
        self.shown.emit()

    def question_before(self, answer: MessageWidget) -> str:
        """The text of the question an answer answers (the nearest user message above it)."""
        question = ""
        for widget in self.messages():
            if widget is answer:
                break
            if widget.role == "user":
                question = widget.text
        return question

    def add_message(
        self, role: str, text: str = "", status: str = "complete", message_id: int | None = None
    ) -> MessageWidget:
        self._empty.hide()
        widget = MessageWidget(role, text, status, message_id, self._column)
        widget.sourceClicked.connect(self.sourceClicked)
        widget.selectionTask.connect(self.selectionTask)
        widget.traceRequested.connect(self.traceRequested)
        add_branch_controls(widget, None, self)  # Edit / Regenerate (its versions come with show_messages)
        self._layout.insertWidget(self._layout.count() - 1, widget)
        return widget

    def remove_from(self, widget: MessageWidget) -> None:
        """Remove this message and every one after it (regenerate, edit-and-resend)."""
        found = False
        for w in self.messages():
            found = found or w is widget
            if found:
                self._layout.removeWidget(w)
                w.deleteLater()
        if not self.messages():
            self._empty.show()

    # Scrolling -------------------------------------------------------------------

    def show_message(self, message_id: int) -> None:
        """Scroll to a message (a search hit) and stop following the newest one."""
        for widget in self.messages():
            if widget.message_id == message_id:
                self._follow = False
                QTimer.singleShot(0, partial(self.ensureWidgetVisible, widget, 0, 40))  # once it is laid out
                return

    def scroll_to_bottom(self) -> None:
        """Jump to the newest message and keep following it as it grows."""
        self._follow = True
        bar = self.verticalScrollBar()
        bar.setValue(bar.maximum())

    def _note_position(self, value: int) -> None:
        bar = self.verticalScrollBar()
        self._follow = value >= bar.maximum() - 24  # the user scrolled up: stop following

    def _keep_following(self, _minimum: int, maximum: int) -> None:
        if self._follow:
            self.verticalScrollBar().setValue(maximum)
