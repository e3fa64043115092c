"""An answer's tool calls, inline above its text: one collapsible row per call, and the approval prompt.

Everything a call shows is data Locus did not write (the model chose the arguments, the tool wrote the
result, an MCP server named itself), so all of it is plain text: labels made by ``plain_label`` and
read-only ``QPlainTextEdit`` boxes, never rendered, so an `<img>`, a Markdown image or a link in a result
stays the characters it is and nothing is loaded or opened. Only the prompt's buttons answer an approval;
no text anywhere can press them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFontDatabase, QTextOption
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from engine.tools.base import ToolCall, ToolResult
from ui.plain import literal, plain_label

MAX_BOX_LINES = 14  # a longer argument list or result scrolls inside its box
MAX_NAME = 80  # characters of a tool's name shown in a row's header (the box shows it whole)

STATUS_WORDS = {
    "running": "running…",
    "waiting": "waiting for your approval",
    "ok": "done",
    "error": "failed",
    "denied": "denied",
    "timeout": "timed out",
    "cancelled": "stopped",
}
APPROVAL_WORDS = {
    "trusted": "Ran without asking: a trusted tool.",
    "read_only": "Ran without asking: a read-only tool, and read-only tools are trusted.",
    "conversation": "Allowed for this conversation.",
    "once": "Allowed once.",
    "deny": "Denied: the model was told it may not run.",
}


@dataclass(frozen=True)
class CallState:
    """One call as a row shows it: what the model asked for, and how it went so far."""

    id: str
    name: str
    arguments: object  # a dict as the model wrote it (anything, for a call that did not parse)
    step: int = 1
    status: str = "running"  # running, waiting, then ok / error / denied / timeout / cancelled
    approval: str | None = None
    result: str = ""
    truncated: bool = False
    duration_s: float | None = None
    problem: str | None = None  # why the call could not be run as written (ToolCall.error)

    @property
    def finished(self) -> bool:
        return self.status not in ("running", "waiting")

    @classmethod
    def started(cls, call: ToolCall, step: int) -> CallState:
        return cls(call.id, call.name, call.arguments, step, problem=call.error)

    @classmethod
    def saved(cls, data: dict) -> CallState:
        """A call as the answer's stats keep it (``details.tool_calls``); anything odd in it is shown as is."""
        duration = data.get("duration_s")
        return cls(
            str(data.get("id") or ""),
            str(data.get("name") or ""),
            data.get("arguments"),
            _step(data.get("step")),
            str(data.get("status") or "error"),
            str(data["approval"]) if data.get("approval") else None,
            str(data.get("result") or ""),
            bool(data.get("truncated")),
            float(duration) if isinstance(duration, (int, float)) else None,
        )

    def ended(self, result: ToolResult) -> CallState:
        return replace(
            self,
            status=result.status,
            result=result.text,
            truncated=result.truncated,
            duration_s=result.duration_s,
            approval="deny" if result.status == "denied" else self.approval,
        )


def saved_calls(stats: dict | None) -> list[CallState]:
    """The calls an answer saved with its stats (none for an answer without tools)."""
    details = (stats or {}).get("details") if isinstance(stats, dict) else None
    calls = details.get("tool_calls") if isinstance(details, dict) else None
    return [CallState.saved(c) for c in calls if isinstance(c, dict)] if isinstance(calls, list) else []


