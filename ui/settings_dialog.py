"""The settings dialog, built from the settings schema (one field per declared setting).

It receives the schema's specs and current values as plain data and hands back
the edited values; saving and validating stay with the app.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ui.plain import literal, plain_label

_SECTION_TITLES = {
    "model": "Model",
    "sampling": "Sampling",
    "chat": "Chat",
    "documents": "Documents",
    "tasks": "Tasks",
    "remote": "Model server",
    "traces": "Traces",
    "api": "Local API",
    "ui": "Appearance",
}
_INT_LIMIT = 2**31 - 1


def escape_line(value: str) -> str:
    """A stop string as one editable line: backslashes doubled, line breaks and tabs as \\n and \\t."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")


def unescape_line(line: str) -> str:
    out, i = [], 0
    while i < len(line):
        if line[i] == "\\" and i + 1 < len(line) and line[i + 1] in "\\nt":
            out.append({"n": "\n", "t": "\t", "\\": "\\"}[line[i + 1]])
            i += 2
        else:
            out.append(line[i])
            i += 1
    return "".join(out)


class Spec(Protocol):
    key: str
    type: type
    default: Any
    description: str
    label: str
    minimum: float | None
    maximum: float | None
    choices: tuple[str, ...] | None
    widget: str | None
    section: str


class _FileField(QWidget):
    def __init__(self, placeholder: str, parent: QWidget | None = None):
        super().__init__(parent)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        self.edit = QLineEdit(self)
        self.edit.setPlaceholderText(placeholder)
        browse = QPushButton("Browse…", self)
        browse.clicked.connect(self._browse)
        row.addWidget(self.edit, 1)
        row.addWidget(browse)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Choose a GGUF model", self.edit.text(), "GGUF models (*.gguf);;All files (*)"
        )
        if path:
            self.edit.setText(path)


