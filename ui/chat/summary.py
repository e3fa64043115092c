"""Summaries in the chat view (engine/compaction.py): a summary message is marked "Summary of N earlier
messages" and can be edited in place; the messages it stands for stay in the conversation, collapsed above it
(a button shows them, dimmed: the model no longer sees them)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QGraphicsOpacityEffect, QHBoxLayout, QPlainTextEdit, QPushButton, QWidget

from engine.compaction import is_summary
from engine.history.models import Message
from ui.plain import literal

DIMMED = 0.5


def _link_button(text: str, parent: QWidget, name: str, tip: str) -> QPushButton:
    button = QPushButton(text, parent)
    button.setObjectName(name)
    button.setFlat(True)
    button.setCursor(Qt.CursorShape.PointingHandCursor)
    button.setStyleSheet("QPushButton { color: palette(link); border: none; padding: 0 4px; }")
    button.setToolTip(literal(tip))
    return button


class SummaryControls(QObject):
    """Attached to a summary's MessageWidget: its mark, 'Edit' (the note's text, saved through ``on_edit``) and,
    on the latest summary, 'Show the N earlier messages' for the originals above it."""

    edited = Signal(int, str)

    def __init__(self, widget, count: int, originals: Sequence[QWidget], on_edit: Callable[[int, str], None]):
        super().__init__(widget)
        self.widget = widget
        self.count = count
        self.originals = list(originals)
        self.on_edit = on_edit
        widget.setProperty("summary", True)
        widget.style().unpolish(widget)
        widget.style().polish(widget)
        widget.author.setText(f"Summary of {count} earlier message{'' if count == 1 else 's'}")
        widget.author.setToolTip(
            "Written by the model when the conversation grew too long for its context. The model sees this "
            "note instead of the messages it summarizes; they stay in the history."
        )
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        self.toggle = _link_button("", widget, "showOriginalsButton", "Show or hide the messages this note stands for")
        self.toggle.clicked.connect(lambda: self.show_originals(not self.expanded))
        self.toggle.setVisible(bool(self.originals))
        self.edit_button = _link_button("Edit", widget, "editSummaryButton", "Correct or shorten this summary")
        self.edit_button.clicked.connect(self.start_editing)
        row.addWidget(self.toggle)
        row.addStretch(1)
        row.addWidget(self.edit_button)
        layout = widget.layout()
        layout.insertLayout(1, row)
        self.editor = QPlainTextEdit(widget)
        self.editor.setObjectName("summaryEditor")
        self.editor.hide()
        self.save_button = QPushButton("Save", widget)
        self.save_button.setObjectName("saveSummaryButton")
        self.cancel_button = QPushButton("Cancel", widget)
        self.cancel_button.setObjectName("cancelSummaryButton")
        self.save_button.clicked.connect(self.save)
        self.cancel_button.clicked.connect(self.stop_editing)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.save_button)
        layout.insertWidget(2, self.editor)
        layout.insertLayout(3, buttons)
        self.save_button.hide()
        self.cancel_button.hide()
        self.expanded = True
        self.show_originals(False)

    def show_originals(self, show: bool) -> None:
        self.expanded = show
        for original in self.originals:
            if show:
                effect = QGraphicsOpacityEffect(original)
                effect.setOpacity(DIMMED)
                original.setGraphicsEffect(effect)
            original.setVisible(show)
        n = len(self.originals)
        self.toggle.setText(f"Hide the {n} earlier messages" if show else f"Show the {n} earlier messages")

    def start_editing(self) -> None:
        self.editor.setPlainText(self.widget.text)
        for part in (self.editor, self.save_button, self.cancel_button):
            part.show()
        self.edit_button.hide()
        self.editor.setFocus()

    def stop_editing(self) -> None:
        for part in (self.editor, self.save_button, self.cancel_button):
            part.hide()
        self.edit_button.show()

    def save(self) -> None:
        text = self.editor.toPlainText().strip()
        if not text:
            self.editor.setPlaceholderText("A summary cannot be empty.")
            return
        self.widget.set_text(text)
        self.stop_editing()
        self.on_edit(self.widget.message_id, text)
        self.edited.emit(self.widget.message_id, text)


def mark_summaries(view, messages: Sequence[Message], on_edit: Callable[[int, str], None]) -> list[SummaryControls]:
    """Mark the summaries among the messages a view shows (the latest one collapses what it stands for)."""
    widgets = {w.message_id: w for w in view.messages() if w.message_id is not None}
    indices = [i for i, m in enumerate(messages) if is_summary(m)]
    controls = []
    for i in indices:
        widget = widgets.get(messages[i].id)
        if widget is None:
            continue
        count = sum(1 for m in messages[:i] if not is_summary(m))
        above = [widgets[m.id] for m in messages[:i] if m.id in widgets] if i == indices[-1] else []
        controls.append(SummaryControls(widget, count, above, on_edit))
    return controls
