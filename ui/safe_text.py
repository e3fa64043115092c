"""The rich-text view for text Locus did not write: model answers, the user's own messages, code.

Qt's rich text fetches what it names. A QTextDocument loads a resource by opening the path itself when
its view returns nothing, and the image handler falls back to QImage::load(name) on the raw name, so
`![x](/dev/zero)` reads until memory runs out, a named pipe hangs the GUI thread, and on Windows
`file://host/share/x.png` connects to that host (and sends the user's NTLM hash). Here:

- ``SafeDocument`` loads no resource at all: nothing from disk, the network, or Qt's resource system
  (Locus ships none that answers need);
- ``ImagePlaceholder`` replaces the image handler, so an image is drawn as its description,
  "[image: …]", and its source is never touched, not even to look for a high-DPI variant;
- ``SafeTextBrowser`` uses both, never follows a link itself, shows a link's real target when hovered,
  and shows tooltips from the text (a Markdown link's title) as plain text.
"""

from __future__ import annotations

import atexit

from PySide6.QtCore import QEvent, QMimeData, QPointF, QSizeF, QUrl, Signal
from PySide6.QtGui import (
    QClipboard,
    QColor,
    QFont,
    QFontMetricsF,
    QGuiApplication,
    QPyTextObject,
    QTextCharFormat,
    QTextCursor,
    QTextDocument,
    QTextDocumentFragment,
    QTextFormat,
)
from PySide6.QtWidgets import QMainWindow, QTextBrowser, QToolTip, QWidget

from ui.plain import literal
from ui.web_links import describe_link, open_link

# Raw HTML in Markdown is shown as the words it is: no <img>, <link>, style or hidden text from a model.
MARKDOWN_FEATURES = QTextDocument.MarkdownFeature(
    QTextDocument.MarkdownFeature.MarkdownDialectGitHub.value | QTextDocument.MarkdownFeature.MarkdownNoHTML.value
)
MAX_ALT = 80  # characters of an image's description shown in its place
_SAFE_COPY = "locusSafeCopy"  # a property marking the clipboard data our views made


def release_clipboard() -> None:
    """Hand the clipboard a copy Qt made itself of what our views put there.

    The clipboard owns the QMimeData a copy gave it, and Qt deletes it from its own exit handlers, after
    Python has shut down; deleting an object Python made then crashes the process. So at exit (and at
    quit) the text is put back by QClipboard.setText, which deletes ours while Python still runs.
    """
    if QGuiApplication.instance() is None:
        return
    clipboard = QGuiApplication.clipboard()
    for mode in (QClipboard.Mode.Clipboard, QClipboard.Mode.Selection):
        data = clipboard.mimeData(mode)
        if data is not None and data.property(_SAFE_COPY):
            clipboard.setText(data.text(), mode)


atexit.register(release_clipboard)  # runs before the interpreter shuts down, unlike Qt's own exit handlers


def image_text(fmt: QTextFormat) -> str:
    """What an image in the text shows instead of itself: its description, never its source."""
    image = fmt.toImageFormat()
    alt = " ".join(
        (
            image.stringProperty(QTextFormat.Property.ImageAltText)
            or image.stringProperty(QTextFormat.Property.ImageTitle)
        ).split()
    )
    if len(alt) > MAX_ALT:  # drawn as one unbreakable piece: a long one would run off the view
        alt = alt[:MAX_ALT] + "…"
    return f"[image: {alt}]" if alt else "[image]"


class ImagePlaceholder(QPyTextObject):
    """Lays out and draws every image of a document as its description (``image_text``), in faded italics."""

    @staticmethod
    def _font(fmt: QTextFormat) -> QFont:
        font = QFont(fmt.toCharFormat().font())
        font.setItalic(True)
        return font

    def intrinsicSize(self, doc, pos_in_document, fmt) -> QSizeF:
        metrics = QFontMetricsF(self._font(fmt))
        # The object sits on the baseline: as tall as the text above it, so the line keeps its height.
        return QSizeF(metrics.horizontalAdvance(image_text(fmt)), metrics.ascent())

    def drawObject(self, painter, rect, doc, pos_in_document, fmt) -> None:
        painter.save()
        painter.setFont(self._font(fmt))
        faded = QColor(painter.pen().color())  # the text's own colour, in the light or the dark theme
        faded.setAlpha(150)
        painter.setPen(faded)
        painter.drawText(QPointF(rect.left(), rect.bottom()), image_text(fmt))
        painter.restore()


