"""Where the question is typed: Enter sends, Shift+Enter starts a new line."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QPlainTextEdit, QWidget

_MAX_VISIBLE_LINES = 8


class Composer(QPlainTextEdit):
    submitted = Signal(str)
    escaped = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("composer")
        self.setPlaceholderText("Ask anything…  (Enter to send, Shift+Enter for a new line)")
        self.setTabChangesFocus(True)
        self.document().contentsChanged.connect(self._fit)
        self._fit()

    def canInsertFromMimeData(self, source) -> bool:
        # Dropped files are for indexing (the window takes them), not text to paste.
        return not source.hasUrls() and super().canInsertFromMimeData(source)

    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.ignore()  # let the window index them
            return
        super().dragEnterEvent(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            if event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
                self.insertPlainText("\n")
                return
            if not (event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier):
                text = self.toPlainText()
                if text.strip():
                    self.submitted.emit(text)
                return
        if event.key() == Qt.Key.Key_Escape:
            self.escaped.emit()
            return
        super().keyPressEvent(event)

    def _fit(self) -> None:
        line = self.fontMetrics().lineSpacing()
        lines = min(max(self.document().blockCount(), 2), _MAX_VISIBLE_LINES)
        margins = self.contentsMargins()
        self.setFixedHeight(
            int(lines * line + 2 * self.document().documentMargin() + margins.top() + margins.bottom() + 4)
        )