def pretty_arguments(arguments: object) -> str:
    """The arguments as indented JSON (as text: never evaluated, never rendered)."""
    if arguments in (None, {}):
        return "(no arguments)"
    try:
        return json.dumps(arguments, indent=2, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(arguments)


def duration_words(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


def short_name(name: str) -> str:
    name = " ".join(name.split()) or "(no name)"
    return name if len(name) <= MAX_NAME else name[:MAX_NAME] + "…"


class PlainBox(QPlainTextEdit):
    """Read-only plain text (arguments, a result, a server's stderr) as tall as its lines, up to
    MAX_BOX_LINES; never rendered, nothing in it opens or loads."""

    def __init__(
        self, text: str = "", parent: QWidget | None = None, *, name: str = "", max_lines: int = MAX_BOX_LINES
    ):
        super().__init__(parent)
        if name:
            self.setObjectName(name)
        self.max_lines = max_lines
        self.setReadOnly(True)
        self.setUndoRedoEnabled(False)
        self.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse | Qt.TextInteractionFlag.TextSelectableByKeyboard
        )
        self.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.setWordWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # lines wrap, anywhere
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setTabChangesFocus(True)  # Tab moves on to the next control: keyboard users are not trapped here
        self.document().documentLayout().documentSizeChanged.connect(self._fit)
        self.set_text(text)

    def set_text(self, text: str) -> None:
        if text != self.toPlainText():
            self.setPlainText(text)
        self._fit()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fit()  # narrower or wider, its lines wrap again

    def _fit(self, *_args) -> None:
        """As tall as its lines as laid out at this width (a plain-text layout counts its size in lines), up to
        max_lines; more scroll."""
        lines = int(self.document().documentLayout().documentSize().height()) or 1
        shown = max(1, min(self.max_lines, lines))
        margins = 2 * self.frameWidth() + 2 * int(self.document().documentMargin()) + 2
        height = self.fontMetrics().lineSpacing() * shown + margins
        if self.height() != height:
            self.setFixedHeight(height)


class ApprovalPrompt(QFrame):
    """Asks the user about one call: its tool and arguments, and Allow once / Allow for this conversation /
    Deny. Reachable with Tab and by Alt+O, Alt+C, Alt+D; answers once, then its buttons go."""

    answered = Signal(str, str)  # (call id, "once" | "conversation" | "deny")

    def __init__(self, call: CallState, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("approvalPrompt")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.call_id = call.id
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 8)
        layout.setSpacing(6)
        self.title = plain_label(
            f"Allow the tool “{short_name(call.name)}” to run?", self, name="approvalTitle", wrap=True, bold=True
        )
        self.explanation = plain_label(
            "The model asked to call it with these arguments. Nothing runs until you choose.",
            self,
            name="approvalHint",
            wrap=True,
        )
        self.arguments = PlainBox(pretty_arguments(call.arguments), self, name="approvalArguments")
        layout.addWidget(self.title)
        layout.addWidget(self.explanation)
        layout.addWidget(self.arguments)
        row = QHBoxLayout()
        self.allow_once = self._button("Allow &once", "allowOnce", "once", "Run this call; ask again next time")
        self.allow_conversation = self._button(
            "Allow for this &conversation",
            "allowConversation",
            "conversation",
            "Run this call, and this tool's later calls in this conversation without asking",
        )
        self.deny = self._button("&Deny", "denyCall", "deny", "Do not run it; the model is told it was refused")
        for button in (self.allow_once, self.allow_conversation, self.deny):
            row.addWidget(button)
        row.addStretch(1)
        layout.addLayout(row)
        self.choice: str | None = None

    def _button(self, text: str, name: str, approval: str, tip: str) -> QPushButton:
        button = QPushButton(text, self)
        button.setObjectName(name)
        button.setToolTip(literal(tip))
        button.setAutoDefault(False)
        button.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        button.clicked.connect(lambda _checked=False: self.answer(approval))
        return button

    def buttons(self) -> list[QPushButton]:
        return [self.allow_once, self.allow_conversation, self.deny]

    def answer(self, approval: str) -> None:
        """What the buttons do (once): announce the choice."""
        if self.choice is not None:
            return
        self.choice = approval
        for button in self.buttons():
            button.setEnabled(False)
        self.answered.emit(self.call_id, approval)


class ToolCallRow(QFrame):
    """One call: a header (arrow, tool, status, duration) that opens its arguments and result below it."""

    approvalGiven = Signal(str, str)  # (call id, approval) from this row's prompt

    def __init__(self, state: CallState, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("toolCall")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.state = state
        self.prompt: ApprovalPrompt | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 6)
        layout.setSpacing(4)
        header = QHBoxLayout()
        header.setSpacing(8)
        self.toggle = QToolButton(self)
        self.toggle.setObjectName("toolCallToggle")
        self.toggle.setCheckable(True)
        self.toggle.setAutoRaise(True)
        self.toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.toggle.setToolTip("Show or hide the arguments and the result")
        self.toggle.toggled.connect(self.set_expanded)
        self.name_label = plain_label("", self, name="toolCallName", bold=True)
        self.status_label = plain_label("", self, name="toolCallStatus")
        self.duration_label = plain_label("", self, name="toolCallDuration")
        header.addWidget(self.toggle)
        header.addWidget(self.name_label)
        header.addWidget(self.status_label)
        header.addStretch(1)
        header.addWidget(self.duration_label)
        layout.addLayout(header)
        self.details = QWidget(self)
        self.details.setObjectName("toolCallDetails")
        column = QVBoxLayout(self.details)
        column.setContentsMargins(26, 0, 0, 0)
        column.setSpacing(3)
        self.problem_label = plain_label("", self.details, name="toolCallProblem", wrap=True, selectable=True)
        self.approval_label = plain_label("", self.details, name="toolCallApproval", wrap=True)
        self.arguments = PlainBox("", self.details, name="toolCallArguments")
        self.result_title = plain_label("Result", self.details, name="toolCallResultTitle")
        self.result = PlainBox("", self.details, name="toolCallResult")
        column.addWidget(self.problem_label)
        column.addWidget(plain_label("Arguments", self.details, name="toolCallArgumentsTitle"))
        column.addWidget(self.arguments)
        column.addWidget(self.result_title)
        column.addWidget(self.result)
        column.addWidget(self.approval_label)
        layout.addWidget(self.details)
        self.details.hide()
        self.update_state(state)

    @property
    def expanded(self) -> bool:
        return self.toggle.isChecked()

    def set_expanded(self, expanded: bool) -> None:
        if self.toggle.isChecked() != expanded:
            self.toggle.setChecked(expanded)  # comes back here through toggled
            return
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if expanded else Qt.ArrowType.RightArrow)
        self.details.setVisible(expanded)

    def update_state(self, state: CallState) -> None:
        self.state = state
        self.name_label.setText(short_name(state.name))
        self.name_label.setToolTip(literal(state.name))
        status = STATUS_WORDS.get(state.status, state.status)
        if state.truncated:
            status += " (result cut to size)"
        self.status_label.setText(status)
        self.duration_label.setText(duration_words(state.duration_s) if state.finished else "")
        self.setProperty("status", state.status)
        self.style().unpolish(self)
        self.style().polish(self)
        self.problem_label.setText(f"The call as written could not be run: {state.problem}" if state.problem else "")
        self.problem_label.setVisible(bool(state.problem))
        self.approval_label.setText(APPROVAL_WORDS.get(state.approval or "", ""))
        self.approval_label.setVisible(bool(state.approval) and state.finished)
        self.arguments.set_text(pretty_arguments(state.arguments))
        self.result.set_text(state.result)
        self.result_title.setVisible(state.finished)
        self.result.setVisible(state.finished)
        if state.status != "waiting" and self.prompt is not None:
            self.prompt.hide()
            self.prompt.deleteLater()
            self.prompt = None

    def ask(self) -> ApprovalPrompt:
        """Show the approval prompt under the header (the call waits for it)."""
        self.update_state(replace(self.state, status="waiting"))
        if self.prompt is None:
            self.prompt = ApprovalPrompt(self.state, self)
            self.prompt.answered.connect(self._answered)
            self.layout().insertWidget(1, self.prompt)
            self.prompt.show()  # now, not on the next turn of the event loop: a window fitting it sees it
        return self.prompt

    def _answered(self, call_id: str, approval: str) -> None:
        self.update_state(replace(self.state, status="running", approval=approval))
        self.approvalGiven.emit(call_id, approval)


