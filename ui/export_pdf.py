"""Conversations as PDF: the Markdown export (engine/history/export.py) laid out by Qt and printed to a file.

Qt's own Markdown reader (GitHub dialect, raw HTML read as text) builds a QTextDocument; QPdfWriter pages
it. The text of a conversation is hostile: it may name images, style sheets or links to load, and the
document loads none of them (every resource is refused, counted in ``refused``). Works in the window and in
the terminal (``locus export --format pdf``), where an offscreen Qt application is made for the fonts. It
lives in ui/ because it is Qt: the window may not import app/, and app/ (the CLI) may import ui/.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QMarginsF, QUrl
from PySide6.QtGui import QColor, QGuiApplication, QPageLayout, QPageSize, QPdfWriter, QTextCursor, QTextDocument

_MARKDOWN = QTextDocument.MarkdownFeature.MarkdownDialectGitHub | QTextDocument.MarkdownFeature.MarkdownNoHTML
_app: QGuiApplication | None = None  # the offscreen application made for the terminal, kept while the process runs


class SealedDocument(QTextDocument):
    """A text document that loads nothing: no image, style sheet or page a text may point at."""

    def __init__(self) -> None:
        super().__init__()
        self.refused: set[str] = set()

    def loadResource(self, type: int, name: QUrl) -> object:  # noqa: A002 - Qt's names
        self.refused.add(name.toString())
        return None


def _ensure_qt() -> None:
    """Fonts need a QGuiApplication: the window's, or an offscreen one made here (for the terminal)."""
    global _app
    if QCoreApplication.instance() is None:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        _app = QGuiApplication(["locus"])


def markdown_document(markdown: str) -> SealedDocument:
    _ensure_qt()
    doc = SealedDocument()
    doc.setMarkdown(markdown, _MARKDOWN)
    _space_out(doc)
    return doc


def _space_out(doc: QTextDocument) -> None:
    """Room above each heading (a message's role and time) and a shade behind code blocks."""
    cursor = QTextCursor(doc)
    block = doc.begin()
    while block.isValid():
        fmt = block.blockFormat()
        if fmt.headingLevel() > 0:
            fmt.setTopMargin(16.0 if fmt.headingLevel() > 1 else 4.0)
        elif fmt.nonBreakableLines():  # a code block
            fmt.setBackground(QColor(242, 242, 242))
        else:
            block = block.next()
            continue
        cursor.setPosition(block.position())
        cursor.setBlockFormat(fmt)
        block = block.next()


def write_pdf(markdown: str, path: str | Path, *, title: str = "Locus conversations") -> SealedDocument:
    """Lay ``markdown`` out on A4 pages and write it to ``path`` (whole or not at all: a temporary file is
    renamed into place); returns the document, whose ``refused`` lists the resources it did not load."""
    path = Path(path)
    doc = markdown_document(markdown)
    partial = path.with_name(f".{path.name}.part")
    writer = QPdfWriter(str(partial))
    writer.setTitle(title)
    writer.setCreator("Locus")
    writer.setPageSize(QPageSize(QPageSize.PageSizeId.A4))
    writer.setPageMargins(QMarginsF(18, 18, 18, 18), QPageLayout.Unit.Millimeter)
    doc.print_(writer)
    del writer  # the file is finished when the writer goes
    if not partial.is_file() or partial.stat().st_size == 0:
        partial.unlink(missing_ok=True)
        raise OSError(f"the PDF could not be written to {path}")
    os.replace(partial, path)
    return doc
