"""Tools > Prompt templates: edit a task's prompt as TOML, see it rendered and counted, save or reset it.

Edits are checked as you type (parse_template names the problem); the preview
renders the template over sample values and counts its tokens for the loaded
model off the GUI thread. Saving writes the user's copy into <config>/prompts/,
which wins over the built-in file and survives upgrades.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from engine.errors import EngineError
from engine.tasks.templates import PromptTemplate, TemplateLibrary, parse_template
from ui.errors import describe, show_error
from ui.ops import run_in_background
from ui.plain import confirm, literal, plain_label

_CHECK_DELAY_MS = 300
SAMPLE_VALUES = {
    "text": "Locus runs a language model on your own computer. Your documents and conversations never "
    "leave it, and it keeps working without a network.",
    "length": "one short paragraph",
    "target": "French",
    "source": "English",
    "language": "Python",
    "code": "def add(a, b):\n    return a + b",
    "error": "TypeError: unsupported operand type(s) for +: 'int' and 'str'",
    "question": "What does this do?",
    "location": "example.py",
    "schema": '{"type": "object", "properties": {"name": {"type": "string"}}}',
}


def _mono(widget: QPlainTextEdit) -> QPlainTextEdit:
    widget.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
    return widget


def preview_text(messages) -> str:
    """Rendered messages, each under its role."""
    return "\n\n".join(f"── {m.role} ──\n{m.content}" for m in messages)


class TemplateEditor(QDialog):
    """Lists the templates (edited ones marked), edits one, previews it, saves or resets it."""

    saved = Signal(str)  # name of a template just saved or reset

    def __init__(self, library: TemplateLibrary, runtime, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("templateEditor")
        self.setWindowTitle("Prompt templates")
        self.resize(1060, 700)
        self.library = library
        self.runtime = runtime
        self.name: str | None = None
        self.loaded_text = ""
        self.template: PromptTemplate | None = None
        self.error: str | None = None
        self.samples: dict[str, QPlainTextEdit] = {}
        self.customised: set[str] = set()
        self._count_generation = 0

        self.list = QListWidget(self)
        self.list.setObjectName("templateList")
        self.list.setMinimumWidth(150)
        self.list.setMaximumWidth(260)
        self.list.currentItemChanged.connect(self._selected)
        self.heading = plain_label("", self, name="templateHeading", wrap=True, bold=True)
        self.editor = _mono(QPlainTextEdit(self))
        self.editor.setObjectName("templateText")
        self.editor.setTabChangesFocus(False)
        self.editor.setMinimumWidth(380)
        self.editor.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)  # TOML reads by its lines
        self.editor.textChanged.connect(self._edited)
        self.error_label = plain_label("", self, name="templateError", wrap=True, selectable=True)
        self.error_label.hide()

        self.sample_form = QFormLayout()
        samples = QWidget(self)
        sample_column = QVBoxLayout(samples)
        sample_column.addLayout(self.sample_form)
        sample_column.addStretch(1)  # rows stay at the top however tall the box is
        sample_scroll = QScrollArea(self)
        sample_scroll.setWidgetResizable(True)
        sample_scroll.setWidget(samples)
        self.preview = _mono(QPlainTextEdit(self))
        self.preview.setObjectName("templatePreview")
        self.preview.setReadOnly(True)
        self.token_label = plain_label("", self, name="templateTokens", wrap=True)

        self.save_button = QPushButton("Save", self)
        self.save_button.setObjectName("saveTemplate")
        self.save_button.setToolTip("Save your version into your settings folder (it survives upgrades)")
        self.save_button.clicked.connect(self.save)
        self.reset_button = QPushButton("Reset to built-in", self)
        self.reset_button.setObjectName("resetTemplate")
        self.reset_button.clicked.connect(self.reset)
        self.status = plain_label("", self, name="templateStatus")
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        close.rejected.connect(self.reject)

        edit_column = QWidget(self)
        column = QVBoxLayout(edit_column)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self.heading)
        column.addWidget(self.editor, 1)
        column.addWidget(self.error_label)
        preview_column = QWidget(self)
        right = QVBoxLayout(preview_column)
        right.setContentsMargins(0, 0, 0, 0)
        right.addWidget(plain_label("Sample values", self, bold=True))
        right.addWidget(sample_scroll, 1)
        right.addWidget(plain_label("Preview (the messages the model gets)", self, bold=True))
        right.addWidget(self.preview, 2)
        right.addWidget(self.token_label)
        splitter = QSplitter(self)
        splitter.addWidget(self.list)
        splitter.addWidget(edit_column)
        splitter.addWidget(preview_column)
        for index, stretch in enumerate((0, 5, 4)):
            splitter.setStretchFactor(index, stretch)
        splitter.setSizes([180, 480, 400])
        buttons = QHBoxLayout()
        buttons.addWidget(self.save_button)
        buttons.addWidget(self.reset_button)
        buttons.addWidget(self.status, 1)
        buttons.addWidget(close)
        layout = QVBoxLayout(self)
        layout.addWidget(splitter, 1)
        layout.addLayout(buttons)

        self._check_timer = QTimer(self)
        self._check_timer.setSingleShot(True)
        self._check_timer.setInterval(_CHECK_DELAY_MS)
        self._check_timer.timeout.connect(self.check)
        self._update_buttons()
        self.refresh_list()

    # The list ----------------------------------------------------------------------

    def refresh_list(self, select: str | None = None) -> None:
        """Read the template names (and which the user has edited) off the GUI thread."""
        library = self.library

        def listed(rows: list[tuple[str, bool]]) -> None:
            wanted = select or self.name
            self.customised = {n for n, edited in rows if edited}
            self.list.blockSignals(True)
            self.list.clear()
            for name, customised in rows:
                item = QListWidgetItem(f"{name}  (edited)" if customised else name)
                item.setData(Qt.ItemDataRole.UserRole, name)
                item.setToolTip(
                    literal(
                        "Your version, in " + str(library.user_path(name)) if customised else "The built-in template"
                    )
                )
                self.list.addItem(item)
            self.list.blockSignals(False)
            names = [n for n, _ in rows]
            if names:
                self.list.setCurrentRow(names.index(wanted) if wanted in names else 0)

        run_in_background(
            lambda: [(n, library.is_customised(n)) for n in library.names()],
            listed,
            lambda exc: show_error(self, "Prompt templates", exc),
            owner=self,
        )

    def names(self) -> list[str]:
        return [self.list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.list.count())]

    def _selected(self, current: QListWidgetItem | None, previous: QListWidgetItem | None) -> None:
        if current is None:
            return
        name = current.data(Qt.ItemDataRole.UserRole)
        if name == self.name:
            return
        if self.dirty() and not self._discard_ok():
            self.list.blockSignals(True)
            self.list.setCurrentItem(previous)
            self.list.blockSignals(False)
            return
        self.open_template(name)

    def _discard_ok(self) -> bool:
        return confirm(self, "Unsaved changes", f"Discard your changes to '{self.name}'?")

    def open_template(self, name: str) -> None:
        library = self.library

        def loaded(text: str) -> None:
            self.name = name
            self.loaded_text = text
            self.editor.setPlainText(text)
            self.check()

        run_in_background(
            lambda: library.text(name), loaded, lambda exc: show_error(self, "Prompt templates", exc), owner=self
        )

    def dirty(self) -> bool:
        return self.name is not None and self.editor.toPlainText() != self.loaded_text

    # Checking and previewing -------------------------------------------------------

    def _edited(self) -> None:
        self._update_buttons()
        self._check_timer.start()

    def check(self) -> None:
        """Parse the text (small and pure: cheap on the GUI thread) and refresh the preview."""
        self._check_timer.stop()
        if self.name is None:
            return
        try:
            self.template = parse_template(self.name, self.editor.toPlainText())
        except EngineError as exc:
            self.template = None
            self._show_error(describe(exc))
            return
        template = self.template
        self.heading.setText(f"{template.title} — {template.description}" if template.description else template.title)
        self._sync_samples(template.variables)
        self.render_preview()

    def _sync_samples(self, variables: tuple[str, ...]) -> None:
        """One sample box per variable, keeping what the user typed in boxes that stay."""
        if tuple(self.samples) == variables:
            return
        kept = {name: box.toPlainText() for name, box in self.samples.items()}
        while self.sample_form.rowCount():
            self.sample_form.removeRow(0)
        self.samples = {}
        for name in variables:
            box = QPlainTextEdit(self)
            box.setObjectName(f"sample_{name}")
            box.setTabChangesFocus(True)
            box.setPlainText(kept.get(name, SAMPLE_VALUES.get(name, f"<{name}>")))
            box.setFixedHeight(54)
            box.textChanged.connect(self._check_timer.start)
            self.sample_form.addRow(plain_label(name, self), box)
            self.samples[name] = box

    def sample_values(self) -> dict[str, str]:
        return {name: box.toPlainText() for name, box in self.samples.items()}

    def render_preview(self) -> None:
        try:
            messages = self.template.render(**self.sample_values())
        except EngineError as exc:
            self._show_error(describe(exc))
            return
        self._show_error(None)
        self.preview.setPlainText(preview_text(messages))
        self._count_tokens(messages)

    def _count_tokens(self, messages) -> None:
        """Replace the preview with the exact prompt the loaded model's chat template makes, and count it."""
        self._count_generation += 1
        generation, runtime = self._count_generation, self.runtime
        self.token_label.setText("Counting tokens…")

        def counted(result: tuple[str, int]) -> None:
            if generation == self._count_generation:
                text, n = result
                info = runtime.model_info
                self.preview.setPlainText(text)
                self.token_label.setText(
                    f"{n} tokens for {info.name if info else 'the model'}, as its chat template renders the prompt"
                )

        def failed(exc: BaseException) -> None:
            if generation == self._count_generation:
                self.token_label.setText(f"No token count: {describe(exc)}")

        run_in_background(lambda: runtime.render_prompt(messages), counted, failed, owner=self)

    def _show_error(self, problem: str | None) -> None:
        self.error = problem
        self.error_label.setText(problem or "")
        self.error_label.setVisible(bool(problem))
        self.preview.setEnabled(not problem)  # greyed: it shows the last version that worked
        self._update_buttons()

    def _update_buttons(self) -> None:
        self.save_button.setEnabled(self.name is not None and self.error is None)
        self.reset_button.setEnabled(self.name is not None)

    # Saving ------------------------------------------------------------------------

    def save(self) -> None:
        """Check and write the user's copy off the GUI thread."""
        name, text, library = self.name, self.editor.toPlainText(), self.library
        if name is None:
            return

        def done(_template) -> None:
            if name == self.name:
                self.loaded_text = text
            self.status.setText(f"Saved to {library.user_path(name)}")
            self.refresh_list(name)
            self.saved.emit(name)

        run_in_background(
            lambda: library.save(name, text), done, lambda exc: self._show_error(describe(exc)), owner=self
        )

    def reset(self) -> None:
        """Drop the user's copy and show the built-in template again."""
        name, library = self.name, self.library
        if name is None:
            return
        if name in self.customised and not confirm(
            self, "Reset template", f"Delete your version of '{name}' and use the built-in one?"
        ):
            return

        def done(text: str) -> None:
            if name == self.name:
                self.loaded_text = text
                self.editor.setPlainText(text)
                self.check()
            self.status.setText(f"'{name}' is the built-in template again")
            self.refresh_list(name)
            self.saved.emit(name)

        def reset_and_read() -> str:
            library.reset(name)
            return library.text(name)

        run_in_background(reset_and_read, done, lambda exc: show_error(self, "Reset template", exc), owner=self)

    def reject(self) -> None:
        if self.dirty() and not self._discard_ok():
            return
        super().reject()
