"""A message's everyday details: copy the whole answer as Markdown, its tokens and time shown on hover (and
while it has the keyboard focus), and moving between messages with the keyboard (Alt+Up / Alt+Down)."""

from __future__ import annotations

import math

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication, QKeySequence, QShortcut
from PySide6.QtWidgets import QFrame, QHBoxLayout, QPushButton, QScrollArea, QVBoxLayout, QWidget

from ui.plain import plain_label


def _number(stats: dict, key: str) -> float:
    """A figure of the stats, 0 when it is missing or not a finite number (an imported file may hold text)."""
    value = stats.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return 0.0
    return float(value)


def stats_line(stats: dict | None) -> str:
    """'412 prompt + 96 answer tokens · 3.1 s · 31.0 tokens/s' from a saved answer's stats ('' without).
    Figures that are not numbers are ignored: stats may come from an imported file."""
    if not stats or not isinstance(stats, dict):
        return ""
    prompt, answer = int(_number(stats, "prompt_tokens")), int(_number(stats, "completion_tokens"))
    if not (prompt or answer):
        return ""
    parts = [f"{prompt:,} prompt + {answer:,} answer tokens"]
    total = _number(stats, "total_s")
    if total:
        parts.append(f"{total:.1f} s")
    generation = _number(stats, "generation_s")
    rate = answer / generation if answer and generation else _number(stats, "tokens_per_s")
    if rate:
        parts.append(f"{rate:.1f} tokens/s")
    generations = int(_number(stats, "generations"))
    if generations > 1:
        parts.append(f"{generations} model calls")
    return " · ".join(parts)


class MessageDetails(QObject):
    """Attached to one MessageWidget: a 'Copy' button in its header (the raw Markdown of the whole message) and
    the tokens-and-time line under it, shown while the pointer is over the message or it has the focus."""

    copied = Signal(str)

    def __init__(self, message: QFrame, header: QHBoxLayout, layout: QVBoxLayout):
        super().__init__(message)
        self.message = message
        message.setFocusPolicy(Qt.FocusPolicy.StrongFocus)  # Alt+Up/Down and Tab reach it
        self.copy_button = QPushButton("Copy", message)
        self.copy_button.setObjectName("copyMarkdownButton")
        self.copy_button.setFlat(True)
        self.copy_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.copy_button.setToolTip("Copy this whole message as Markdown (Ctrl+C while it has the focus)")
        self.copy_button.setStyleSheet("QPushButton { color: palette(link); border: none; padding: 0 4px; }")
        self.copy_button.clicked.connect(self.copy)
        header.addWidget(self.copy_button)
        self.stats_label = plain_label("", message, name="messageStats")
        self.stats_label.setStyleSheet("color: palette(placeholder-text); font-size: 11px;")
        self.stats_label.hide()
        layout.addWidget(self.stats_label)
        self.stats_text = ""
        self._hovered = False
        message.installEventFilter(self)

    def set_stats(self, stats: dict | None) -> None:
        """The answer's saved stats (None: nothing to show)."""
        self.stats_text = stats_line(stats)
        self.stats_label.setText(self.stats_text)
        self._update()

    def copy(self) -> None:
        text = getattr(self.message, "text", "")
        QGuiApplication.clipboard().setText(text)
        self.copy_button.setText("Copied")
        QTimer.singleShot(1500, self.copy_button, lambda: self.copy_button.setText("Copy"))
        self.copied.emit(text)

    def _update(self) -> None:
        self.stats_label.setVisible(bool(self.stats_text) and (self._hovered or self.message.hasFocus()))

    def eventFilter(self, watched, event) -> bool:
        kind = event.type()
        if kind == QEvent.Type.Enter:
            self._hovered = True
            self._update()
        elif kind == QEvent.Type.Leave:
            self._hovered = False
            self._update()
        elif kind in (QEvent.Type.FocusIn, QEvent.Type.FocusOut):
            self._update()
        elif kind == QEvent.Type.KeyPress and event.matches(QKeySequence.StandardKey.Copy):
            self.copy()
            return True
        return False


class MessageNavigator(QObject):
    """Alt+Up / Alt+Down move the keyboard focus between the messages of a chat view (from the composer,
    Alt+Up goes to the last message); past the last one, Alt+Down and Esc go back to the composer."""

    def __init__(self, view: QScrollArea, messages, scope: QWidget | None = None):
        super().__init__(view)
        self.view = view
        self.messages = messages  # () -> list of message widgets, in order
        scope = scope or view.window()
        for keys, step in (("Alt+Up", -1), ("Alt+Down", 1)):
            shortcut = QShortcut(QKeySequence(keys), scope)
            shortcut.setContext(Qt.ShortcutContext.WindowShortcut)
            shortcut.activated.connect(lambda s=step: self.move(s))
        back = QShortcut(QKeySequence("Escape"), view)
        back.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        back.activated.connect(self.to_composer)

    def current(self) -> int | None:
        """Index of the message holding the focus (or inside which it is), None when none does."""
        focus = QGuiApplication.focusObject()
        widgets = self.messages()
        while isinstance(focus, QWidget):
            if focus in widgets:
                return widgets.index(focus)
            focus = focus.parentWidget()
        return None

    def move(self, step: int) -> None:
        widgets = [w for w in self.messages() if w.isVisible()]
        if not widgets:
            return
        everything = self.messages()
        index = self.current()
        if index is not None and everything[index] in widgets:
            position = widgets.index(everything[index]) + step
        else:
            position = len(widgets) - 1 if step < 0 else None  # from outside: Alt+Up takes the last message
            if position is None:
                return
        if position >= len(widgets):
            self.to_composer()
            return
        target = widgets[max(0, position)]
        target.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.view.ensureWidgetVisible(target, 0, 24)

    def to_composer(self) -> None:
        composer = self.view.window().findChild(QWidget, "composer")
        if composer is not None:
            composer.setFocus(Qt.FocusReason.ShortcutFocusReason)
