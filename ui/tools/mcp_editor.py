"""Edit mcp.json inside Locus: the servers Locus may start, checked as you type, saved atomically.

The file is read and written on the background pool; what it holds is checked with the same parser the
registry uses (engine/tools/mcp_config.py), so a bad entry is named before it is saved. Secrets do not
belong here: a header or environment value may say ``${keyring:NAME}`` (``locus secrets set mcp.NAME``).
"""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import QDialog, QHBoxLayout, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

from engine.tools.mcp_config import parse_servers, write_document
from ui.errors import describe, show_error
from ui.ops import run_in_background
from ui.plain import plain_label

EMPTY = '{\n  "mcpServers": {\n  }\n}\n'
EXAMPLE = (
    "A server is started by a command (stdio) or reached at a URL (Streamable HTTP), e.g.\n"
    '"files": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/home/me/notes"]}\n'
    '"search": {"url": "https://mcp.example.com/mcp", "headers": {"Authorization": "Bearer ${keyring:example}"}}'
)


def check(text: str) -> tuple[dict | None, str]:
    """The parsed file (None when it is not JSON) and what it holds or what is wrong, in words."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        return None, f"Not valid JSON: {exc}"
    servers, problems = parse_servers(data, "mcp.json")
    if not isinstance(data, dict):
        return None, " ".join(problems)
    names = ", ".join(servers) if servers else "none"
    words = f"{len(servers)} server{'s' * (len(servers) != 1)}: {names}."
    return data, "\n".join([words, *problems])


class McpEditor(QDialog):
    """mcp.json in a plain-text editor; Save writes it (only when it is JSON) and announces ``saved``."""

    saved = Signal()

    def __init__(self, path: Path, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("mcpEditor")
        self.setWindowTitle("MCP servers — mcp.json")
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.resize(720, 520)
        self.path = path
        layout = QVBoxLayout(self)
        layout.addWidget(plain_label(str(path), self, name="mcpPath", selectable=True))
        self.text = QPlainTextEdit(self)
        self.text.setObjectName("mcpText")
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.text.setPlaceholderText("Reading mcp.json…")
        self.text.setEnabled(False)
        self.text.textChanged.connect(self._check)
        layout.addWidget(self.text, 1)
        self.status = plain_label("", self, name="mcpStatus", wrap=True, selectable=True)
        layout.addWidget(self.status)
        layout.addWidget(plain_label(EXAMPLE, self, name="mcpExample", wrap=True, selectable=True))
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        self.save_button = QPushButton("Save", self)
        self.save_button.setObjectName("saveMcp")
        self.save_button.setEnabled(False)
        self.save_button.clicked.connect(self.save)
        cancel = QPushButton("Cancel", self)
        cancel.clicked.connect(self.reject)
        buttons.addWidget(self.save_button)
        buttons.addWidget(cancel)
        layout.addLayout(buttons)
        self.loaded = False

        def read() -> str:
            try:
                return path.read_text(encoding="utf-8")
            except FileNotFoundError:
                return EMPTY

        run_in_background(read, self._loaded, lambda exc: self.status.setText(describe(exc)), owner=self)

    def _loaded(self, text: str) -> None:
        self.text.setPlainText(text)
        self.text.setEnabled(True)
        self.loaded = True
        self._check()

    def _check(self) -> None:
        data, words = check(self.text.toPlainText())
        self.status.setText(words)
        self.save_button.setEnabled(self.loaded and data is not None)

    def save(self) -> None:
        data, _words = check(self.text.toPlainText())
        if data is None:
            return
        self.save_button.setEnabled(False)
        path = self.path

        def written(_result) -> None:
            self.saved.emit()
            self.accept()

        def failed(exc: BaseException) -> None:
            self.save_button.setEnabled(True)
            show_error(self, "mcp.json not saved", exc)

        run_in_background(lambda: write_document(path, data), written, failed, owner=self)