class SafeDocument(QTextDocument):
    """A text document that loads nothing: every resource it names (image, style sheet, page) is absent."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setUndoRedoEnabled(False)  # read-only text, replaced as an answer streams
        self.placeholder = ImagePlaceholder(self)
        self.documentLayout().registerHandler(QTextFormat.ObjectTypes.ImageObject.value, self.placeholder)

    def loadResource(self, kind: int, name: QUrl):
        # Never the base class: it opens the path when nothing else supplied the resource.
        return None


def images_as_text(document: QTextDocument) -> QTextDocument:
    """Replace every image in ``document`` by its description, as plain characters; returns it."""
    found = []
    block = document.begin()
    while block.isValid():
        it = block.begin()
        while not it.atEnd():
            fragment = it.fragment()
            if fragment.isValid() and fragment.charFormat().isImageFormat():
                found.append((fragment.position(), fragment.length(), image_text(fragment.charFormat())))
            it += 1
        block = block.next()
    cursor = QTextCursor(document)
    for position, length, text in reversed(found):  # from the end, so earlier positions stay right
        cursor.setPosition(position)
        cursor.setPosition(position + length, QTextCursor.MoveMode.KeepAnchor)
        cursor.insertText(text * length, QTextCharFormat())
    return document


def _safe_copy(fragment: QTextDocumentFragment) -> SafeDocument:
    copy = SafeDocument()
    QTextCursor(copy).insertFragment(fragment)
    return images_as_text(copy)


class SafeTextBrowser(QTextBrowser):
    """A read-only rich-text view that loads nothing, draws images as their description and asks before
    opening a web link (other links are refused). Links with a scheme in ``internal_schemes`` are the
    app's own: they are announced with ``internalLink`` instead."""

    internalLink = Signal(QUrl)

    def __init__(self, parent: QWidget | None = None, internal_schemes: tuple[str, ...] = ()):
        super().__init__(parent)
        self.internal_schemes = internal_schemes
        self.setReadOnly(True)
        self.setOpenLinks(False)  # QTextBrowser would load a clicked file into itself
        self.setOpenExternalLinks(False)  # ... or hand any URL to the desktop
        super().setDocument(SafeDocument(self))
        self.anchorClicked.connect(self._anchor_clicked)
        self.highlighted.connect(self._hovered)
        self._status_shown = ""

    def setDocument(self, document) -> None:
        if not isinstance(document, SafeDocument):
            raise TypeError("a SafeTextBrowser shows only a SafeDocument")
        super().setDocument(document)

    def loadResource(self, kind: int, name: QUrl):
        return None

    def set_html(self, html: str) -> None:
        """Show HTML that Locus made itself (highlighted code): still nothing in it is loaded."""
        self.setHtml(html)

    def set_markdown(self, text: str) -> None:
        """Show Markdown (raw HTML in it shows as text)."""
        self.document().setMarkdown(text, MARKDOWN_FEATURES)

    def shown_text(self) -> str:
        """The text as it reads on screen: images as their description."""
        return _safe_copy(QTextDocumentFragment(self.document())).toPlainText()

    def createMimeDataFromSelection(self) -> QMimeData:
        """Copied text carries images as their description, so pasting it elsewhere loads nothing either."""
        copy = _safe_copy(QTextDocumentFragment(self.textCursor()))
        data = QMimeData()
        data.setProperty(_SAFE_COPY, True)  # see release_clipboard
        data.setText(copy.toPlainText())
        data.setHtml(copy.toHtml())
        return data

    # Links -------------------------------------------------------------------------

    def _anchor_clicked(self, url: QUrl) -> None:
        if url.scheme().lower() in self.internal_schemes:
            self.internalLink.emit(url)
        else:
            open_link(self.window(), url)

    def _link_text(self, href: str) -> str:
        url = QUrl(href)
        if url.scheme().lower() in self.internal_schemes:
            return ""
        return describe_link(url)

    def _hovered(self, url: QUrl) -> None:
        """A link is under the mouse (an empty url: none is): say where it really leads in the status bar."""
        window = self.window()
        if not isinstance(window, QMainWindow):
            return
        bar = window.statusBar()
        text = self._link_text(url.toString()) if not url.isEmpty() else ""
        if text:
            bar.showMessage(text)
        elif self._status_shown and bar.currentMessage() == self._status_shown:
            bar.clearMessage()
        self._status_shown = text

    # Tooltips ----------------------------------------------------------------------

    def _tooltip(self, event, viewport_pos) -> bool:
        """Show the tooltip for this point ourselves: a link's real target, or the view's own tip, as plain
        text. Qt would show the text's own tooltip (a Markdown link title) as rich text."""
        href = self.anchorAt(viewport_pos)
        text = literal(self._link_text(href)) if href else self.toolTip()
        if text:
            QToolTip.showText(event.globalPos(), text, self.viewport())
        else:
            QToolTip.hideText()
        return True

    def event(self, event) -> bool:
        if event.type() == QEvent.Type.ToolTip:
            return self._tooltip(event, self.viewport().mapFrom(self, event.pos()))
        return super().event(event)

    def viewportEvent(self, event) -> bool:
        if event.type() == QEvent.Type.ToolTip:
            return self._tooltip(event, event.pos())
        return super().viewportEvent(event)
