"""The main window: conversations on the left, the chat on the right, status below."""

from __future__ import annotations

import logging
from functools import partial

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

from engine.answer import AnswerEnded, AnswerStarted, ApprovalNeeded
from engine.assistant import saved_source
from engine.errors import EngineError
from engine.history.writer import answer_is_kept
from resources import resource_path
from ui.assistants import AssistantSelector
from ui.bridge import EngineBridge
from ui.chat.backend_selector import BackendSelector
from ui.chat.branches import BranchController, show_hit_branch
from ui.chat.composer import Composer
from ui.chat.context_meter import ContextMeterController
from ui.chat.documents_selector import DocumentsSelector
from ui.chat.live_answer import LiveAnswer, waiting_words
from ui.chat.message import MessageWidget
from ui.chat.tool_picker import ToolPicker
from ui.chat.view import ChatView
from ui.conversation_list import ConversationList
from ui.documents_controller import DocumentsController
from ui.errors import describe, show_error
from ui.model_status import ModelStatus
from ui.ops import run_in_background
from ui.plain import literal, message_box, plain_label
from ui.projects import ProjectsController
from ui.services import Services
from ui.settings_flow import edit_settings
from ui.sidebar import ConversationSidebar
from ui.tasks.bar import TaskBar, TaskProgressRow
from ui.tasks.launcher import TaskLauncher
from ui.tasks.modes import MODES, TaskRequest, answer_stats_text
from ui.tools.controller import ToolsController
from ui.traces.links import link_answer
from ui.traces.window import TraceWindow
from ui.transfer import TransferActions
from ui.welcome import open_welcome

log = logging.getLogger(__name__)