class ToolCallList(QWidget):
    """An answer's calls in the order the model asked for them: live (started / waiting / ended) or saved."""

    approvalGiven = Signal(str, str)  # (call id, approval): the user answered a prompt
    changed = Signal()  # a row came, changed, opened or closed: a window that fits its content may resize

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("toolCalls")
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(4)
        self.hide()

    def rows(self) -> list[ToolCallRow]:
        items = (self._layout.itemAt(i).widget() for i in range(self._layout.count()))
        return [w for w in items if isinstance(w, ToolCallRow)]

    def prompts(self) -> list[ApprovalPrompt]:
        return [row.prompt for row in self.rows() if row.prompt is not None]

    def clear(self) -> None:
        for row in self.rows():
            self._layout.removeWidget(row)
            row.deleteLater()
        self.hide()

    def show_calls(self, calls: list[CallState]) -> None:
        """Show these calls (a saved answer's, or a live one's so far), replacing what was shown."""
        self.clear()
        for state in calls:
            row = self.add(state)
            if state.status == "waiting":
                row.ask()

    def add(self, state: CallState) -> ToolCallRow:
        row = ToolCallRow(state, self)
        row.approvalGiven.connect(self.approvalGiven)
        row.toggle.toggled.connect(self.changed)
        self._layout.addWidget(row)
        self.show()
        self.changed.emit()
        return row

    def row_for(self, call_id: str) -> ToolCallRow | None:
        """The newest unfinished row of that id (a badly written call may have an empty one)."""
        for row in reversed(self.rows()):
            if row.state.id == call_id and not row.state.finished:
                return row
        return None

    def call_started(self, call: ToolCall, step: int) -> ToolCallRow:
        return self.add(CallState.started(call, step))

    def approval_needed(self, call: ToolCall) -> ApprovalPrompt:
        row = self.row_for(call.id) or self.call_started(call, 1)
        prompt = row.ask()
        prompt.answered.connect(self.changed)  # the prompt goes
        self.changed.emit()
        return prompt

    def call_ended(self, result: ToolResult) -> None:
        row = self.row_for(result.call_id)
        if row is not None:
            row.update_state(row.state.ended(result))
            self.changed.emit()


def _step(value) -> int:
    """A saved call's step (1 when it is not a small whole number: saved data may come from an import)."""
    text = str(value or "1")
    return int(text) if text.isascii() and text.isdecimal() and len(text) <= 6 else 1
