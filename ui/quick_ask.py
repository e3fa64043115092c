"""The quick-ask popup: one line to ask, the answer streams below it, Escape closes.

Every quick ask is saved as a conversation (a follow-up continues it), so
"Continue in window" only has to open it in the main window. The question is
saved and the answer streamed through the same Assistant and bridge as the
window's chat; nothing here blocks the GUI thread. A tool picker chooses the
tools its answers may call; each call shows above the answer, with its approval
prompt, as in the window (ui/chat/tool_calls.py).
"""

from __future__ import annotations

import logging

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QCursor, QGuiApplication, QIcon, QKeyEvent
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLineEdit, QPushButton, QVBoxLayout, QWidget

from engine.answer import AnswerEnded, AnswerStarted
from engine.errors import EngineError
from resources import resource_path
from ui.bridge import EngineBridge
from ui.chat.live_answer import LiveAnswer, waiting_words
from ui.chat.tool_calls import ToolCallList
from ui.chat.tool_picker import ToolPicker
from ui.errors import describe
from ui.ops import run_in_background
from ui.plain import plain_label
from ui.quick_ask_parts import NO_DOCUMENTS, AnswerView, CollectionChooser
from ui.tools.watch import ToolsWatch

__all__ = ["NO_DOCUMENTS", "QuickAsk"]

log = logging.getLogger(__name__)

WIDTH = 640

_STYLE = """
QFrame#quickAskFrame { background: palette(base); border: 1px solid palette(dark); }
QLineEdit#quickAskInput { border: none; background: transparent; font-size: 17px; padding: 6px 2px; }
QComboBox#quickAskCollection { min-width: 150px; padding: 3px 8px; }
QFrame#quickAskRule { color: palette(midlight); }
QLabel#quickAskQuestion { font-weight: bold; font-size: 14px; }
QTextBrowser#quickAskAnswer { border: none; background: palette(base); font-size: 14px; }
QLabel#quickAskStatus { color: palette(dark); }
QLabel#quickAskStatus[state="error"] { color: #c62828; }
QLabel#quickAskSources { color: palette(dark); font-size: 12px; }
QPushButton#quickAskContinue { font-weight: bold; padding: 4px 14px; }
QPushButton#quickAskStop { padding: 4px 14px; }
"""