class MainWindow(QMainWindow):
    answerFinished = Signal(object)  # AnswerEnded, after the window has shown it
    settingsApplied = Signal()  # the settings dialog's changes are saved and in effect

    def __init__(self, services: Services, version: str = "", parent: QWidget | None = None):
        super().__init__(parent)
        self.services = services
        self.version = version
        self.setWindowTitle("Locus")
        self.setWindowIcon(QIcon(str(resource_path("icons", "locus.svg"))))
        self.resize(1100, 760)
        self.conversation_id: int | None = None
        self.live: LiveAnswer | None = None  # the answer being written (one at a time)
        # The widgets it paints into; None while another conversation is shown (it goes on being saved).
        self.answer_widget: MessageWidget | None = None
        self.question_widget: MessageWidget | None = None
        self.editing = False
        self.pending_collections: list[str] | None = None  # documents choice for a conversation not yet saved

        self.bridge = EngineBridge(self)

        self.sidebar = ConversationSidebar(self)
        self.sidebar.newRequested.connect(self.new_conversation)
        self.sidebar.conversationSelected.connect(self.open_conversation)
        self.sidebar.deleteRequested.connect(self.delete_conversation)
        self.conversations = ConversationList(self.sidebar, services.history, lambda: self.conversation_id, self)
        self.projects = ProjectsController(self)  # projects, pins, copies (the sidebar's menus and drops)

        self.chat = ChatView(self)
        self.branches = BranchController(self)  # versions of messages: switch, delete, edit any, regenerate any
        self.context_meter = ContextMeterController(self, services)  # under the composer; compaction
        self.documents_selector = DocumentsSelector(self)
        self.documents_selector.valueChanged.connect(self._documents_chosen)
        self.edit_banner = plain_label(
            "Editing a question: Enter asks it as a new version (the earlier one stays), Esc cancels.",
            self,
            name="editBanner",
        )
        self.edit_banner.hide()
        self.composer = Composer(self)
        self.composer.submitted.connect(self.send)
        self.composer.escaped.connect(self._escape)
        self.task_bar = TaskBar(
            self.documents_selector, services.settings.tasks.translate_to, lambda: self.documents.library, self
        )
        self.task_bar.bind_composer(self.composer)
        self.task_bar.modeChanged.connect(lambda _mode: self._set_editing(False))  # editing is for chat
        self.task_progress = TaskProgressRow(self)
        self.send_button = self._button("Send", "sendButton", self._send_or_stop)
        self.regenerate_button = self._button(
            "Regenerate", "regenerateButton", self.regenerate, "Answer the last question again"
        )
        self.edit_button = self._button("Edit last question", "editButton", self.edit_last_question)
        self.backend = BackendSelector(self, services, lambda: self.conversation_id)
        self.assistant_selector = AssistantSelector(self, services, lambda: self.conversation_id)
        self.assistant_selector.templatesShown.connect(self.task_bar.offer)  # the assistant's tasks only
        self.tool_picker = ToolPicker(self)
        self.tool_picker.valueChanged.connect(self._tools_chosen)

        right = QWidget(self)
        column = QVBoxLayout(right)
        column.setContentsMargins(0, 0, 8, 8)
        column.addWidget(self.chat, 1)
        actions = QHBoxLayout()
        actions.addWidget(self.task_bar.mode_row)
        actions.addWidget(self.assistant_selector.button)
        actions.addWidget(self.backend.button)
        actions.addWidget(self.tool_picker)
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
        column.addWidget(self.context_meter.bar)
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
        self.tools = ToolsController(self, services)
        self.tabifyDockWidget(self.documents.dock, self.tools.dock)  # opened, it is a tab beside Documents
        self.documents.dock.raise_()
        self.tools.watch.changed.connect(self.tool_picker.set_snapshot)
        self.tool_picker.startRequested.connect(self.tools.start_server)
        self.tool_picker.panelRequested.connect(self.tools.open)
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
        models = QAction(
            "&Models…", self, shortcut=QKeySequence("Ctrl+Shift+M"), triggered=lambda: self.model.open_manager()
        )
        quit_ = QAction("&Quit", self, shortcut=QKeySequence.StandardKey.Quit, triggered=self.close)
        for action in (new, models, settings):
            file_menu.addAction(action)
        file_menu.addSeparator()
        self.transfer = TransferActions(self, file_menu)  # export and import (ui/transfer.py)
        file_menu.addSeparator()
        file_menu.addAction(quit_)
        view_menu = self.menuBar().addMenu("&View")
        view_menu.addAction(self.documents.toggle_action)
        view_menu.addAction(self.tools.toggle_action)
        view_menu.addAction(
            QAction("&Trace log…", self, shortcut=QKeySequence("Ctrl+Shift+T"), triggered=lambda: self.open_traces())
        )
        tools_menu = self.menuBar().addMenu("&Tools")
        tools_menu.addAction(QAction("&Prompt templates…", self, triggered=self.tasks.open_template_editor))
        tools_menu.addSeparator()
        tools_menu.addAction(QAction("Tools and &MCP servers…", self, triggered=self.tools.open))
        tools_menu.addAction(QAction("&Edit mcp.json…", self, triggered=self.tools.edit_mcp))
        help_menu = self.menuBar().addMenu("&Help")
        help_menu.addAction(QAction("&Welcome…", self, triggered=lambda: open_welcome(self)))
        help_menu.addAction(QAction("&About Locus", self, triggered=self._about))

    # Start-up ----------------------------------------------------------------------

    def start(self) -> None:
        """Begin loading the model, fill the sidebar, and report settings problems."""
        self.load_model()
        self.refresh_conversations()
        self.documents.open()
        self.tools.watch.refresh()
        if self.services.problems:
            QTimer.singleShot(0, self._report_setting_problems)

    def _report_setting_problems(self) -> None:
        text = "\n\n".join(str(p) for p in self.services.problems)
        show_error(
            self,
            "Settings problems",
            "Some settings in config.toml were not valid; defaults are used for them:\n\n" + text,
        )

    def load_model(self) -> None:
        self.model.load()

    # Conversations -----------------------------------------------------------------

    def refresh_conversations(self) -> None:
        self.conversations.refresh()

    def _detach_live_answer(self) -> None:
        """The view is about to show something else: the streaming answer keeps going (and being
        saved) but no longer paints into widgets that are about to be deleted."""
        self.answer_widget = self.question_widget = None

    def new_conversation(self) -> None:
        self._set_editing(False)
        self.conversation_id = None
        self.pending_collections = None
        self.documents_selector.set_value(None)
        self.backend.show_for(None)
        self.assistant_selector.show_for(None)
        self.tool_picker.set_value(None)
        self._detach_live_answer()
        self.chat.clear()
        self.sidebar.select(None)
        self._update_buttons()
        self.composer.setFocus()

    def open_conversation(self, conversation_id: int) -> None:
        hit = self.conversations.hit_messages.get(conversation_id)  # a search found this message in it
        if conversation_id == self.conversation_id:
            if hit is None or any(w.message_id == hit for w in self.chat.messages()):
                if hit is not None:
                    self.chat.show_message(hit)
                return
            if self.refuse_if_busy():  # the hit is on another branch: not while an answer is written here
                return
        self._set_editing(False)
        self.conversation_id = conversation_id

        def show(loaded) -> None:
            conversation, (messages, versions) = loaded
            if self.conversation_id != conversation_id:
                return
            self.documents_selector.set_value(conversation.collections)
            self.backend.show_for(conversation)
            self.assistant_selector.show_for(conversation)
            self.tool_picker.set_value(conversation.tools)
            self._detach_live_answer()
            self.chat.show_messages(messages, versions)
            self._reattach_live_answer()
            self._update_buttons()
            if hit is not None:
                self.chat.show_message(hit)

        history = self.services.history

        def load():
            if hit is not None:
                show_hit_branch(history, conversation_id, hit)
            return history.conversation(conversation_id), self.branches.load(conversation_id)

        run_in_background(
            load,
            show,
            lambda exc: show_error(self, "Open conversation", exc),
            owner=self,
        )

    def _reattach_live_answer(self) -> None:
        """Back in the conversation whose answer is still streaming: follow it again."""
        live = self.live
        if live is None or live.started is None or live.conversation_id != self.conversation_id:
            return
        for widget in self.chat.messages():
            if widget.message_id == live.started.assistant_message_id:
                self.answer_widget = widget
                widget.set_text(live.text)
                widget.set_status("streaming")
                widget.tool_calls.show_calls(live.calls)
                widget.tool_calls.approvalGiven.connect(live.approve)
                self._show_live_status(live.status)

    def _documents_chosen(self, value: list[str] | None) -> None:
        """The documents selector changed: save it on the conversation (or keep it for the first question)."""
        if self.conversation_id is None:
            self.pending_collections = value
            return
        conversation = self.conversation_id
        run_in_background(
            lambda: self.services.history.set_options(conversation, collections=value),
            None,
            lambda exc: show_error(self, "Documents", exc),
            owner=self,
        )

    def _tools_chosen(self, value: list[str]) -> None:
        """The tool picker changed: save it on the conversation (a new one gets it with its first question)."""
        if self.conversation_id is None:
            return
        conversation = self.conversation_id
        run_in_background(
            lambda: self.services.history.set_options(conversation, tools=value),
            None,
            lambda exc: show_error(self, "Tools", exc),
            owner=self,
        )

    def delete_conversation(self, conversation_id: int) -> None:
        answer = QMessageBox.question(
            self, "Delete conversation", "Delete this conversation, its messages and its traces? This cannot be undone."
        )
        if answer != QMessageBox.StandardButton.Yes:
            return
        if self.live is not None and self.live.conversation_id == conversation_id:
            self.stop()
        if conversation_id == self.conversation_id:
            self.new_conversation()

        def deleted(result) -> None:
            self.refresh_conversations()
            self.statusBar().showMessage(result.describe(), 8000)

        run_in_background(
            lambda: self.services.assistant.delete_conversation(conversation_id),
            deleted,
            lambda exc: show_error(self, "Delete", exc),
            owner=self,
        )

    # Asking ------------------------------------------------------------------------

    def _send_or_stop(self) -> None:
        if self.live is not None:
            self.stop()
        else:
            self.send(self.composer.toPlainText())

    def send(self, text: str) -> None:
        """Show the question and stream its answer (the Assistant saves it, off the GUI thread)."""
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
        editing, conversation, assistant = self.editing, self.conversation_id, self.services.assistant
        edited = self.branches.edit_target() if editing else None  # the question whose Edit was clicked, or the last
        self._set_editing(False)
        self.composer.clear()
        if editing and conversation is not None:
            if edited is not None:  # a new version beside it: the view shows the new branch
                self.chat.remove_from(edited)
            start = partial(assistant.resend_edited, conversation, text, message_id=edited and edited.message_id)
            self.branches.reload_after_answer = True
        elif conversation is None:
            chosen = self.pending_collections
            options = self.backend.ask_options() | self.tool_picker.ask_options(new=True)
            options |= self.assistant_selector.ask_options()
            start = partial(assistant.ask, text, None, collections=chosen, **options)
        else:
            options = self.backend.ask_options() | self.tool_picker.ask_options(new=False)
            start = partial(assistant.ask, text, conversation, **options)
        user_widget = self.chat.add_message("user", text)
        self._begin_answer(user_widget, start, waiting_words(self.services.backends.resolve(None)[1].model_info))

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
        conversation, assistant = self.conversation_id, self.services.assistant
        user_widget = self.chat.add_message("user", request.request_text)
        self.task_progress.start(request.working)
        self._begin_answer(
            user_widget,
            lambda sink: assistant.run_task(request.run, request.request_text, conversation, sink, name=request.name),
            request.working,
        )
        return True

    def regenerate(self, answer: MessageWidget | None = None) -> None:
        """Answer a question again (``answer``'s, else the last): a new version beside the earlier answer."""
        if self.live is not None or self.conversation_id is None:
            return
        conversation, assistant = self.conversation_id, self.services.assistant
        shown = self.chat.messages()
        target = answer if isinstance(answer, MessageWidget) else (shown[-1] if shown else None)
        message_id = target.message_id if target is not None else None
        if target is not None and target.role == "assistant":
            self.chat.remove_from(target)
        self.branches.reload_after_answer = True
        self._begin_answer(
            self._last_widget("user"),
            lambda sink: assistant.regenerate(conversation, sink, message_id=message_id),
            waiting_words(self.services.backends.resolve(None)[1].model_info),
        )

    def edit_last_question(self) -> None:
        last_user = self._last_widget("user")
        if self.live is not None or last_user is None:
            return
        self.composer.setPlainText(last_user.text)
        self._set_editing(True)
        self.composer.setFocus()

    def stop(self) -> None:
        if self.live is not None:
            self.live.cancel()

    def _escape(self) -> None:
        if self.live is not None:
            self.stop()
        elif self.editing:
            self._set_editing(False)
            self.composer.clear()

    def _begin_answer(self, user_widget: MessageWidget | None, start, status: str) -> None:
        """Start an answer (the Assistant returns at once) and paint it as it comes."""
        widget = self.chat.add_message("assistant", "", "streaming")
        live = LiveAnswer(self.bridge, status, self)
        try:
            live.start(start)
        except EngineError as exc:  # refused at once (an empty question)
            live.deleteLater()
            self.task_progress.hide()
            widget.set_status("failed", describe(exc))
            return
        self.live, self.answer_widget, self.question_widget = live, widget, user_widget
        live.answerStarted.connect(self._on_answer_started)
        live.textChanged.connect(lambda text: self.answer_widget is not None and self.answer_widget.set_text(text))
        live.statusChanged.connect(self._show_live_status)
        live.progressed.connect(self.task_progress.show_progress)
        live.toolCallStarted.connect(
            lambda e: self.answer_widget is not None and self.answer_widget.tool_calls.call_started(e.call, e.step)
        )
        live.approvalNeeded.connect(self._approval_needed)
        live.toolCallEnded.connect(
            lambda e: self.answer_widget is not None and self.answer_widget.tool_calls.call_ended(e.result)
        )
        widget.tool_calls.approvalGiven.connect(live.approve)
        live.answerEnded.connect(self._finish_answer)
        self._show_live_status(status)
        self.chat.scroll_to_bottom()
        self._update_buttons()

    def _show_live_status(self, text: str) -> None:
        widget = self.answer_widget
        if widget is not None:
            widget.status_label.setText(text)
            widget.status_label.setVisible(bool(text))

    def _approval_needed(self, event: ApprovalNeeded) -> None:
        """A tool call waits for the user: the prompt goes inline in the answer (or the status bar says where)."""
        if self.answer_widget is not None:
            self.answer_widget.tool_calls.approval_needed(event.call)
            self.chat.scroll_to_bottom()
        else:
            self.statusBar().showMessage(
                "An answer in another conversation waits for you to allow a tool call: open it to answer.", 15000
            )

    def _on_answer_started(self, started: AnswerStarted) -> None:
        """The answer's question and placeholder are saved (or, when it could not start, nothing was)."""
        if self.answer_widget is not None:
            self.answer_widget.message_id = started.assistant_message_id
            if self.question_widget is not None:
                self.question_widget.message_id = started.user_message_id
            if self.conversation_id is None:
                self.conversation_id = started.conversation_id
        self.refresh_conversations()

    def _finish_answer(self, ended: AnswerEnded) -> None:
        live, widget = self.live, self.answer_widget
        self.live = self.answer_widget = self.question_widget = None
        self.task_progress.hide()
        if widget is not None:
            if not answer_is_kept(ended.outcome, ended.text):
                self.chat.remove_from(widget)  # stopped before it said anything: nothing was kept
            else:
                widget.set_text(ended.text)
                widget.set_status(ended.outcome, describe(ended.error) if ended.failed else None)
                if live.citations:
                    sources = [saved_source(c) for c in live.citations]
                    widget.set_sources(sources, self.chat.question_before(widget))
                link_answer(widget, ended.trace_id)
                widget.details.set_stats(ended.stats.to_dict())
        if ended.failed:
            self.statusBar().showMessage(describe(ended.error), 10000)
        else:
            self.stats_label.setText(answer_stats_text(ended.stats))
        live.deleteLater()
        self._update_buttons()
        self.refresh_conversations()
        self.answerFinished.emit(ended)

    # Helpers -----------------------------------------------------------------------

    def _last_widget(self, role: str) -> MessageWidget | None:
        for widget in reversed(self.chat.messages()):
            if widget.role == role:
                return widget
        return None

    def _set_editing(self, editing: bool) -> None:
        self.editing = editing
        if not editing:
            self.branches.editing_widget = None
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
        message_box(
            self,
            "About Locus",
            f"Locus {self.version}".strip(),
            informative="A private AI assistant that runs entirely on this computer.",
            name="aboutBox",
        ).open()

    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        """Files or folders dropped anywhere on the window are indexed."""
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            self.documents.handle_drop(paths)
            event.acceptProposedAction()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.stop()  # the runtime saves the partial answer while shutting down
        super().closeEvent(event)
