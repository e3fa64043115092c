"""The top passage beside an answer from documents: the passage itself, when it is the best answer.

Shown for a question whose answer is a passage ("which document says…", "where does it say…", "what is
the definition of…") and for an answer that rests on none of its passages; which passage, and when, is
engine/rag/question_kind.top_passage's choice. Document text is hostile: it is shown as plain text only,
and clicking the box opens the source viewer at the passage, as a source does.
"""

from __future__ import annotations

from pathlib import PureWindowsPath

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QPushButton, QVBoxLayout, QWidget

from engine.rag.question_kind import top_passage
from ui.plain import literal, mnemonic_safe, plain_label

MAX_CHARS = 1200  # a longer passage is cut (the source viewer shows it whole)


class TopPassage(QFrame):
    """A compact, labelled box: "Top passage — file · place" and the passage's text."""

    sourceClicked = Signal(dict)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("topPassage")
        self.setFrameShape(QFrame.Shape.StyledPanel)  # a box of its own also without the window's style sheet
        self.source: dict | None = None
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 8)
        layout.setSpacing(4)
        self.header = QPushButton(self)
        self.header.setObjectName("topPassageHeader")
        self.header.setFlat(True)
        self.header.clicked.connect(self._open)
        self.text = plain_label("", self, name="topPassageText", wrap=True)
        layout.addWidget(self.header, 0, Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(self.text)
        self.hide()

    def show_for(self, question: str, sources: list[dict]) -> None:
        """Show the top passage of these sources for this question, or hide when there is none to show."""
        self.source = top_passage(question, sources)
        if self.source is None:
            self.hide()
            return
        source = self.source
        # PureWindowsPath splits at both / and \\: a path saved on Windows names its file here too.
        file_name = PureWindowsPath(str(source.get("path", ""))).name
        where = source.get("location") or ""
        self.header.setText(mnemonic_safe(f"Top passage \u2014 {file_name}" + (f" \u00b7 {where}" if where else "")))
        self.header.setToolTip(literal(f"{source.get('path', '')}\nClick to open it at {where or 'the start'}."))
        # Saved before passages kept their text: the quote is what there is.
        raw = str(source.get("text") or source.get("quote") or "")
        text = "\n".join(" ".join(line.split()) for line in raw.splitlines() if line.strip())
        self.text.setText(text if len(text) <= MAX_CHARS else text[: MAX_CHARS - 1].rstrip() + "\u2026")
        self.show()

    def title(self) -> str:
        return self.header.text().replace("&&", "&")

    def _open(self) -> None:
        if self.source is not None:
            self.sourceClicked.emit(self.source)

    def mouseReleaseEvent(self, event) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self._open()
        super().mouseReleaseEvent(event)
