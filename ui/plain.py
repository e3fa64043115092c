"""Data shown as the words it is, never as markup.

Qt guesses: a QLabel, a tooltip or a message box whose text looks like HTML (Qt::mightBeRichText)
renders it, and rendered HTML loads images, so `<img src="/dev/zero">` in a file name, a document or a
model's answer would read a file on the GUI thread. Every label in ui/ is made here as plain text,
every tooltip and message-box text that can hold data goes through ``literal``, and
tests/ui/test_plain_text_rule.py keeps it that way.
"""

from __future__ import annotations

from PySide6 import QtGui
from PySide6.QtCore import Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QLabel, QMessageBox, QWidget


def literal(text: str) -> str:
    """Text for a place where Qt guesses the format (tooltips, QMessageBox's static functions, table
    tooltips): rich text that shows ``text`` exactly, with every `<` and `&` escaped. "" stays "" (no tooltip)."""
    return QtGui.Qt.convertFromPlainText(text, QtGui.Qt.WhiteSpaceMode.WhiteSpaceNormal) if text else ""


def mnemonic_safe(text: str) -> str:
    """Text for a button or menu entry: a `&` in data shows as itself, not as a keyboard shortcut."""
    return text.replace("&", "&&")


def plain_label(
    text: str = "",
    parent: QWidget | None = None,
    *,
    name: str = "",
    wrap: bool = False,
    selectable: bool = False,
    bold: bool = False,
) -> QLabel:
    """A QLabel that shows its text as plain text, whatever it holds (now and after any setText)."""
    label = QLabel(parent)
    label.setTextFormat(Qt.TextFormat.PlainText)
    label.setText(text)
    if name:
        label.setObjectName(name)
    label.setWordWrap(wrap)
    if selectable:
        label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    if bold:
        font = QFont(label.font())
        font.setBold(True)
        label.setFont(font)
    return label


def rich_label(
    html: str = "", parent: QWidget | None = None, *, name: str = "", wrap: bool = False, selectable: bool = False
) -> QLabel:
    """A QLabel that renders rich text: only for fixed markup whose every value went through
    html.escape (the trace header, the monitoring summary). Anything else takes ``plain_label``."""
    label = QLabel(parent)
    label.setTextFormat(Qt.TextFormat.RichText)
    label.setText(html)
    if name:
        label.setObjectName(name)
    label.setWordWrap(wrap)
    if selectable:
        label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


def message_box(
    parent: QWidget | None,
    title: str,
    text: str,
    *,
    informative: str = "",
    detail: str = "",
    icon: QMessageBox.Icon = QMessageBox.Icon.Information,
    name: str = "",
) -> QMessageBox:
    """A message box whose texts are all plain text (an error may quote a file name or a model's words);
    its links, if any, are not followed. Show it with ``open()`` (or ``exec()``)."""
    box = QMessageBox(parent)
    box.setIcon(icon)
    box.setWindowTitle(title)
    box.setTextFormat(Qt.TextFormat.PlainText)
    box.setText(text)
    if informative:
        box.setInformativeText(informative)
    if detail:
        box.setDetailedText(detail)  # a QTextEdit set with setPlainText: plain already
    for label in box.findChildren(QLabel):  # the informative label does not follow setTextFormat everywhere
        label.setTextFormat(Qt.TextFormat.PlainText)
        label.setOpenExternalLinks(False)
    if name:
        box.setObjectName(name)
    return box


def confirm(parent: QWidget | None, title: str, text: str) -> bool:
    """Ask a yes/no question whose text may hold data (a name, an error); True for Yes."""
    return QMessageBox.question(parent, title, literal(text)) == QMessageBox.StandardButton.Yes
