"""The main window: conversations on the left, the chat on the right, status below."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QIcon, QKeySequence
from PySide6.QtWidgets import (
    QHBoxLayout,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from engine.assistant import AnswerHandle, Cited, Retrieved
from engine.errors import EngineError
from engine.runtime.types import Done, Failed, Started, Token
from engine.tasks.base import TaskDone, TaskFailed, TaskProgress, TaskText
from resources import resource_path
from ui.bridge import EngineBridge
from ui.chat.backend_selector import BackendSelector
from ui.chat.composer import Composer
from ui.chat.documents_selector import DocumentsSelector
from ui.chat.message import MessageWidget
from ui.chat.view import ChatView
from ui.documents_controller import DocumentsController
from ui.errors import describe, show_error
from ui.model_status import ModelStatus
from ui.ops import run_in_background
from ui.plain import literal, message_box, plain_label
from ui.settings_flow import edit_settings
from ui.conversation_list import ConversationList
from ui.sidebar import ConversationSidebar
from ui.tasks.bar import TaskBar, TaskProgressRow
from ui.tasks.modes import MODES, TaskRequest, answer_stats_text, task_stats_text
from ui.tasks.launcher import TaskLauncher
from ui.services import Services
from ui.traces.links import link_answer
from ui.traces.window import TraceWindow

log = logging.getLogger(__name__)


@dataclass
class _LiveAnswer:
    """The answer being streamed; its handle arrives from a background op, its events from the bridge."""

    widget: MessageWidget | None
    user_widget: MessageWidget | None
    text: str = ""
    handle: AnswerHandle | None = None
    result: Done | Failed | None = None
    cancel_requested: bool = False
    citations: tuple = ()


class MainWindow(QMainWindow):
    answerFinished = Signal(object)  # Done | Failed | TaskDone | TaskFailed, after the window has shown it
    settingsApplied = Signal()  # the settings dialog's changes are saved and in effect

    def __init__(self, services: Services, version: str = "", parent: QWidget | None = None):
        super().__init__(parent)
        self.services = services
        self.version = version
        self.setWindowTitle("Locus")
        self.setWindowIcon(QIcon(str(resource_path("icons", "locus.svg"))))
        self.resize(1100, 760)
        self.conversation_id: int | None = None
        self.live: _LiveAnswer | None = None
        self.editing = False
        self.pending_collections: list[str] | None = None  # documents choice for a conversation not yet saved

        self.bridge = EngineBridge(self)
        self.bridge.answerEvent.connect(self._on_answer_event)
        self.bridge.taskEvent.connect(self._on_answer_event)  # a task's output streams like an answer

        self.sidebar = ConversationSidebar(self)
        self.sidebar.newRequested.connect(self.new_conversation)
        self.sidebar.conversationSelected.connect(self.open_conversation)
        self.sidebar.deleteRequested.connect(self.delete_conversation)
        self.conversations = ConversationList(self.sidebar, services.history, lambda: self.conversation_id, self)

        self.chat = ChatView(self)
        self.documents_selector = DocumentsSelector(self)
        self.documents_selector.valueChanged.connect(self._documents_chosen)
        self.edit_banner = plain_label("Editing your last question: Enter sends it again, Esc cancels.", self,
                                       name="editBanner")
        self.edit_banner.hide()
        self.composer = Composer(self)
        self.composer.submitted.connect(self.send)
        self.composer.escaped.connect(self._escape)
        self.task_bar = TaskBar(self.documents_selector, services.settings.tasks.translate_to,
                                lambda: self.documents.library, self)
        self.task_bar.bind_composer(self.composer)
        self.task_bar.modeChanged.connect(lambda _mode: self._set_editing(False))  # editing is for chat
        self.task_progress = TaskProgressRow(self)
        self.send_button = self._button("Send", "sendButton", self._send_or_stop)
        self.regenerate_button = self._button("Regenerate", "regenerateButton", self.regenerate,
                                              "Answer the last question again")
        self.edit_button = self._button("Edit last question", "editButton", self.edit_last_question)
        self.backend = BackendSelector(self, services, lambda: self.conversation_id)

        right = QWidget(self)
        column = QVBoxLayout(right)
        column.setContentsMargins(0, 0, 8, 8)
        column.addWidget(self.chat, 1)
        actions = QHBoxLayout()
        actions.addWidget(self.task_bar.mode_row)
        actions.addWidget(self.backend.button)
        actions.addStretch(1)
        actions.addWidget(self.edit_button)
        actions.addWidget(self.regenerate_button)
        column.addLayout(actions)
        column.addWidget(self.task_bar)
        column.addWidget(self.task_progress)
        column.addWidget(self.edit_banner)
        entry = QHBoxLayout()
        entry.addWidget(self.composer, 1)
        entry.addWidget(self.send_button, 0, Qt.AlignmentFlag.AlignBottom)
        column.addLayout(entry)
        splitter = QSplitter(self)
        splitter.addWidget(self.sidebar)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([260, 840])
        self.setCentralWidget(splitter)

        self.model = ModelStatus(self, services, self.bridge)
        self.model_label, self.load_bar = self.model.label, self.model.bar
        self.stats_label = plain_label("", self, name="statsLabel")
        self.statusBar().addPermanentWidget(self.stats_label)
        self.documents = DocumentsController(self, services, self.bridge)
        self.documents.collectionsChanged.connect(self.documents_selector.set_collections)
        self.tasks = TaskLauncher(self, services)
        self.documents.summaryTextReady.connect(self.tasks.summarize_document)
        self.documents.selectionTask.connect(self.tasks.on_selection)
        self.chat.selectionTask.connect(self.tasks.on_selection)
        self.chat.sourceClicked.connect(self.documents.open_source)
        self.chat.traceRequested.connect(self.open_traces)
        self.setAcceptDrops(True)
        self._build_menu()
        self._update_buttons()
        self.composer.setFocus()

    def _button(self, text: str, name: str, slot, tip: str = "") -> QPushButton:
        button = QPushButton(text, self)
        button.setObjectName(name)
        button.setToolTip(literal(tip))
        button.clicked.connect(slot)
        return button

    def _build_menu(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        new = QAction("&New chat", self, shortcut=QKeySequence.StandardKey.New, triggered=self.new_conversation)
        settings = QAction("&Settings…", self, shortcut=QKeySequence("Ctrl+,"), triggered=self.open_settings)
        models = QAction("&Models…", self, shortcut=QKeySequence("Ctrl+Shift+M"),
                         triggered=lambda: self.model.open_manager())
        quit_ = QAction("&Quit", self, shortcut=QKeySequence.StandardKey.Quit, triggered=self.close)
        for action in (new, models, settings):
            file_menu.addAction(action)
        file_menu.addSeparator()
        file_menu.addAction(quit_)
        view_menu = self.menuBar().addMenu("&View")
        view_menu.addAction(self.documents.toggle_action)
        view_menu.addAction(QAction("&Trace log…", self, shortcut=QKeySequence("Ctrl+Shift+T"),
                                    triggered=lambda: self.open_traces()))
        tools_menu = self.menuBar().addMenu("&Tools")
        tools_menu.addAction(QAction("&Prompt templates…", self, triggered=self.tasks.open_template_editor))
        help_menu = self.menuBar().addMenu("&Help")
        help_menu.addAction(QAction("&About Locus", self, triggered=self._about))

    # Start-up ----------------------------------------------------------------------

    def start(self) -> None:
        """Begin loading the model, fill the sidebar, and report settings problems."""
        self.load_model()
        self.refresh_conversations()
        self.documents.open()
        if self.services.problems:
            QTimer.singleShot(0, self._report_setting_problems)

    def _report_setting_problems(self) -> None:
        text = "\n\n".join(str(p) for p in self.services.problems)
        show_error(self, "Settings problems", "Some settings in config.toml were not valid; defaults are used "
                   "for them:\n\n" + text)

    def load_model(self) -> None:
        self.model.load()

    # Conversations -----------------------------------------------------------------

    def refresh_conversations(self) -> None:
        self.conversations.refresh()

    def _detach_live_answer(self) -> None:
        """The view is about to show something else: the streaming answer keeps going (and being
        saved) but no longer paints into widgets that are about to be deleted."""
        if self.live is not None:
            self.live.widget = self.live.user_widget = None

    def new_conversation(self) -> None:
        self._set_editing(False)
        self.conversation_id = None
        self.pending_collections = None
        self.documents_selector.set_value(None)
        self.backend.show_for(None)
        self._detach_live_answer()
        self.chat.clear()
        self.sidebar.select(None)
        self._update_buttons()
        self.composer.setFocus()

    def open_conversation(self, conversation_id: int) -> None:
        if conversation_id == self.conversation_id:
            return
        self._set_editing(False)
        self.conversation_id = conversation_id

        def show(loaded) -> None:
            conversation, messages = loaded
            if self.conversation_id != conversation_id:
                return
            self.documents_selector.set_value(conversation.collections)
            self.backend.show_for(conversation)
            self._detach_live_answer()
            self.chat.show_messages(messages)
            self._reattach_live_answer()
            self._update_buttons()

        history = self.services.history
        run_in_background(lambda: (history.conversation(conversation_id), history.messages(conversation_id)), show,
                          lambda exc: show_error(self, "Open conversation", exc), owner=self)

    def _reattach_live_answer(self) -> None:
        """Back in the conversation whose answer is still streaming: follow it again."""
        live = self.live
        if live is None or live.handle is None or live.handle.conversation_id != self.conversation_id:
            return
        for widget in self.chat.messages():
            if widget.message_id == live.handle.assistant_message_id:
                live.widget = widget
                widget.set_text(live.text)
                widget.set_status("streaming")

    def _documents_chosen(self, value: list[str] | None) -> None:
        """The documents selector changed: save it on the conversation (or keep it for the first question)."""
        if self.conversation_id is None:
            self.pending_collections = value
            return
        conversation = self.conversation_id
        run_in_background(lambda: self.services.history.set_collections(conversation, value), None,
                          lambda exc: show_error(self, "Documents", exc), owner=self)

    def delete_conversation(self, conversation_id: int) -> None:
        answer = QMessageBox.question(self, "Delete conversation",
                                      "Delete this conversation, its messages and its traces? This cannot be undone.")
        if answer != QMessageBox.StandardButton.Yes:
            return
        live = self.live
        if live and live.handle and live.handle.conversation_id == conversation_id:
            self.stop()
        if conversation_id == self.conversation_id:
            self.new_conversation()

        def deleted(result) -> None:
            self.refresh_conversations()
            self.statusBar().showMessage(result.describe(), 8000)

        run_in_background(lambda: self.services.assistant.delete_conversation(conversation_id), deleted,
                          lambda exc: show_error(self, "Delete", exc), owner=self)

    # Asking ------------------------------------------------------------------------

    def _send_or_stop(self) -> None:
        if self.live is not None:
            self.stop()
        else:
            self.send(self.composer.toPlainText())

    def send(self, text: str) -> None:
        """Show the question, save it and stream the answer (the saving happens off the GUI thread)."""
        if self.live is not None or not text.strip():
            return
        if self.task_bar.mode != "chat":
            try:
                request = self.task_bar.request(text)
            except EngineError as exc:
                show_error(self, MODES[self.task_bar.mode], exc)
                return
            self.composer.clear()
            self.run_task(request)
            return
        editing, conversation = self.editing, self.conversation_id
        self._set_editing(False)
        self.composer.clear()
        sink = self.bridge.answer_sink
        if editing and conversation is not None:
            last_user = self._last_widget("user")
            if last_user is not None:
                self.chat.remove_from(last_user)
            start = lambda: self.services.assistant.resend_edited(conversation, text, sink)  # noqa: E731
        elif conversation is None:
            chosen, options = self.pending_collections, self.backend.ask_options()
            start = lambda: self.services.assistant.ask(text, None, sink, collections=chosen,  # noqa: E731
                                                        **options)
        else:
            options = self.backend.ask_options()
            start = lambda: self.services.assistant.ask(text, conversation, sink, **options)  # noqa: E731
        user_widget = self.chat.add_message("user", text)
        self._begin_answer(user_widget, start)

    def refuse_if_busy(self) -> bool:
        """True (and says so in the status bar) while an answer or task is still running."""
        if self.live is not None:
            self.statusBar().showMessage("Wait for the current answer to finish, or stop it first.", 5000)
        return self.live is not None

    def run_task(self, request: TaskRequest) -> bool:
        """Show the task's request, save it and stream its output into the current conversation
        (a new one when none is open); False when an answer is still running."""
        if self.refuse_if_busy():
            return False
        conversation, sink, assistant = self.conversation_id, self.bridge.task_sink, self.services.assistant
        user_widget = self.chat.add_message("user", request.request_text)
        self.task_progress.start(request.working)
        self._begin_answer(user_widget, lambda: assistant.run_task(request.run, request.request_text, conversation,
                                                                   sink, name=request.name))
        return True

    def regenerate(self) -> None:
        if self.live is not None or self.conversation_id is None:
            return
        conversation = self.conversation_id
        last = self.chat.messages()[-1] if self.chat.messages() else None
        if last is not None and last.role == "assistant":
            self.chat.remove_from(last)
        self._begin_answer(self._last_widget("user"),
                           lambda: self.services.assistant.regenerate(conversation, self.bridge.answer_sink))

    def edit_last_question(self) -> None:
        last_user = self._last_widget("user")
        if self.live is not None or last_user is None:
            return
        self.composer.setPlainText(last_user.text)
        self._set_editing(True)
        self.composer.setFocus()

    def stop(self) -> None:
        live = self.live
        if live is None:
            return
        live.cancel_requested = True
        if live.handle is not None:
            live.handle.cancel()

    def _escape(self) -> None:
        if self.live is not None:
            self.stop()
        elif self.editing:
            self._set_editing(False)
            self.composer.clear()

    def _begin_answer(self, user_widget: MessageWidget | None, start) -> None:
        widget = self.chat.add_message("assistant", "", "streaming")
        self.live = _LiveAnswer(widget, user_widget)
        self.chat.scroll_to_bottom()
        self._update_buttons()
        run_in_background(start, self._on_answer_started, self._on_answer_not_started, owner=self)

    def _on_answer_started(self, handle: AnswerHandle) -> None:
        live = self.live
        if live is None:
            return
        live.handle = handle
        if live.cancel_requested:
            handle.cancel()
        if live.widget is not None:
            live.widget.message_id = handle.assistant_message_id
        if live.user_widget is not None:
            live.user_widget.message_id = handle.user_message.id
        if self.conversation_id is None and live.widget is not None:
            self.conversation_id = handle.conversation_id
        self.refresh_conversations()
        if live.result is not None:
            self._finish_answer()

    def _on_answer_not_started(self, exc: BaseException) -> None:
        live, self.live = self.live, None
        self.task_progress.hide()
        if live is not None and live.widget is not None:
            live.widget.set_status("failed", describe(exc))
        self._update_buttons()

    def _on_answer_event(self, event) -> None:
        live = self.live
        if live is None:
            return
        if isinstance(event, (Token, TaskText)):
            live.text += event.text
            if live.widget is not None:
                self.chat.update_streaming(live.widget, live.text)
        elif isinstance(event, TaskProgress):
            self.task_progress.show_progress(event)
            if live.widget is not None:  # the answer says what its task is doing until it ends
                live.widget.status_label.setText(self.task_progress.label.text())
                live.widget.status_label.show()
        elif isinstance(event, (Done, Failed, TaskDone, TaskFailed)):
            live.result = event
            if live.handle is not None:
                self._finish_answer()
        elif isinstance(event, Started) and live.widget is not None:
            live.widget.set_status("streaming")
        elif isinstance(event, Retrieved) and live.widget is not None:
            found = len(event.passages)
            live.widget.status_label.setText(f"Answering from {found} passage{'s' * (found != 1)}" if found
                                             else "No passage in the documents matched")
            live.widget.status_label.show()
        elif isinstance(event, Cited):
            live.citations = event.citations

    def _finish_answer(self) -> None:
        live, self.live = self.live, None
        result = live.result
        self.chat.flush()
        self.task_progress.hide()
        widget = live.widget
        if isinstance(result, (Done, TaskDone)):
            cancelled = result.cancelled if isinstance(result, TaskDone) else result.stats.finish_reason == "cancelled"
            if widget is not None:
                if cancelled and not result.text.strip():
                    self.chat.remove_from(widget)  # stopped before it said anything: nothing was kept
                else:
                    widget.set_text(result.text)
                    widget.set_status("cancelled" if cancelled else "complete")
                    if live.citations:
                        widget.set_sources([c.to_dict() for c in live.citations])
                    link_answer(widget, live.handle, result, self.services.history, self)
            if isinstance(result, TaskDone):
                self.stats_label.setText(task_stats_text(result.stats))
            else:
                self._show_stats(result.stats)
        elif isinstance(result, (Failed, TaskFailed)):
            if widget is not None:
                widget.set_text(live.text)
                widget.set_status("failed", describe(result.error))
                link_answer(widget, live.handle, result, self.services.history, self)
            self.statusBar().showMessage(describe(result.error), 10000)
        self._update_buttons()
        self.refresh_conversations()
        self.answerFinished.emit(result)

    def _show_stats(self, stats) -> None:
        self.stats_label.setText(answer_stats_text(stats))

    # Helpers -----------------------------------------------------------------------

    def _last_widget(self, role: str) -> MessageWidget | None:
        for widget in reversed(self.chat.messages()):
            if widget.role == role:
                return widget
        return None

    def _set_editing(self, editing: bool) -> None:
        self.editing = editing
        self.edit_banner.setVisible(editing)

    def _update_buttons(self) -> None:
        streaming = self.live is not None
        self.send_button.setText("Stop" if streaming else "Send")
        self.send_button.setToolTip("Stop the answer (Esc)" if streaming else "Send (Enter)")
        has_question = self._last_widget("user") is not None and self.conversation_id is not None
        self.regenerate_button.setEnabled(not streaming and has_question)
        self.edit_button.setEnabled(not streaming and has_question)

    # Settings and the rest ---------------------------------------------------------

    def open_settings(self) -> None:
        edit_settings(self)

    def open_traces(self, trace_id: str | None = None) -> TraceWindow:
        """Show the trace log window, at ``trace_id`` when given ('Show trace' on an answer)."""
        return TraceWindow.open_for(self, self.services, trace_id)

    def _about(self) -> None:
        message_box(self, "About Locus", f"Locus {self.version}".strip(),
                    informative="A private AI assistant that runs entirely on this computer.",
                    name="aboutBox").open()

    def dragEnterEvent(self, event) -> None:  # noqa: N802 - Qt override
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802 - Qt override
        """Files or folders dropped anywhere on the window are indexed."""
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            self.documents.handle_drop(paths)
            event.acceptProposedAction()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt override
        self.stop()  # the runtime saves the partial answer while shutting down
        super().closeEvent(event)
