"""One message in the chat view: Markdown prose and code blocks with copy buttons."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QSize, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QFontDatabase, QGuiApplication, QPalette, QTextOption
from PySide6.QtWidgets import (
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QMenu,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from ui.chat.markdown import (
    Code,
    Prose,
    bare_json,
    code_html,
    file_extension,
    language_label,
    link_citations,
    split_segments,
)
from ui.chat.message_details import MessageDetails
from ui.chat.tool_calls import ToolCallList, saved_calls
from ui.chat.top_passage import TopPassage
from ui.errors import show_error
from ui.ops import run_in_background
from ui.plain import literal, mnemonic_safe, plain_label
from ui.safe_text import SafeTextBrowser
from ui.tasks.selection import add_selection_actions, selected_text


def _is_dark(widget: QWidget) -> bool:
    return widget.palette().color(QPalette.ColorRole.Window).lightness() < 128


class _AutoHeightBrowser(SafeTextBrowser):
    """A read-only text view as tall as its content (the chat view scrolls, not it); it loads nothing the
    text names and asks before opening a web link (ui/safe_text.py)."""

    selectionTask = Signal(str, str)  # (task mode, selected text): run a task on the selection

    def __init__(self, parent: QWidget | None = None, *, wrap: bool = True, internal_schemes: tuple[str, ...] = ()):
        super().__init__(parent, internal_schemes)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(
            Qt.ScrollBarPolicy.ScrollBarAlwaysOff if wrap else Qt.ScrollBarPolicy.ScrollBarAsNeeded
        )
        if not wrap:
            self.setLineWrapMode(SafeTextBrowser.LineWrapMode.NoWrap)
            self.setWordWrapMode(QTextOption.WrapMode.NoWrap)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.viewport().setAutoFillBackground(False)
        self.document().documentLayout().documentSizeChanged.connect(self._fit)

    def _fit(self, *_args) -> None:
        height = int(self.document().size().height()) + 2 * self.frameWidth() + 4
        bar = self.horizontalScrollBar()
        if bar.isVisible() or bar.maximum() > 0:
            height += bar.sizeHint().height()
        if self.height() != height:
            self.setFixedHeight(height)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fit()

    def context_menu(self, pos) -> QMenu:
        """The right-click menu: Qt's own entries, then tasks on the selected text if any."""
        menu = self.createStandardContextMenu(pos)
        add_selection_actions(menu, selected_text(self), self.selectionTask.emit)
        return menu

    def contextMenuEvent(self, event) -> None:
        menu = self.context_menu(event.pos())
        menu.exec(event.globalPos())
        menu.deleteLater()

    def sizeHint(self) -> QSize:
        return QSize(super().sizeHint().width(), self.height())


class ProseView(_AutoHeightBrowser):
    """Markdown prose, rendered by Qt's own CommonMark support (raw HTML shows as text, images as their
    description); [n] citations become ``source:n`` links that open the source."""

    sourceClicked = Signal(int)

    def __init__(self, text: str, parent: QWidget | None = None, citations: frozenset[int] = frozenset()):
        super().__init__(parent, internal_schemes=("source",))
        self.setObjectName("prose")
        self.internalLink.connect(self._open_source)
        self.text = ""
        self.citations: frozenset[int] = frozenset()
        self.set_text(text, citations)

    def set_text(self, text: str, citations: frozenset[int] = frozenset()) -> None:
        if text != self.text or citations != self.citations:
            self.text, self.citations = text, citations
            self.set_markdown(link_citations(text, set(citations)) if citations else text)

    def _open_source(self, url: QUrl) -> None:
        if url.path().isdigit():
            self.sourceClicked.emit(int(url.path()))


