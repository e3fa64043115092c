"""Which documents a conversation answers from: none, all, or chosen collections."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import QMenu, QToolButton, QWidget

from ui.plain import mnemonic_safe


def describe(value: list[str] | None) -> str:
    if value is None:
        return "Documents: off"
    if not value:
        return "Documents: all"
    return "Documents: " + ", ".join(value)


class DocumentsSelector(QToolButton):
    """A button with a menu; ``value`` is None (no documents), [] (all) or collection names."""

    valueChanged = Signal(object)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("documentsSelector")
        self.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.setToolTip("Answer from your indexed documents, with sources")
        self.value: list[str] | None = None
        self.collections: list[str] = []
        self.setMenu(QMenu(self))
        self._rebuild()

    def set_collections(self, names: list[str]) -> None:
        self.collections = sorted(names)
        self._rebuild()

    def set_value(self, value: list[str] | None) -> None:
        """Show a value without announcing it (the conversation already has it)."""
        self.value = None if value is None else sorted(value)
        self._rebuild()

    def choose(self, value: list[str] | None) -> None:
        """What the menu does: set and announce."""
        self.set_value(value)
        self.valueChanged.emit(self.value)

    def _rebuild(self) -> None:
        menu = self.menu()
        menu.clear()
        exclusive = QActionGroup(menu)
        off = QAction("Don't use documents", menu, checkable=True, checked=self.value is None)
        off.triggered.connect(lambda: self.choose(None))
        everything = QAction("All documents", menu, checkable=True, checked=self.value == [])
        everything.triggered.connect(lambda: self.choose([]))
        for action in (off, everything):
            exclusive.addAction(action)
            menu.addAction(action)
        if self.collections:
            menu.addSeparator()
        for name in self.collections:
            chosen = bool(self.value) and name in self.value
            action = QAction(mnemonic_safe(f"Collection: {name}"), menu, checkable=True, checked=chosen)
            action.triggered.connect(lambda checked, n=name: self._toggle(n, checked))
            menu.addAction(action)
        self.setText(mnemonic_safe(describe(self.value)))

    def _toggle(self, name: str, checked: bool) -> None:
        current = set(self.value or [])
        current = current | {name} if checked else current - {name}
        self.choose(sorted(current) if current else None)
