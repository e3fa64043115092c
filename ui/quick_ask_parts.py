"""The quick-ask popup's two own widgets: the answer view and the collection chooser."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QWidget

from ui.safe_text import SafeTextBrowser

MAX_ANSWER_HEIGHT = 360  # then the answer scrolls
NO_DOCUMENTS = "No documents"


class AnswerView(SafeTextBrowser):
    """Markdown that grows with the answer up to MAX_ANSWER_HEIGHT, then scrolls and follows the end; like
    the window's answers it loads nothing the answer names and asks before opening a web link."""

    grew = Signal()  # its height changed: the popup fits itself around it

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("quickAskAnswer")
        self.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.document().setDocumentMargin(0)  # lines up with the question above it
        self.document().documentLayout().documentSizeChanged.connect(self._fit)
        self.text = ""
        self.following = False  # streaming: keep the newest text in view

    def show_text(self, text: str) -> None:
        """Show this text (while an answer streams, ui/chat/live_answer.py hands it over coalesced)."""
        if text != self.text:
            self.text = text
            self.set_markdown(text)
        self._fit()

    def _fit(self, *_args) -> None:
        wanted = int(self.document().size().height()) + 2 * self.frameWidth() + 4
        height = max(24, min(wanted, MAX_ANSWER_HEIGHT))
        if self.height() != height:
            self.setFixedHeight(height)
            self.grew.emit()
        if wanted > MAX_ANSWER_HEIGHT and self.following:
            bar = self.verticalScrollBar()
            bar.setValue(bar.maximum())


class CollectionChooser(QComboBox):
    """ "No documents" or one collection; ``chosen`` is "" for plain chat."""

    picked = Signal(str)  # the user picked a collection ("" for none)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("quickAskCollection")
        self.setToolTip("Answer from a document collection, with sources")
        self.setFocusPolicy(Qt.FocusPolicy.ClickFocus)  # Tab and typing stay in the question line
        self.addItem(NO_DOCUMENTS, "")
        self._filled = False
        self.activated.connect(lambda _index: self.picked.emit(self.chosen()))

    def chosen(self) -> str:
        return self.currentData() or ""

    def set_collections(self, names: list[str], keep: str = "") -> None:
        """Offer these collections, and ``keep`` too (the saved choice: selected at the first fill, and
        offered while the index is still opening)."""
        current = self.chosen() if self._filled else keep
        self._filled = True
        offered = sorted(set(names) | {n for n in (keep, current) if n})
        self.blockSignals(True)
        self.clear()
        self.addItem(NO_DOCUMENTS, "")
        for name in offered:
            self.addItem(f"Documents: {name}", name)
        self.setCurrentIndex(max(0, self.findData(current)))
        self.blockSignals(False)

    def choose(self, name: str) -> None:
        """Select a collection as the user would (announced with ``picked``)."""
        if name and self.findData(name) < 0:
            self.addItem(f"Documents: {name}", name)
        self.setCurrentIndex(max(0, self.findData(name)))
        self.picked.emit(self.chosen())