class CodeBlock(QFrame):
    """A highlighted code block with its language, a copy button and a save button."""

    copied = Signal(str)
    saved = Signal(str)  # the path written

    def __init__(self, segment: Code, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("codeBlock")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.code = ""
        self.language = ""
        self.closed = False
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        header = QWidget(self)
        header.setObjectName("codeHeader")
        row = QHBoxLayout(header)
        row.setContentsMargins(8, 2, 4, 2)
        self.language_label = plain_label("", header, name="codeLanguage")
        self.copy_button = QPushButton("Copy", header)
        self.copy_button.setObjectName("copyButton")
        self.copy_button.setToolTip("Copy this code to the clipboard")
        self.copy_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.copy_button.clicked.connect(self.copy)
        self.save_button = QPushButton("Save…", header)
        self.save_button.setObjectName("saveCodeButton")
        self.save_button.setToolTip("Save this code to a file")
        self.save_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.save_button.clicked.connect(self.save)
        row.addWidget(self.language_label)
        row.addStretch(1)
        row.addWidget(self.copy_button)
        row.addWidget(self.save_button)
        self.view = _AutoHeightBrowser(self, wrap=False)
        self.view.setObjectName("codeView")
        self.view.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.view.document().setDocumentMargin(8)
        layout.addWidget(header)
        layout.addWidget(self.view)
        self.set_segment(segment)

    def set_segment(self, segment: Code) -> None:
        if (segment.code, segment.language, segment.closed) == (self.code, self.language, self.closed):
            return
        self.code, self.language, self.closed = segment.code, segment.language, segment.closed
        self.language_label.setText(language_label(segment.language))
        if segment.closed:
            self.view.set_html(code_html(segment.code, segment.language, _is_dark(self)))
        else:
            # Still streaming: re-highlighting a growing block on every repaint costs more and
            # more; plain text is cheap, and colour arrives when the fence closes.
            self.view.setPlainText(segment.code)

    def copy(self) -> None:
        QGuiApplication.clipboard().setText(self.code)
        self.copy_button.setText("Copied")
        QTimer.singleShot(1500, self.copy_button, lambda: self.copy_button.setText("Copy"))
        self.copied.emit(self.code)

    def default_file_name(self) -> str:
        return "snippet" + file_extension(self.language)

    def save(self) -> None:
        """Ask where, then write the code off the GUI thread (the disk may be slow or remote)."""
        path, _filter = QFileDialog.getSaveFileName(self, "Save code", str(Path.home() / self.default_file_name()))
        if not path:
            return
        code = self.code if self.code.endswith("\n") else self.code + "\n"

        def written(_result) -> None:
            self.save_button.setText("Saved")
            QTimer.singleShot(1500, self.save_button, lambda: self.save_button.setText("Save…"))
            self.saved.emit(path)

        run_in_background(
            lambda: Path(path).write_text(code, encoding="utf-8"),
            written,
            lambda exc: show_error(self.window(), "Code not saved", exc),
            owner=self,
        )


_STATUS_TEXT = {
    "cancelled": "Stopped — partial answer",
    "interrupted": "Interrupted — partial answer",
    "failed": "Failed",
    "streaming": "",
    "complete": "",
}


class SourceList(QFrame):
    """The numbered sources under an answer from documents; each opens its document at the place cited."""

    sourceClicked = Signal(dict)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("sourceList")
        self.sources: list[dict] = []
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 4, 0, 0)
        self._layout.setSpacing(2)

    def set_sources(self, sources: list[dict]) -> None:
        while self._layout.count():
            widget = self._layout.takeAt(0).widget()
            if widget is not None:
                widget.deleteLater()
        self.sources = list(sources)
        if not sources:
            self.hide()
            return
        # Every passage the answer was given, those it rests on first (older answers saved only those).
        rests_on_none = not any(s.get("supported", True) for s in sources)
        title = plain_label("Sources · the passages the answer was given", self, name="sourcesTitle")
        self._layout.addWidget(title)
        if rests_on_none:
            self._layout.addWidget(
                plain_label(
                    "The answer may not rest on these passages: none of its sentences matched one of them.",
                    self,
                    name="sourcesUnsupported",
                    wrap=True,
                )
            )
        for source in sources:
            supported = source.get("supported", True)
            file_name = source["path"].rsplit("/", 1)[-1]
            title = source.get("title") or file_name
            name = title if title == file_name else f"{title} ({file_name})"
            where = source.get("location") or ""
            mark = "" if supported or rests_on_none else " · not cited"
            button = QPushButton(
                mnemonic_safe(f"[{source['number']}]  {name}" + (f" · {where}" if where else "") + mark), self
            )
            button.setObjectName("sourceButton")
            button.setFlat(True)
            button.setCursor(Qt.CursorShape.PointingHandCursor)
            button.setToolTip(
                literal(
                    f"{source['path']}\nClick to open it at {where or 'the start'}."
                    + (
                        "\n(given to the model; the answer does not rest on it)"
                        if not supported
                        else ""
                        if source.get("explicit", True)
                        else "\n(matched by similarity: the answer did not cite it by number)"
                    )
                )
            )
            button.clicked.connect(lambda _=False, s=source: self.sourceClicked.emit(s))
            quote = plain_label(f"\u201c{source.get('quote', '')}\u201d", self, name="sourceQuote", wrap=True)
            self._layout.addWidget(button, 0, Qt.AlignmentFlag.AlignLeft)
            self._layout.addWidget(quote)
        self.show()

    def buttons(self) -> list[QPushButton]:
        return self.findChildren(QPushButton, "sourceButton")


