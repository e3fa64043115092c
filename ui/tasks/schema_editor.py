"""The JSON schema that guides Extract JSON: example schemas to start from, checked as you type."""

from __future__ import annotations

import json

from PySide6.QtCore import QTimer, Signal
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QPlainTextEdit, QVBoxLayout, QWidget

from ui.errors import describe
from ui.ops import run_in_background
from ui.plain import plain_label
from ui.tasks.modes import parse_schema

_CHECK_DELAY_MS = 250
CUSTOM = "Custom"


def example_title(name: str) -> str:
    """'contact_card' -> 'Contact card'."""
    return name.replace("_", " ").strip().capitalize()


class SchemaEditor(QWidget):
    """A plain-text JSON editor; ``error`` is what is wrong with it now (None when valid)."""

    validityChanged = Signal(object)  # str | None: the problem, or None

    def __init__(self, examples: dict[str, dict], parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("schemaEditor")
        self.examples = dict(examples)
        self.error: str | None = None
        self._generation = 0
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        row = QHBoxLayout()
        row.addWidget(plain_label("Schema:", self))
        self.example = QComboBox(self)
        self.example.setObjectName("schemaExample")
        self.example.setToolTip("Start from an example schema, then edit it below")
        for name in self.examples:
            self.example.addItem(example_title(name), name)
        self.example.addItem(CUSTOM, None)
        self.example.activated.connect(self._pick)
        self.status = plain_label("", self, name="schemaStatus", wrap=True)
        row.addWidget(self.example)
        row.addWidget(self.status, 1)
        self.text = QPlainTextEdit(self)
        self.text.setObjectName("schemaText")
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.text.setPlaceholderText('{"type": "object", "properties": {…}, "required": […]}')
        self.text.setTabChangesFocus(True)
        self.text.setFixedHeight(130)
        layout.addLayout(row)
        layout.addWidget(self.text)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(_CHECK_DELAY_MS)
        self._timer.timeout.connect(self._check)
        self.text.textChanged.connect(self._edited)
        self._loading = False
        if self.examples:
            self.load_example(next(iter(self.examples)))

    def load_example(self, name: str) -> None:
        """Put an example schema in the editor."""
        self._loading = True
        try:
            self.example.setCurrentIndex(self.example.findData(name))
            self.text.setPlainText(json.dumps(self.examples[name], indent=2))
        finally:
            self._loading = False

    def title(self) -> str:
        """The example's title while it is unchanged, else "custom schema"."""
        name = self.example.currentData()
        return example_title(name) if name else "custom schema"

    def schema(self) -> dict:
        """The schema now in the editor (raises InvalidRequestError naming the problem)."""
        return parse_schema(self.text.toPlainText())

    def _pick(self, index: int) -> None:
        name = self.example.itemData(index)
        if name is not None:
            self.load_example(name)

    def _edited(self) -> None:
        if not self._loading:
            name = self.example.currentData()
            if name is not None and self.text.toPlainText() != json.dumps(self.examples[name], indent=2):
                self.example.setCurrentIndex(self.example.findData(None))
        self.status.setText("Checking…")
        self.status.setProperty("state", "")
        self._timer.start()

    def _check(self) -> None:
        # In the background: the first check imports jsonschema, which takes longer than a frame.
        self._generation += 1
        generation, text = self._generation, self.text.toPlainText()

        def shown(problem: str | None) -> None:
            if generation == self._generation:  # a later edit supersedes this check
                self._show(problem)

        run_in_background(lambda: parse_schema(text) and None, shown, lambda exc: shown(describe(exc)), owner=self)

    def _show(self, problem: str | None) -> None:
        self.error = problem
        self.status.setText(problem or "Valid schema")
        self.status.setProperty("state", "error" if problem else "ok")
        self.status.style().unpolish(self.status)
        self.status.style().polish(self.status)
        self.validityChanged.emit(problem)
