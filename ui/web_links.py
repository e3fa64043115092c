"""Links in text Locus did not write: only web pages open, and only after the user has seen where to.

A link's words can say anything (`[your bank](https://evil.example)`), and its target can be a local file,
a network share or a custom handler that runs a program. So a click never opens anything at once:
http and https links show their full target and open only after "Open"; every other kind is refused
with a message that names it.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices, QFontDatabase, QTextOption
from PySide6.QtWidgets import QDialog, QHBoxLayout, QMessageBox, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

from ui.plain import message_box, plain_label

WEB_SCHEMES = ("http", "https")
MAX_SHOWN = 4000  # characters of a link shown in full; a longer one is cut (the dialog says so)


def is_web_link(url: QUrl) -> bool:
    """An http or https URL with a host: the only kind Locus offers to open."""
    return url.isValid() and url.scheme().lower() in WEB_SCHEMES and bool(url.host())


def link_target(url: QUrl) -> str:
    """The URL exactly as it will be opened: percent-encoded, an international host in its ASCII form, so
    look-alike letters cannot pass for another site."""
    return bytes(url.toEncoded()).decode("ascii", "replace")


def describe_link(url: QUrl) -> str:
    """One line for a hovered link: where it leads, and what a click does."""
    target = link_target(url)
    if len(target) > 300:
        target = target[:300] + "…"
    if is_web_link(url):
        return f"{target}  (click to open it in your browser; Locus asks first)"
    return f"{target}  (Locus does not open this kind of link)"


class LinkDialog(QDialog):
    """Asks before a web link opens: shows its site and its full target; Open opens it, Cancel does not."""

    def __init__(self, url: QUrl, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("linkDialog")
        self.setWindowTitle("Open link?")
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.url = url
        target = link_target(url)
        layout = QVBoxLayout(self)
        layout.addWidget(plain_label("Open this link in your web browser?", self, bold=True))
        layout.addWidget(
            plain_label(
                f"Site: {url.host(QUrl.ComponentFormattingOption.FullyEncoded)}", self, name="linkSite", selectable=True
            )
        )
        self.target = QPlainTextEdit(self)
        self.target.setObjectName("linkTarget")
        self.target.setReadOnly(True)
        self.target.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.target.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.target.setWordWrapMode(QTextOption.WrapMode.WrapAnywhere)  # a URL has no spaces to break at
        self.target.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.target.setPlainText(target if len(target) <= MAX_SHOWN else target[:MAX_SHOWN] + "…")
        self.target.setFixedHeight(self.target.fontMetrics().lineSpacing() * 3 + 12)
        layout.addWidget(self.target)
        if len(target) > MAX_SHOWN:
            layout.addWidget(
                plain_label(f"The link is {len(target):,} characters long; only the start is shown.", self, wrap=True)
            )
        layout.addWidget(
            plain_label(
                "Links in answers and documents can lead anywhere: open it only if you trust this site.",
                self,
                wrap=True,
            )
        )
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setObjectName("cancelLink")
        self.cancel_button.clicked.connect(self.reject)
        self.open_button = QPushButton("Open", self)
        self.open_button.setObjectName("openLink")
        self.open_button.setAutoDefault(False)
        self.open_button.clicked.connect(self.accept)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.open_button)
        layout.addLayout(buttons)
        self.cancel_button.setDefault(True)  # Enter does not open a link by accident
        self.cancel_button.setFocus()
        self.accepted.connect(lambda: QDesktopServices.openUrl(self.url))
        self.resize(560, self.sizeHint().height())


def open_link(parent: QWidget | None, url: QUrl) -> QDialog:
    """What a click on a link in untrusted text does: ask before opening a web link, refuse any other.
    Returns the dialog shown (window-modal, not blocking)."""
    if is_web_link(url):
        dialog: QDialog = LinkDialog(url, parent)
    else:
        dialog = message_box(
            parent,
            "Link not opened",
            "Locus opens only web links (http and https) from answers and documents. This link was not opened:",
            informative=link_target(url)[:MAX_SHOWN],
            icon=QMessageBox.Icon.Warning,
            name="linkRefused",
        )
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    dialog.open()
    return dialog