class MessageWidget(QFrame):
    """A user question or an assistant answer."""

    selectionTask = Signal(str, str)  # (task mode, selected text)
    sourceClicked = Signal(dict)
    traceRequested = Signal(str)  # the trace id of this answer: open the trace log at it

    def __init__(
        self,
        role: str,
        text: str = "",
        status: str = "complete",
        message_id: int | None = None,
        parent: QWidget | None = None,
    ):
        super().__init__(parent)
        self.role = role
        self.message_id = message_id
        self.text = ""
        self.status = status
        self.trace_id: str | None = None
        self.citations: frozenset[int] = frozenset()
        self.setObjectName("userMessage" if role == "user" else "assistantMessage")
        self.setProperty("role", role)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(14, 10, 14, 10)
        layout.setSpacing(6)
        header = QHBoxLayout()
        self.author = plain_label("You" if role == "user" else "Locus", self, name="author")
        self.status_label = plain_label("", self, name="messageStatus")
        header.addWidget(self.author)
        header.addStretch(1)
        header.addWidget(self.status_label)
        self.trace_button = QPushButton("Show trace", self)
        self.trace_button.setObjectName("showTraceButton")
        self.trace_button.setFlat(True)
        self.trace_button.setStyleSheet("QPushButton { color: palette(link); border: none; padding: 0 4px; }")
        self.trace_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.trace_button.setToolTip("Open this answer's trace: what was retrieved, the exact prompt, timings")
        self.trace_button.clicked.connect(lambda: self.trace_id and self.traceRequested.emit(self.trace_id))
        self.trace_button.hide()
        header.addWidget(self.trace_button)
        layout.addLayout(header)
        self.header = header  # where ui/chat/branches.py puts Edit/Regenerate and the version switcher
        self.tool_calls = ToolCallList(self)  # an answer's tool calls, above its text (hidden when none)
        layout.addWidget(self.tool_calls)
        self.body = QVBoxLayout()
        self.body.setSpacing(8)
        layout.addLayout(self.body)
        self.error_label = plain_label("", self, name="messageError", wrap=True, selectable=True)
        self.error_label.hide()
        layout.addWidget(self.error_label)
        self.top_passage = TopPassage(self)  # the passage itself, when it is the best answer (hidden if not)
        self.top_passage.sourceClicked.connect(self.sourceClicked)
        layout.addWidget(self.top_passage)
        self.sources = SourceList(self)
        self.sources.sourceClicked.connect(self.sourceClicked)
        self.sources.hide()
        layout.addWidget(self.sources)
        self.details = MessageDetails(self, header, layout)  # copy as Markdown, tokens and time on hover
        self.set_text(text)
        self.set_status(status)

    def set_trace_id(self, trace_id: str | None) -> None:
        """Offer 'Show trace' for this answer (None: no trace is known)."""
        self.trace_id = trace_id or None
        self.trace_button.setVisible(self.trace_id is not None and self.status != "streaming")

    def show_saved_tool_calls(self, stats: dict | None) -> None:
        """Show the tool calls a saved answer made (kept in its stats), as they ended."""
        self.tool_calls.show_calls(saved_calls(stats))

    def segment_widgets(self) -> list[QWidget]:
        return [self.body.itemAt(i).widget() for i in range(self.body.count())]

    def code_blocks(self) -> list[CodeBlock]:
        return [w for w in self.segment_widgets() if isinstance(w, CodeBlock)]

    def set_sources(self, sources: list[dict], question: str = "") -> None:
        """Show the answer's sources and make its [n] markers open them; and the top passage, when the
        question asks for a passage or the answer rests on none."""
        self.sources.set_sources(sources)
        self.top_passage.show_for(question, sources)
        self.citations = frozenset(int(s["number"]) for s in sources)
        self._render(self.text, force=True)

    def open_source(self, number: int) -> None:
        for source in self.sources.sources:
            if int(source["number"]) == number:
                self.sourceClicked.emit(source)

    def set_text(self, text: str) -> None:
        """Show this text, reusing the existing segment widgets where the kinds still match."""
        self._render(text)

    def _render(self, text: str, force: bool = False) -> None:
        if text == self.text and self.body.count() and not force:
            return
        self.text = text
        if self.role != "assistant":
            segments = [Prose(text)]
        else:
            whole = bare_json(text, self.status != "streaming")
            segments = [whole] if whole is not None else split_segments(text)
        widgets = self.segment_widgets()
        for index, segment in enumerate(segments):
            existing = widgets[index] if index < len(widgets) else None
            if isinstance(segment, Code) and self.status != "streaming" and not segment.closed:
                segment = replace(segment, closed=True)  # a finished answer: highlight even a cut-off block
            if isinstance(segment, Code) and isinstance(existing, CodeBlock):
                existing.set_segment(segment)
            elif isinstance(segment, Prose) and isinstance(existing, ProseView):
                existing.set_text(segment.text, self.citations)
            else:
                for stale in widgets[index:]:
                    self.body.removeWidget(stale)
                    stale.deleteLater()
                widgets = widgets[:index]
                if isinstance(segment, Code):
                    widget = CodeBlock(segment, self)
                    widget.view.selectionTask.connect(self.selectionTask)
                else:
                    widget = ProseView(segment.text, self, self.citations)
                    widget.sourceClicked.connect(self.open_source)
                    widget.selectionTask.connect(self.selectionTask)
                self.body.addWidget(widget)
                widgets.append(widget)
        for stale in widgets[len(segments) :]:
            self.body.removeWidget(stale)
            stale.deleteLater()

    def set_status(self, status: str, error: str | None = None) -> None:
        was_streaming, self.status = self.status == "streaming", status
        if was_streaming and status != "streaming" and self.text:
            self._render(self.text, force=True)
        text = _STATUS_TEXT.get(status, "")
        self.status_label.setText(text)
        self.status_label.setVisible(bool(text))
        self.error_label.setText(error or "")
        self.error_label.setVisible(status == "failed" and bool(error))
        self.trace_button.setVisible(self.trace_id is not None and status != "streaming")
        self.setProperty("status", status)
        self.style().unpolish(self)
        self.style().polish(self)
