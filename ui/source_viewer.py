"""Open a cited source at its place: PDFs at the page (QtPdf), text and code at the line, and every other
format (Word, HTML, OpenDocument, EPUB, PowerPoint, Excel, CSV, e-mail, images) as the text the index holds
for it, at the cited slide, rows, chapter, section, message or attachment.

The other formats are never parsed here: their text comes from the index (extracted by the parse workers),
read off the GUI thread, and shown as plain text."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QPointF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFontDatabase, QTextCharFormat, QTextCursor, QTextFormat
from PySide6.QtPdf import QPdfDocument
from PySide6.QtPdfWidgets import QPdfView
from PySide6.QtWidgets import QDialog, QMenu, QPlainTextEdit, QTextEdit, QVBoxLayout, QWidget

from engine.rag.store import doc_id_for
from ui.ops import run_in_background
from ui.plain import plain_label
from ui.source_text import SourceText, build_source_text, cited_lines
from ui.tasks.selection import add_selection_actions, selected_text

MAX_TEXT_BYTES = 20 * 2**20
PLAIN_TEXT_KINDS = frozenset({"text", "markdown", "rst", "code"})  # shown from the file itself, line for line
# Kinds that are shown from the index; a source saved without its kind is told by its name.
EXTRACTED_SUFFIXES = frozenset(
    {".docx", ".odt", ".epub", ".pptx", ".xlsx", ".csv", ".tsv", ".eml", ".mbox", ".html", ".htm", ".xhtml"}
    | {".png", ".jpg", ".jpeg", ".tif", ".tiff"}
)


SYSTEM_TREES = (Path("/proc"), Path("/sys"), Path("/dev"))  # not documents: the kernel's and devices' files


def _refused_path(path: Path) -> str | None:
    """Why a source's path is not opened from disk (None: it may be): a source is a document the index read,
    named by its absolute path; a saved or imported source that names anything else is not opened."""
    if not path.is_absolute():
        return f"This source names no document path ({path}), so it is not opened."
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError):
        return f"The path {path} cannot be followed, so it is not opened."
    if any(resolved == tree or tree in resolved.parents for tree in SYSTEM_TREES):
        return f"{path} is a system file, not a document, so it is not opened."
    return None


class SourceViewer(QDialog):
    """A window on one source document, opened at the cited page or line."""

    selectionTask = Signal(str, str)  # (task mode, selected text): summarize/translate/explain it
    textShown = Signal()  # a document's text from the index is in the view (or why it is not)

    def __init__(
        self,
        source: dict,
        parent: QWidget | None = None,
        chunks: Callable[[str], list[dict]] | None = None,
    ):
        """``chunks(doc_id)``: the document's rows from the index (called off the GUI thread), for the
        formats shown as their extracted text."""
        super().__init__(parent)
        self.setObjectName("sourceViewer")
        self.source = source
        path = Path(source["path"])
        where = source.get("location") or ""
        self.setWindowTitle(f"{path.name} — {where}" if where else path.name)
        self.resize(900, 760)
        layout = QVBoxLayout(self)
        # The name, the place and the path come from the document and its index: shown as plain text.
        self.header = plain_label(
            f"{path.name} · {where}" if where else path.name, self, name="sourceName", selectable=True, bold=True
        )
        self.path_label = plain_label(str(path), self, name="sourcePath", selectable=True)
        small = self.path_label.font()
        small.setPointSizeF(small.pointSizeF() * 0.85)
        self.path_label.setFont(small)
        layout.addWidget(self.header)
        layout.addWidget(self.path_label)
        self.pdf_view: QPdfView | None = None
        self.text_view: QPlainTextEdit | None = None
        self.extracted: SourceText | None = None
        self.error = ""
        kind = source.get("kind")
        refused = (
            "This source comes from an imported conversation; its document is not indexed here, so only its "
            "quote is known."
            if source.get("imported") or not source.get("path")
            else _refused_path(path)
        )
        if refused:
            self._show_error(refused)
        elif not path.is_file():
            self._show_error(
                f"The file is no longer at {path}. It may have been moved or deleted; "
                "re-index its folder to update the sources."
            )
        elif kind == "pdf" or (kind is None and path.suffix.lower() == ".pdf"):
            self._open_pdf(path, source.get("page") or 1)
        elif kind in PLAIN_TEXT_KINDS or (kind is None and path.suffix.lower() not in EXTRACTED_SUFFIXES):
            self._open_text(path, source.get("line_start") or 1, source.get("line_end"))
        else:
            self._open_extracted(source.get("doc_id") or doc_id_for(path), chunks)

    def _show_error(self, text: str) -> None:
        self.error = text
        label = plain_label(text, self, name="sourceError", wrap=True)
        self.layout().addWidget(label, 1)

    def _open_pdf(self, path: Path, page: int) -> None:
        self.document = QPdfDocument(self)
        status = self.document.load(str(path))
        if status != QPdfDocument.Error.None_:
            reason = {
                QPdfDocument.Error.IncorrectPassword: "it is password protected",
                QPdfDocument.Error.FileNotFound: "it was not found",
                QPdfDocument.Error.InvalidFileFormat: "it is not a valid PDF",
            }.get(status, "it could not be read")
            self._show_error(f"{path.name} cannot be shown: {reason}.")
            return
        self.pdf_view = QPdfView(self)
        self.pdf_view.setObjectName("pdfView")
        self.pdf_view.setDocument(self.document)
        self.pdf_view.setPageMode(QPdfView.PageMode.MultiPage)
        self.pdf_view.setZoomMode(QPdfView.ZoomMode.FitToWidth)
        self.layout().addWidget(self.pdf_view, 1)
        self._initial_page = max(0, min(page - 1, self.document.pageCount() - 1))
        self._jump_to_initial_page()

    def _jump_to_initial_page(self) -> None:
        self.pdf_view.pageNavigator().jump(self._initial_page, QPointF(), 0)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self.pdf_view is not None:
            # The view scrolls back to the top when it is first laid out; jump once that is done.
            QTimer.singleShot(0, self._jump_to_initial_page)

    @property
    def current_page(self) -> int | None:
        """1-based page the PDF view is at (None for text)."""
        return self.pdf_view.pageNavigator().currentPage() + 1 if self.pdf_view else None

    def _open_text(self, path: Path, line: int, line_end: int | None) -> None:
        try:
            with path.open("rb") as file:  # bounded: a file's size can say 0 and hold far more (/proc)
                raw = file.read(MAX_TEXT_BYTES + 1)
        except OSError as exc:
            self._show_error(f"{path.name} cannot be read: {exc.strerror or exc}.")
            return
        if len(raw) > MAX_TEXT_BYTES:
            self._show_error(f"{path.name} is too large to show here.")
            return
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
        self._make_text_view(text)
        self._highlight_lines(line, line_end or line, _line_of_quote(text, self.source.get("quote"), line))

    def _open_extracted(self, doc_id: str, chunks: Callable[[str], list[dict]] | None) -> None:
        """The document's text from the index, at the cited place once it is read."""
        name = Path(self.source["path"]).name
        if chunks is None:
            self._show_error(f"{name} can be shown only from its indexed text, and the index is not open.")
            self.textShown.emit()
            return
        self._make_text_view("Reading the document's text from the index…")
        run_in_background(
            lambda: build_source_text(chunks(doc_id)),
            self._show_extracted,
            lambda exc: self._extracted_failed(f"Its text could not be read from the index: {exc}"),
            owner=self,
        )

    def _show_extracted(self, built: SourceText) -> None:
        name = Path(self.source["path"]).name
        if not built.text:
            self._extracted_failed(f"{name} has no text in the index: it may have been removed, or not be indexed yet.")
            return
        assert self.text_view is not None
        self.extracted = built
        self.text_view.setPlainText(built.text)
        lines = cited_lines(self.source, built)
        if lines is not None:  # the cited chunks, centred on the quoted sentence when it is among them
            self._highlight_lines(*lines, _line_of_quote(built.text, self.source.get("quote"), lines[0]))
        else:  # a source saved before places were indexed: where its quote is, else the top
            line = _line_of_quote(built.text, self.source.get("quote"), 1) or 1
            self._highlight_lines(line, line)
        self.textShown.emit()

    def _extracted_failed(self, text: str) -> None:
        if self.text_view is not None:
            self.text_view.hide()
        self._show_error(text)
        self.textShown.emit()

    def _make_text_view(self, text: str) -> None:
        self.text_view = QPlainTextEdit(self)
        self.text_view.setObjectName("textView")
        self.text_view.setReadOnly(True)
        self.text_view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.text_view.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.text_view.setPlainText(text)
        self.text_view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.text_view.customContextMenuRequested.connect(self._context_menu)
        self.layout().addWidget(self.text_view, 1)

    def context_menu(self, pos) -> QMenu:
        """The text's right-click menu: Qt's own entries, then tasks on the selected text if any."""
        menu = self.text_view.createStandardContextMenu(pos)
        add_selection_actions(menu, selected_text(self.text_view), self.selectionTask.emit)
        return menu

    def _context_menu(self, pos) -> None:
        menu = self.context_menu(pos)
        menu.exec(self.text_view.mapToGlobal(pos))
        menu.deleteLater()

    def _highlight_lines(self, first: int, last: int, focus: int | None = None) -> None:
        doc = self.text_view.document()
        first = max(1, min(first, doc.blockCount()))
        last = max(first, min(last, doc.blockCount()))
        selections = []
        colour = QColor(self.palette().highlight().color())
        colour.setAlpha(60)
        for number in range(first, last + 1):
            selection = QTextEdit.ExtraSelection()
            fmt = QTextCharFormat()
            fmt.setBackground(colour)
            fmt.setProperty(QTextFormat.Property.FullWidthSelection, True)
            selection.format = fmt
            selection.cursor = QTextCursor(doc.findBlockByNumber(number - 1))
            selections.append(selection)
        self.text_view.setExtraSelections(selections)
        focus = focus if focus and first <= focus <= last else first
        cursor = QTextCursor(doc.findBlockByNumber(focus - 1))
        self.text_view.setTextCursor(cursor)
        self.text_view.centerCursor()

    @property
    def current_line(self) -> int | None:
        return self.text_view.textCursor().blockNumber() + 1 if self.text_view else None


def _line_of_quote(text: str, quote: str | None, from_line: int) -> int | None:
    """The 1-based line where the quoted passage starts, searching from the cited line on."""
    if not quote:
        return None
    needle = quote.strip().rstrip("…")[:60]
    start = 0
    for _ in range(max(0, from_line - 1)):
        start = text.find("\n", start) + 1
        if start == 0:
            return None
    index = text.find(needle, start)
    return text.count("\n", 0, index) + 1 if index >= 0 else None