class QuickAsk(QWidget):
    """A small frameless, always-on-top window for one quick question and its streamed answer."""

    continueRequested = Signal(int)  # open this conversation in the main window
    answered = Signal(int)  # a question of this conversation got its answer (complete, stopped or failed)

    def __init__(self, services, parent: QWidget | None = None):
        flags = Qt.WindowType.Tool | Qt.WindowType.FramelessWindowHint | Qt.WindowType.WindowStaysOnTopHint
        super().__init__(parent, flags)
        self.services = services
        self.setObjectName("quickAsk")
        self.setWindowTitle("Locus — Quick ask")
        self.setStyleSheet(_STYLE)
        self.setFixedWidth(WIDTH)
        self.conversation_id: int | None = None
        self.live: LiveAnswer | None = None  # the answer shown; one stopped by closing may still be finishing
        self.bridge = EngineBridge(self)

        frame = QFrame(self)
        frame.setObjectName("quickAskFrame")
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(frame)
        column = QVBoxLayout(frame)
        column.setContentsMargins(14, 10, 14, 12)
        column.setSpacing(8)

        top = QHBoxLayout()
        top.setSpacing(10)
        logo = plain_label("", frame)
        logo.setPixmap(QIcon(str(resource_path("icons", "locus.svg"))).pixmap(26, 26))
        self.input = QLineEdit(frame)
        self.input.setObjectName("quickAskInput")
        self.input.setPlaceholderText("Ask Locus…")
        self.input.returnPressed.connect(self.ask)
        self.collection = CollectionChooser(frame)
        self.collection.picked.connect(self._collection_chosen)
        # The tools quick asks may call (kept while Locus runs; a follow-up keeps its conversation's).
        self.tool_picker = ToolPicker(frame, name="quickAskTools", panel=False)
        self.tools_watch = ToolsWatch(services.tools, self)
        self.tools_watch.changed.connect(self.tool_picker.set_snapshot)
        self.tool_picker.startRequested.connect(self._start_server)
        top.addWidget(logo)
        top.addWidget(self.input, 1)
        top.addWidget(self.collection)
        top.addWidget(self.tool_picker)
        column.addLayout(top)

        self.rule = QFrame(frame)
        self.rule.setObjectName("quickAskRule")
        self.rule.setFrameShape(QFrame.Shape.HLine)
        self.answer = AnswerView(frame)
        self.answer.grew.connect(self.adjustSize)
        self.question = plain_label("", frame, name="quickAskQuestion", wrap=True)
        self.sources = plain_label("", frame, name="quickAskSources", wrap=True)
        self.tool_calls = ToolCallList(frame)  # the answer's tool calls and approval prompts (hidden when none)
        self.tool_calls.approvalGiven.connect(self._approve)
        # The popup fits what it shows: a call's prompt, a row opened (once the rows are laid out).
        self.tool_calls.changed.connect(lambda: QTimer.singleShot(0, self.adjustSize))
        column.addWidget(self.rule)
        column.addWidget(self.question)
        column.addWidget(self.tool_calls)
        column.addWidget(self.answer)
        column.addWidget(self.sources)

        bottom = QHBoxLayout()
        self.status = plain_label("", frame, name="quickAskStatus", wrap=True)
        self.stop_button = QPushButton("Stop", frame)
        self.stop_button.setObjectName("quickAskStop")
        self.stop_button.setToolTip("Stop the answer; what it said so far is kept")
        self.stop_button.clicked.connect(self.stop)
        self.continue_button = QPushButton("Continue in window", frame)
        self.continue_button.setObjectName("quickAskContinue")
        self.continue_button.setToolTip("Open this conversation in the main window")
        self.continue_button.clicked.connect(self.continue_in_window)
        bottom.addWidget(self.status, 1)
        bottom.addWidget(self.stop_button)
        bottom.addWidget(self.continue_button)
        column.addLayout(bottom)

        self.set_collections([])
        self.reset()

    # Opening and closing -------------------------------------------------------------

    def reset(self) -> None:
        """A fresh quick ask: empty line, no answer, a new conversation on the next question."""
        if self.live is not None:
            self.stop()
        self.live = None  # a stopped answer still finishing is no longer shown (it still says when it ended)
        self.conversation_id = None
        self.input.clear()
        self.input.setPlaceholderText("Ask Locus…")
        self.answer.show_text("")
        self.tool_calls.clear()
        for widget in (self.rule, self.question, self.answer, self.sources, self.stop_button, self.continue_button):
            widget.hide()
        self._set_status("Enter asks · Esc closes")
        self.adjustSize()

    def open(self) -> None:
        """Show a fresh popup near the top of the screen under the mouse, ready to type."""
        if not self.isVisible() and self.live is None:
            self.reset()
        self._refresh_collections()
        self.tools_watch.refresh()
        screen = QGuiApplication.screenAt(QCursor.pos()) or QGuiApplication.primaryScreen()
        area = screen.availableGeometry()
        self.adjustSize()
        self.move(area.center().x() - WIDTH // 2, area.top() + area.height() // 5)
        self.show()
        self.raise_()
        self.activateWindow()
        self.input.setFocus()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Escape:
            self.close()  # hideEvent stops the answer
            return
        super().keyPressEvent(event)

    def hideEvent(self, event) -> None:
        self.stop()  # the partial answer is saved by the assistant
        super().hideEvent(event)

    @property
    def text(self) -> str:
        """The answer shown."""
        return self.answer.text

    # Documents ------------------------------------------------------------------------

    def chosen_collection(self) -> str:
        """The collection quick asks answer from; "" for plain chat."""
        return self.collection.chosen()

    def set_collections(self, names: list[str]) -> None:
        """The collections to offer."""
        self.collection.set_collections(names, keep=self.services.settings.ui.quick_ask_collection)

    def choose_collection(self, name: str) -> None:
        """Answer from this collection ("" for none) from now on, and remember it in the settings."""
        self.collection.choose(name)

    def _collection_chosen(self, name: str) -> None:
        if name == self.services.settings.ui.quick_ask_collection:
            return
        # Only this one setting changes, read and saved in the background and applied to the settings as they
        # are then, so a settings-dialog change made meanwhile is never undone by a stale copy of all the values.
        services = self.services

        def save() -> bool:
            return services.update_settings(lambda current: current.with_value("ui.quick_ask_collection", name))

        run_in_background(
            save,
            None,
            lambda exc: self._set_status(f"The choice was not saved: {describe(exc)}", error=True),
            owner=self,
        )

    def _refresh_collections(self) -> None:
        library = self.services.library
        if library is not None:
            run_in_background(
                library.collections,
                self.set_collections,
                lambda exc: log.info("quick ask: collections unavailable: %s", exc),
                owner=self,
            )

    # Asking -----------------------------------------------------------------------------

    def ask(self) -> None:
        """Save the line as a question (a follow-up after an answer) and stream its answer below."""
        text = self.input.text().strip()
        if not text or self.live is not None:
            return
        name = self.chosen_collection()
        collections = [name] if name else None
        conversation, assistant = self.conversation_id, self.services.assistant
        options = self.tool_picker.ask_options(new=conversation is None)
        live = LiveAnswer(self.bridge, waiting_words(self.services.backends.resolve(None)[1].model_info), self)
        try:
            live.start(lambda sink: assistant.ask(text, conversation, sink, collections=collections, **options))
        except EngineError as exc:  # refused at once
            live.deleteLater()
            self._set_status(describe(exc), error=True)
            return
        self.live = live
        live.answerStarted.connect(lambda started: self._started(live, started))
        live.textChanged.connect(lambda shown: live is self.live and self.answer.show_text(shown))
        live.statusChanged.connect(lambda status: live is self.live and self._set_status(status))
        live.answerEnded.connect(lambda ended: self._finish(live, ended))
        calls = self.tool_calls
        live.toolCallStarted.connect(lambda e: live is self.live and calls.call_started(e.call, e.step))
        live.approvalNeeded.connect(lambda e: live is self.live and calls.approval_needed(e.call))
        live.toolCallEnded.connect(lambda e: live is self.live and calls.call_ended(e.result))
        self.tool_calls.clear()
        self.input.clear()
        self.input.setPlaceholderText("Ask a follow-up…")
        self.question.setText(text)
        self.answer.show_text("")
        self.answer.following = True
        self.sources.hide()
        for widget in (self.rule, self.question, self.answer, self.stop_button):
            widget.show()
        self.continue_button.hide()
        self._set_status(live.status)

    def _approve(self, call_id: str, approval: str) -> None:
        """The user answered a tool call's prompt (only its buttons call this)."""
        if self.live is not None:
            self.live.approve(call_id, approval)

    def _start_server(self, name: str) -> None:
        """Start an MCP server (the picker offers it to list its tools); the watch shows its tools."""
        tools = self.services.tools
        run_in_background(
            lambda: tools.start_server(name, wait_s=0),
            None,
            lambda exc: self._set_status(f"Could not start {name}: {describe(exc)}", error=True),
            owner=self,
        )

    def stop(self) -> None:
        """Stop the answer being streamed (it is saved as a partial answer)."""
        if self.live is not None:
            self.live.cancel()

    def continue_in_window(self) -> None:
        """Hand the conversation to the main window and close the popup."""
        if self.conversation_id is None or self.live is not None:
            return
        conversation = self.conversation_id
        self.close()
        self.continueRequested.emit(conversation)

    def _started(self, live: LiveAnswer, started: AnswerStarted) -> None:
        if live is self.live:
            self.conversation_id = started.conversation_id

    def _finish(self, live: LiveAnswer, ended: AnswerEnded) -> None:
        live.deleteLater()
        saved = live.started is not None and live.started.user_message_id is not None
        if live is not self.live:  # stopped by closing the popup; the window may still list it
            if saved:
                self.answered.emit(live.conversation_id)
            return
        self.live = None
        self.answer.following = False
        self.stop_button.hide()
        if not saved:  # refused before anything was saved: give the question back
            if not self.input.text():
                self.input.setText(self.question.text())
            for widget in (self.rule, self.question, self.answer):
                widget.hide()
            self.continue_button.setVisible(self.conversation_id is not None)
            self._set_status(describe(ended.error), error=True)
            self.adjustSize()
            return
        self.continue_button.show()
        self.answer.show_text(ended.text)
        if ended.failed:
            self.answer.setVisible(bool(ended.text))
            self._set_status(describe(ended.error), error=True)
        else:
            self._set_status(
                "Stopped — the partial answer is saved."
                if ended.cancelled
                else "Saved as a conversation · Enter asks a follow-up"
            )
            if live.citations:
                names = " · ".join(
                    f"[{c.number}] {c.passage.title or c.passage.path.rsplit('/', 1)[-1]}" for c in live.citations
                )
                note = (
                    "" if any(c.supported for c in live.citations) else " (the answer may not rest on these passages)"
                )
                self.sources.setText("Sources: " + names + note)
                self.sources.show()
        self.adjustSize()
        self.answered.emit(live.conversation_id)

    # Helpers ------------------------------------------------------------------------------

    def _set_status(self, text: str, *, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setProperty("state", "error" if error else "")
        self.status.style().unpolish(self.status)
        self.status.style().polish(self.status)
