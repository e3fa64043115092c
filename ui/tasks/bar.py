"""The task bar: which mode the composer is in (Chat, Summarize, …) and that mode's options.

Each mode has one options page; only the current one is shown, so the row is as
tall as the current mode needs. ``request(text)`` turns the composer's text and
the options into a TaskRequest; Chat mode has none (the window asks the assistant).
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from engine.answer import Progress
from engine.errors import InvalidRequestError
from engine.tasks.code import ACTIONS
from engine.tasks.extract import SCHEMA_EXAMPLES
from engine.tasks.summarize import LENGTHS
from engine.tasks.translate import LANGUAGES, detect_language
from ui.chat.live_answer import progress_words
from ui.ops import run_in_background
from ui.plain import literal, plain_label
from ui.tasks.modes import (
    MODES,
    PLACEHOLDERS,
    TaskRequest,
    code_request,
    extract_request,
    offered_modes,
    summarize_request,
    translate_request,
)
from ui.tasks.schema_editor import SchemaEditor

_DETECT_DELAY_MS = 400
AUTO = "Detect automatically"


def _combo(parent: QWidget, name: str, items: dict[str, str] | tuple[str, ...], tip: str) -> QComboBox:
    combo = QComboBox(parent)
    combo.setObjectName(name)
    combo.setToolTip(literal(tip))
    for key, label in items.items() if isinstance(items, dict) else ((i, i) for i in items):
        combo.addItem(label, key)
    return combo


def _page(parent: QWidget, name: str) -> tuple[QWidget, QHBoxLayout]:
    page = QWidget(parent)
    page.setObjectName(name)
    row = QHBoxLayout(page)
    row.setContentsMargins(0, 0, 0, 0)
    return page, row


class TaskBar(QWidget):
    """Mode buttons plus the current mode's options; the window asks it for the request to run."""

    modeChanged = Signal(str)

    def __init__(
        self,
        chat_options: QWidget,
        translate_to: str = "English",
        library: Callable[[], object] = lambda: None,
        parent: QWidget | None = None,
    ):
        super().__init__(parent)
        self.setObjectName("taskBar")
        self.library = library  # the open DocumentLibrary, or None while it opens
        self.mode = "chat"
        self.detected: tuple[str, str | None] | None = None  # (text, language) of the last detection
        self._detect_generation = 0

        self.mode_row = QWidget(self)
        self.mode_row.setObjectName("modeRow")
        modes = QHBoxLayout(self.mode_row)
        modes.setContentsMargins(0, 0, 0, 0)
        modes.setSpacing(0)
        self.buttons: dict[str, QToolButton] = {}
        self.group = QButtonGroup(self)
        self.group.setExclusive(True)
        for i, (key, label) in enumerate(MODES.items()):
            button = QToolButton(self.mode_row)
            button.setText(label)
            button.setCheckable(True)
            button.setObjectName("modeButton")
            button.setProperty("position", "first" if i == 0 else "last" if i == len(MODES) - 1 else "middle")
            button.clicked.connect(lambda _=False, k=key: self.set_mode(k))
            self.group.addButton(button)
            modes.addWidget(button)
            self.buttons[key] = button
        self.buttons["chat"].setChecked(True)
        self.offered: tuple[list[str], list[str]] = offered_modes([])  # (modes, code actions) shown

        self.pages: dict[str, QWidget] = {}
        chat, row = _page(self, "chatOptions")
        row.addWidget(chat_options)
        row.addStretch(1)
        self.pages["chat"] = chat

        page, row = _page(self, "summarizeOptions")
        self.length = _combo(page, "summaryLength", LENGTHS, "How long the summary should be")
        self.length.setCurrentIndex(max(0, self.length.findData("short")))
        row.addWidget(plain_label("Length:", page))
        row.addWidget(self.length)
        row.addStretch(1)
        self.pages["summarize"] = page

        page, row = _page(self, "translateOptions")
        self.source = _combo(page, "sourceLanguage", (AUTO, *LANGUAGES), "The language the text is in")
        self.target = _combo(page, "targetLanguage", LANGUAGES, "The language to translate into")
        self.translate_default = translate_to
        self.target.setCurrentIndex(max(0, self.target.findData(translate_to)))
        self.detected_label = plain_label("", page, name="detectedLanguage")
        self.source.currentIndexChanged.connect(lambda _i: self._schedule_detect())
        for widget in (
            plain_label("From:", page),
            self.source,
            plain_label("To:", page),
            self.target,
            self.detected_label,
        ):
            row.addWidget(widget)
        row.addStretch(1)
        self.pages["translate"] = page

        page, row = _page(self, "codeOptions")
        self.action = _combo(page, "codeAction", ACTIONS, "What to do with the code")
        self.error = QLineEdit(page)
        self.error.setObjectName("codeError")
        self.error.setPlaceholderText("Error message (optional): paste what the program printed")
        self.use_files = QCheckBox("Use indexed files", page)
        self.use_files.setObjectName("useIndexedFiles")
        self.use_files.setToolTip("Look up related code in your indexed documents")
        self.action.currentIndexChanged.connect(lambda _i: self.error.setVisible(self.action.currentData() == "fix"))
        self.error.setVisible(self.action.currentData() == "fix")
        row.addWidget(plain_label("Action:", page))
        row.addWidget(self.action)
        row.addWidget(self.error, 1)
        row.addWidget(self.use_files)
        row.addStretch(0)
        self.pages["code"] = page

        self.schema = SchemaEditor(SCHEMA_EXAMPLES, self)
        self.pages["extract"] = self.schema

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        for page in self.pages.values():
            layout.addWidget(page)
            page.setVisible(page is chat)

        self.composer: QPlainTextEdit | None = None
        self._detect_timer = QTimer(self)
        self._detect_timer.setSingleShot(True)
        self._detect_timer.setInterval(_DETECT_DELAY_MS)
        self._detect_timer.timeout.connect(self._detect)

    # Modes -------------------------------------------------------------------------

    def bind_composer(self, composer: QPlainTextEdit) -> None:
        """The box whose text the tasks work on: its placeholder follows the mode, and in Translate
        mode its language is detected as it changes."""
        self.composer = composer
        composer.textChanged.connect(self._schedule_detect)

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown task mode {mode!r}")
        self.buttons[mode].setChecked(True)
        if mode == self.mode:
            return
        self.mode = mode
        for key, page in self.pages.items():
            page.setVisible(key == mode)
        if self.composer is not None:
            self.composer.setPlaceholderText(PLACEHOLDERS[mode])
            self.composer.setFocus()
        self._schedule_detect()
        self.modeChanged.emit(mode)

    def offer(self, templates: list[str]) -> None:
        """Offer Chat and the modes of the conversation's assistant's task templates (Code with only its
        actions, the first chosen); none: every mode. A mode no longer offered goes back to Chat."""
        offered = offered_modes(list(templates))
        if offered == self.offered:
            return
        self.offered = modes, actions = offered
        for i, mode in enumerate(modes):
            button = self.buttons[mode]
            button.setProperty("position", "first" if i == 0 else "last" if i == len(modes) - 1 else "middle")
            button.style().unpolish(button)
            button.style().polish(button)
        for mode, button in self.buttons.items():
            button.setVisible(mode in modes)
        self.action.blockSignals(True)
        self.action.clear()
        for action in actions:
            self.action.addItem(ACTIONS[action], action)
        self.action.setCurrentIndex(0)
        self.action.blockSignals(False)
        self.error.setVisible(self.action.currentData() == "fix")
        if self.mode not in modes:
            self.set_mode("chat")

    def set_translate_default(self, language: str | None) -> None:
        """Settings changed: a new default target language replaces the current choice."""
        if language and language != self.translate_default and self.target.findData(language) >= 0:
            self.translate_default = language
            self.target.setCurrentIndex(self.target.findData(language))

    def visible_options(self) -> QWidget:
        return self.pages[self.mode]

    # Requests ----------------------------------------------------------------------

    def request(self, text: str) -> TaskRequest:
        """The current mode's task over ``text``; an InvalidRequestError says what is missing."""
        if self.mode == "summarize":
            return summarize_request(text, self.length.currentData())
        if self.mode == "translate":
            source = self.source.currentData()
            detected = self.detected[1] if self.detected and self.detected[0] == text else None
            return translate_request(text, self.target.currentData(), None if source == AUTO else source, detected)
        if self.mode == "code":
            library = None
            if self.use_files.isChecked():
                library = self.library()
                if library is None:
                    raise InvalidRequestError(
                        "The document index is not open yet.", hint="Wait a moment, or untick “Use indexed files”."
                    )
            return code_request(text, self.action.currentData(), self.error.text(), library)
        if self.mode == "extract":
            return extract_request(text, self.schema.schema(), self.schema.title())
        raise InvalidRequestError("Chat questions are not tasks.")

    # Language detection ------------------------------------------------------------

    def _schedule_detect(self) -> None:
        """Detect the composer text's language again after a pause in typing (only Translate needs it)."""
        if self.mode == "translate" and self.source.currentData() == AUTO:
            self._detect_timer.start()
        elif self.mode == "translate":
            self.detected_label.clear()

    def _detect(self) -> None:
        text = self.composer.toPlainText() if self.composer is not None else ""
        if not text.strip():
            self.detected = None
            self.detected_label.clear()
            return
        self._detect_generation += 1
        generation = self._detect_generation

        def shown(language: str | None) -> None:
            if generation != self._detect_generation or self.source.currentData() != AUTO:
                return
            self.detected = (text, language)
            self.detected_label.setText(f"Detected: {language}" if language else "Language not recognised")

        run_in_background(lambda: detect_language(text), shown, lambda _exc: shown(None), owner=self)


class TaskProgressRow(QWidget):
    """What a running task is doing ("Summarizing part 3 of 12") with a progress bar."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("taskProgress")
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        self.label = plain_label("", self, name="taskProgressLabel")
        self.bar = QProgressBar(self)
        self.bar.setObjectName("taskProgressBar")
        self.bar.setMaximumWidth(240)
        self.bar.setTextVisible(False)
        row.addWidget(self.label)
        row.addWidget(self.bar)
        row.addStretch(1)
        self.hide()

    def start(self, text: str) -> None:
        self.label.setText(text)
        self.bar.setRange(0, 0)  # busy until the task says how far it is
        self.show()

    def show_progress(self, event: Progress) -> None:
        """Show how far a task is."""
        self.label.setText(progress_words(event))
        self.bar.setRange(0, max(1, event.total))
        self.bar.setValue(min(event.done, event.total))
        self.show()
