"""Assistants in the window: the chat header's selector (which assistant answers this conversation) and the
editor (create, edit, duplicate, delete custom ones; reset a built-in).

Names and prompts are the user's text: shown as plain text everywhere (menu entries through
``mnemonic_safe``, tooltips through ``literal``). Choosing an assistant saves it on the conversation
(engine/assistants.Assistants.choose: its documents and tools become the conversation's too); a new
conversation gets it with its first question (``ask_options``). An assistant that names a model other than
the loaded one answers with the loaded one: the button's tooltip and the status bar say so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMenu,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from engine.assistants import Assistants, Preset
from ui.errors import show_error
from ui.ops import run_in_background
from ui.plain import confirm, literal, mnemonic_safe, plain_label

NONE_LABEL = "No assistant"


def model_note(preset: Preset | None, info) -> str:
    """What happens to the model an assistant asks for: '' when it is the loaded one (or it asks for none)."""
    if preset is None or not preset.wants_other_model(info):
        return ""
    loaded = info.name if info is not None else "the loaded model"
    return (
        f"\u201c{preset.name}\u201d asks for the model {preset.model}; its answers use the loaded model "
        f"({loaded}). Load {preset.model} in File \u203a Models to use it."
    )


class AssistantSelector(QObject):
    """A tool button with a menu: No assistant, each assistant, and "Edit assistants…". ``value`` is the
    assistant id of the conversation shown (None: none)."""

    chosen = Signal(object)  # the Preset chosen (or None), after a person picked it
    templatesShown = Signal(list)  # the task templates of the assistant shown ([]: none, every task)

    def __init__(self, window: QMainWindow, services, current: Callable[[], int | None]):
        super().__init__(window)
        self.window = window
        self.services = services
        self.current = current  # the conversation the window shows (None: a new one, not saved yet)
        self.presets = Assistants(services.history, services.templates)
        self.value: str | None = None
        self.picked = False  # a person chose since the conversation was shown
        self.known: list[Preset] = []
        self.button = QToolButton(window)
        self.button.setObjectName("assistantSelector")
        self.button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.button.setMenu(QMenu(self.button))
        self._rebuild()
        self.reload()

    # Values ------------------------------------------------------------------------------

    def ask_options(self) -> dict:
        """What to pass to Assistant.ask for a conversation not saved yet: the assistant picked for it."""
        return {"assistant": self.value} if self.picked and self.current() is None else {}

    def preset(self) -> Preset | None:
        return next((p for p in self.known if p.id == self.value), None)

    def show_for(self, conversation, default: str | None = None) -> None:
        """Show a conversation's assistant (a new conversation: ``default``, a project's, as if picked)."""
        self.value = getattr(conversation, "assistant_id", None) if conversation is not None else default
        self.picked = conversation is None and default is not None
        self._rebuild()

    def reload(self) -> None:
        """Read the assistants again (after the editor changed them)."""
        run_in_background(
            self.presets.all, self._loaded, lambda exc: show_error(self.window, "Assistants", exc), owner=self
        )

    def _loaded(self, presets: list[Preset]) -> None:
        self.known = presets
        if self.value is not None and all(p.id != self.value for p in presets):
            self.value = None  # deleted in the editor: its conversations went back to none
        self._rebuild()

    def choose(self, assistant_id: str | None) -> None:
        """What the menu does: save the choice on the conversation (its documents and tools with it)."""
        self.value, self.picked = assistant_id, True
        self._rebuild()
        preset = self.preset()
        conversation = self.current()
        window = self.window
        if preset is not None and preset.collections is not None:
            window.documents_selector.set_value(preset.collections)
            if conversation is None:
                window.pending_collections = list(preset.collections)
        if preset is not None and preset.tools and conversation is None:
            window.tool_picker.choose(list(preset.tools))
        if conversation is not None:

            def saved(_preset) -> None:
                if preset is not None and preset.tools and self.current() == conversation:
                    window.tool_picker.set_value(list(preset.tools))

            run_in_background(
                lambda: self.presets.choose(conversation, assistant_id),
                saved,
                lambda exc: show_error(window, "Assistant", exc),
                owner=self,
            )
        note = model_note(preset, self._loaded_model())
        if note:
            window.statusBar().showMessage(note, 15000)
        elif preset is not None:
            window.statusBar().showMessage(f"Answers in this conversation come from \u201c{preset.name}\u201d.", 5000)
        self.chosen.emit(preset)

    def open_editor(self) -> AssistantEditor:
        editor = AssistantEditor(self.window, self.presets, self._collections())
        editor.changed.connect(self.reload)
        editor.finished.connect(editor.deleteLater)
        editor.open()
        return editor

    # Drawing -----------------------------------------------------------------------------

    def _loaded_model(self):
        try:
            return self.services.backends.resolve(None)[1].model_info
        except Exception:  # noqa: BLE001 - no backend yet: no model to compare with
            return None

    def _collections(self) -> list[str]:
        selector = getattr(self.window, "documents_selector", None)
        return list(getattr(selector, "collections", []) or [])

    def _rebuild(self) -> None:
        preset = self.preset()
        name = preset.name if preset is not None else (NONE_LABEL if self.value is None else "(deleted)")
        self.button.setText(mnemonic_safe(f"Assistant: {name}"))
        self.templatesShown.emit(list(preset.templates) if preset is not None else [])
        note = model_note(preset, self._loaded_model())
        tip = "Who answers this conversation: a system prompt, sampling and documents"
        self.button.setToolTip(literal(f"{tip}\n\n{note}" if note else tip))
        menu = self.button.menu()
        menu.clear()
        group = QActionGroup(menu)
        options: list[tuple[str | None, str]] = [(None, NONE_LABEL)]
        options += [(p.id, p.name) for p in self.known]
        for assistant_id, label in options:
            action = QAction(mnemonic_safe(label), menu, checkable=True, checked=self.value == assistant_id)
            action.triggered.connect(lambda _checked=False, a=assistant_id: self.choose(a))
            group.addAction(action)
            menu.addAction(action)
        menu.addSeparator()
        menu.addAction("Edit assistants…", self.open_editor)


class AssistantEditor(QDialog):
    """The assistants with one's settings beside the list: save, new, duplicate, delete, reset."""

    changed = Signal()  # something was saved or deleted

    def __init__(self, parent: QWidget | None, presets: Assistants, collections: list[str] = ()):
        super().__init__(parent)
        self.setObjectName("assistantEditor")
        self.setWindowTitle("Assistants")
        self.resize(820, 560)
        self.presets = presets
        self.items: list[Preset] = []
        self.edited: set[str] = set()  # built-ins that differ from what shipped
        self.list = QListWidget(self)
        self.list.setObjectName("assistantList")
        self.list.currentRowChanged.connect(self._show)
        self.name = QLineEdit(self)
        self.name.setObjectName("assistantName")
        self.prompt = QPlainTextEdit(self)
        self.prompt.setObjectName("assistantPrompt")
        self.prompt.setPlaceholderText("The system prompt: who the assistant is and how it answers")
        self.model = QLineEdit(self)
        self.model.setObjectName("assistantModel")
        self.model.setPlaceholderText("The loaded model")
        self.model.setToolTip(
            "A model's name or file. Answers always come from the loaded model; when it is another one, "
            "the window says so."
        )
        self.temperature = QDoubleSpinBox(self)
        self.temperature.setObjectName("assistantTemperature")
        self.temperature.setRange(-0.05, 5.0)
        self.temperature.setSingleStep(0.05)
        self.temperature.setSpecialValueText("As in Settings")
        self.max_tokens = QSpinBox(self)
        self.max_tokens.setObjectName("assistantMaxTokens")
        self.max_tokens.setRange(0, 32768)
        self.max_tokens.setSpecialValueText("As in Settings")
        self.documents = QComboBox(self)
        self.documents.setObjectName("assistantDocuments")
        self.documents.addItem("Leave the conversation's choice", "keep")
        self.documents.addItem("All documents", "all")
        for name in collections:
            self.documents.addItem(mnemonic_safe(f"Collection: {name}"), name)
        self.tools = QLineEdit(self)
        self.tools.setObjectName("assistantTools")
        self.tools.setPlaceholderText("Tool names, separated by commas (none: leave the conversation's)")
        self.template_list = QListWidget(self)
        self.template_list.setObjectName("assistantTemplates")
        self.template_list.setToolTip("The tasks the task bar offers with this assistant (none ticked: every task)")
        self.template_list.setMaximumHeight(150)
        self.choices: list[tuple[str, str]] = []  # (name, title) of the templates an assistant may offer
        self.kind = plain_label("", self, name="assistantKind", wrap=True)
        form = QFormLayout()
        form.addRow("Name", self.name)
        form.addRow("System prompt", self.prompt)
        form.addRow("Model", self.model)
        form.addRow("Temperature", self.temperature)
        form.addRow("Longest answer (tokens)", self.max_tokens)
        form.addRow("Documents", self.documents)
        form.addRow("Tools", self.tools)
        form.addRow("Task templates", self.template_list)
        form.addRow(self.kind)
        self.save_button = self._button("Save", "assistantSave", self.save)
        self.new_button = self._button("New", "assistantNew", self.new)
        self.duplicate_button = self._button("Duplicate", "assistantDuplicate", self.duplicate)
        self.delete_button = self._button("Delete", "assistantDelete", self.delete)
        self.reset_button = self._button("Reset", "assistantReset", self.reset)
        left = QVBoxLayout()
        left.addWidget(self.list, 1)
        row = QHBoxLayout()
        for button in (self.new_button, self.duplicate_button, self.delete_button):
            row.addWidget(button)
        left.addLayout(row)
        right = QVBoxLayout()
        right.addLayout(form, 1)
        actions = QHBoxLayout()
        actions.addWidget(self.reset_button)
        actions.addStretch(1)
        actions.addWidget(self.save_button)
        right.addLayout(actions)
        top = QHBoxLayout()
        top.addLayout(left, 1)
        top.addLayout(right, 2)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        close.rejected.connect(self.reject)
        outer = QVBoxLayout(self)
        outer.addLayout(top, 1)
        outer.addWidget(close)
        self._selecting: str | None = None
        self.load()

    def _button(self, text: str, name: str, slot) -> QPushButton:
        button = QPushButton(text, self)
        button.setObjectName(name)
        button.clicked.connect(slot)
        return button

    # Data ---------------------------------------------------------------------------------

    def load(self, select: str | None = None) -> None:
        """Read the assistants (off the GUI thread) and show them, ``select`` (an id) chosen."""

        def read():
            items = self.presets.all()
            edited = {p.id for p in items if p.builtin and self.presets.is_edited(p.id)}
            return items, edited, self.presets.template_choices()

        self._selecting = select if select is not None else self.current_id()
        run_in_background(read, self._fill, lambda exc: show_error(self, "Assistants", exc), owner=self)

    def _fill(self, loaded) -> None:
        self.items, self.edited, self.choices = loaded
        self.list.blockSignals(True)
        self.list.clear()
        for preset in self.items:
            suffix = " (built-in, edited)" if preset.id in self.edited else " (built-in)" if preset.builtin else ""
            item = QListWidgetItem(preset.name + suffix)
            item.setData(Qt.ItemDataRole.UserRole, preset.id)
            item.setToolTip(literal(preset.system_prompt[:400]))
            self.list.addItem(item)
        self.list.blockSignals(False)
        ids = [p.id for p in self.items]
        self.list.setCurrentRow(ids.index(self._selecting) if self._selecting in ids else 0)
        self._show(self.list.currentRow())

    def names(self) -> list[str]:
        return [p.name for p in self.items]

    def current_id(self) -> str | None:
        item = self.list.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item is not None else None

    def current(self) -> Preset | None:
        return next((p for p in self.items if p.id == self.current_id()), None)

    def _show(self, _row: int) -> None:
        preset = self.current()
        if preset is None:
            return
        self.name.setText(preset.name)
        self.prompt.setPlainText(preset.system_prompt)
        self.model.setText(preset.model or "")
        self.temperature.setValue(preset.sampling.get("temperature", self.temperature.minimum()))
        self.max_tokens.setValue(preset.sampling.get("max_tokens", 0))
        documents = "keep" if preset.collections is None else "all" if not preset.collections else preset.collections[0]
        index = self.documents.findData(documents)
        if index < 0:  # a collection not indexed here (yet)
            self.documents.addItem(mnemonic_safe(f"Collection: {documents}"), documents)
            index = self.documents.count() - 1
        self.documents.setCurrentIndex(index)
        self.tools.setText(", ".join(preset.tools))
        self._show_templates(preset.templates)
        self.delete_button.setEnabled(not preset.builtin)
        self.reset_button.setEnabled(preset.id in self.edited)
        self.kind.setText(
            "Built in: saving keeps your version; Reset brings back the original."
            if preset.builtin
            else "Your own assistant."
        )

    def form_preset(self) -> Preset:
        """The shown assistant with what the form says."""
        base = self.current()
        assert base is not None
        sampling = dict(base.sampling)
        spins = (("temperature", self.temperature, self.temperature.minimum()), ("max_tokens", self.max_tokens, 0))
        for key, spin, unset in spins:
            value = spin.value()
            if value == unset:
                sampling.pop(key, None)
            else:
                sampling[key] = round(value, 2) if key == "temperature" else int(value)
        documents = self.documents.currentData()
        collections = None if documents == "keep" else [] if documents == "all" else [documents]
        return dataclasses.replace(
            base,
            name=self.name.text(),
            system_prompt=self.prompt.toPlainText(),
            model=self.model.text().strip() or None,
            sampling=sampling,
            collections=collections,
            tools=_names(self.tools.text()),
            templates=self.ticked_templates(base.templates),
        )

    def _show_templates(self, chosen: list[str]) -> None:
        """The library's templates, those the assistant offers ticked (one it names that is gone: listed,
        ticked, marked missing, so it can be unticked)."""
        self.template_list.clear()
        titles = dict(self.choices)
        missing = [(name, f"{name} (missing)") for name in chosen if name not in titles]
        for name, title in [*self.choices, *missing]:
            item = QListWidgetItem(title)  # an item's text is plain text
            item.setData(Qt.ItemDataRole.UserRole, name)
            item.setToolTip(literal(name))
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if name in chosen else Qt.CheckState.Unchecked)
            self.template_list.addItem(item)

    def ticked_templates(self, before: tuple[str, ...] | list[str] = ()) -> list[str]:
        """The ticked templates: those the assistant had first, in its order, then new ones in list order."""
        rows = [self.template_list.item(i) for i in range(self.template_list.count())]
        ticked = [r.data(Qt.ItemDataRole.UserRole) for r in rows if r.checkState() == Qt.CheckState.Checked]
        return [n for n in before if n in ticked] + [n for n in ticked if n not in before]

    # Actions ------------------------------------------------------------------------------

    def _run(self, fn, title: str) -> None:
        """Do ``fn`` off the GUI thread; then show the list again at the assistant it returns."""

        def done(preset) -> None:
            self.changed.emit()
            self.load(preset.id if isinstance(preset, Preset) else None)

        run_in_background(fn, done, lambda exc: show_error(self, title, exc), owner=self)

    def save(self) -> None:
        if self.current() is None:
            return
        try:
            preset = self.form_preset()
        except Exception as exc:  # noqa: BLE001 - a form value out of range
            show_error(self, "Save assistant", exc)
            return
        self._run(lambda: self.presets.save(preset), "Save assistant")

    def new(self) -> None:
        self._run(lambda: self.presets.create("New assistant", "You are a helpful assistant."), "New assistant")

    def duplicate(self) -> None:
        chosen = self.current_id()
        if chosen is not None:
            self._run(lambda: self.presets.duplicate(chosen), "Duplicate assistant")

    def delete(self, *, ask: bool = True) -> None:
        preset = self.current()
        if preset is None or preset.builtin:
            return
        text = f"Delete the assistant \u201c{preset.name}\u201d? Conversations that use it go back to no assistant."
        if ask and not confirm(self, "Delete assistant", text):
            return
        self._run(lambda: self.presets.delete(preset.id), "Delete assistant")

    def reset(self) -> None:
        preset = self.current()
        if preset is not None and preset.builtin:
            self._run(lambda: self.presets.reset(preset.id), "Reset assistant")


def _names(text: str) -> list[str]:
    return [n for n in (part.strip() for part in text.split(",")) if n]