class SettingsDialog(QDialog):
    def __init__(self, specs: Sequence[Spec], values: dict[str, Any], parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setObjectName("settingsDialog")
        self.resize(560, 640)
        self.specs = list(specs)
        self.editors: dict[str, QWidget] = {}
        self.notes: dict[str, QLabel] = {}
        self.tokens: dict[str, QLineEdit] = {}  # keyring entries edited here (not settings): name -> field
        content = QWidget(self)
        column = QVBoxLayout(content)
        self.forms = forms = {}
        for spec in self.specs:
            if spec.section not in forms:
                box = QGroupBox(_SECTION_TITLES.get(spec.section, spec.section.title()), content)
                forms[spec.section] = QFormLayout(box)
                column.addWidget(box)
            editor = self._editor(spec)
            editor.setToolTip(literal(f"{spec.description}\n({spec.key})"))
            editor.setObjectName(spec.key)
            self.editors[spec.key] = editor
            forms[spec.section].addRow(plain_label(spec.label, content), editor)
        column.addStretch(1)
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setWidget(content)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok
            | QDialogButtonBox.StandardButton.Cancel
            | QDialogButtonBox.StandardButton.RestoreDefaults,
            self,
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults).clicked.connect(self.restore_defaults)
        layout = QVBoxLayout(self)
        layout.addWidget(scroll, 1)
        layout.addWidget(buttons)
        self.set_values(values)

    def set_note(self, section: str, text: str) -> None:
        """A line of information (not a setting) at the top of a section, e.g. where embeddings run."""
        label = self.notes.get(section)
        if label is None:
            label = self.notes[section] = plain_label("", self, name=f"{section}Note", wrap=True)
            self.forms[section].insertRow(0, label)
        label.setText(text)

    def show_embedding_device(self, device: tuple[str, str] | None, server: str = "") -> None:
        """Say in the Documents section where embeddings run: (device, dtype), or None before the model starts;
        ``server``: the embedding server the documents use, if any."""
        if server:
            text = f"Embeddings come from the server at {server}"
        elif device:
            text = f"Embeddings run on: {device[0].upper()} ({device[1]})"
        else:
            text = (
                "Embeddings run on: CUDA with float16 when torch has CUDA, else Apple MPS, else the CPU "
                "(decided when the embedding model first starts)"
            )
        self.set_note("documents", text)

    def add_token(
        self, section: str, name: str, label: str, description: str, *, after: str | None = None
    ) -> QLineEdit:
        """A hidden field for a token kept in the system keyring as ``name`` (not a setting), placed after the
        setting ``after``; left empty, the stored token stays as it is."""
        edit = QLineEdit(self)
        edit.setEchoMode(QLineEdit.EchoMode.Password)
        edit.setObjectName(name)
        edit.setPlaceholderText("Unchanged (type a new key to replace it)")
        edit.setToolTip(literal(f"{description}\n(keyring: {name})"))
        form = self.forms[section]
        row = form.getWidgetPosition(self.editors[after])[0] + 1 if after in self.editors else form.rowCount()
        form.insertRow(row, plain_label(label, self), edit)
        self.tokens[name] = edit
        return edit

    def token_values(self) -> dict[str, str]:
        """The tokens typed in: keyring name -> new value (fields left empty are not included)."""
        return {name: edit.text().strip() for name, edit in self.tokens.items() if edit.text().strip()}

    def _editor(self, spec: Spec) -> QWidget:
        if spec.widget == "gguf_file":
            return _FileField("None" if spec.key == "model.draft_model" else "Bundled SmolLM2-135M-Instruct", self)
        if spec.widget in ("multiline", "lines"):
            edit = QPlainTextEdit(self)
            edit.setFixedHeight(90 if spec.widget == "multiline" else 60)
            return edit
        if spec.type is bool:
            return QCheckBox(self)
        if spec.choices:
            combo = QComboBox(self)
            combo.addItems(list(spec.choices))
            return combo
        if spec.type is int:
            box = QSpinBox(self)
            box.setRange(int(max(spec.minimum, -_INT_LIMIT)), int(min(spec.maximum, _INT_LIMIT)))
            return box
        if spec.type is float:
            box = QDoubleSpinBox(self)
            box.setRange(spec.minimum, spec.maximum)
            box.setDecimals(3)
            box.setSingleStep(0.05)
            return box
        return QLineEdit(self)

    def set_values(self, values: dict[str, Any]) -> None:
        for spec in self.specs:
            editor, value = self.editors[spec.key], values.get(spec.key, spec.default)
            if isinstance(editor, _FileField):
                editor.edit.setText(value)
            elif isinstance(editor, QPlainTextEdit):
                editor.setPlainText("\n".join(escape_line(v) for v in value) if spec.widget == "lines" else value)
            elif isinstance(editor, QCheckBox):
                editor.setChecked(bool(value))
            elif isinstance(editor, QComboBox):
                editor.setCurrentText(value)
            elif isinstance(editor, (QSpinBox, QDoubleSpinBox)):
                editor.setValue(value)
            else:
                editor.setText(str(value))

    def values(self) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for spec in self.specs:
            editor = self.editors[spec.key]
            if isinstance(editor, _FileField):
                result[spec.key] = editor.edit.text().strip()
            elif isinstance(editor, QPlainTextEdit):
                text = editor.toPlainText()
                result[spec.key] = (
                    [unescape_line(ln) for ln in text.split("\n") if ln] if spec.widget == "lines" else text
                )
            elif isinstance(editor, QCheckBox):
                result[spec.key] = editor.isChecked()
            elif isinstance(editor, QComboBox):
                result[spec.key] = editor.currentText()
            elif isinstance(editor, QSpinBox):
                result[spec.key] = editor.value()
            elif isinstance(editor, QDoubleSpinBox):
                result[spec.key] = round(editor.value(), editor.decimals())
            else:
                result[spec.key] = editor.text()
        return result

    def restore_defaults(self) -> None:
        self.set_values({spec.key: spec.default for spec in self.specs})
