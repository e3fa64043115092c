"""The conversation list: new, search, select, rename (F2 or double-click), delete."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from engine.history.models import Conversation, SearchHit
from ui.plain import literal

ID_ROLE = Qt.ItemDataRole.UserRole


class ConversationSidebar(QWidget):
    conversationSelected = Signal(int)
    newRequested = Signal()
    renameRequested = Signal(int, str)
    deleteRequested = Signal(int)
    searchChanged = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("sidebar")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        self.new_button = QPushButton("New chat", self)
        self.new_button.setObjectName("newChatButton")
        self.new_button.setShortcut(QKeySequence.StandardKey.New)
        self.new_button.setToolTip("Start a new conversation (Ctrl+N)")
        self.new_button.clicked.connect(self.newRequested)
        self.search = QLineEdit(self)
        self.search.setObjectName("conversationSearch")
        self.search.setPlaceholderText("Search conversations…")
        self.search.setClearButtonEnabled(True)
        self._search_timer = QTimer(self, singleShot=True, interval=200)
        self._search_timer.timeout.connect(lambda: self.searchChanged.emit(self.search.text().strip()))
        self.search.textChanged.connect(lambda _t: self._search_timer.start())
        self.list = QListWidget(self)
        self.list.setObjectName("conversationList")
        self.list.setEditTriggers(
            QAbstractItemView.EditTrigger.EditKeyPressed | QAbstractItemView.EditTrigger.DoubleClicked
        )
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._context_menu)
        self.list.currentItemChanged.connect(self._selection_changed)
        self.list.itemChanged.connect(self._item_edited)
        self.list.setWordWrap(True)
        # Long titles wrap and elide; a sideways scrollbar under the list would only get in the way.
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setTextElideMode(Qt.TextElideMode.ElideRight)
        delete = QAction("Delete", self.list)
        delete.setShortcut(QKeySequence.StandardKey.Delete)
        delete.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
        delete.triggered.connect(lambda: self._emit_for_current(self.deleteRequested.emit))
        self.list.addAction(delete)
        layout.addWidget(self.new_button)
        layout.addWidget(self.search)
        layout.addWidget(self.list, 1)
        self._populating = False

    # Content ---------------------------------------------------------------------

    def set_conversations(self, conversations: Sequence[Conversation], current: int | None) -> None:
        self._fill([(c, c.title, None) for c in conversations], current)

    def set_search_results(self, hits: Sequence[SearchHit], current: int | None) -> None:
        self._fill([(h.conversation, h.conversation.title, h.snippet) for h in hits], current)

    def _fill(self, rows, current: int | None) -> None:
        self._populating = True
        try:
            self.list.clear()
            for conversation, title, snippet in rows:
                item = QListWidgetItem(title)
                item.setData(ID_ROLE, conversation.id)
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsEditable)
                item.setToolTip(literal(snippet.replace("[", "").replace("]", "") if snippet else title))
                self.list.addItem(item)
                if conversation.id == current:
                    self.list.setCurrentItem(item)
        finally:
            self._populating = False

    def select(self, conversation_id: int | None) -> None:
        self._populating = True
        try:
            item = self.item_for(conversation_id)
            if item is not None:
                self.list.setCurrentItem(item)
            else:  # no current item, so clicking the one just left opens it again
                self.list.setCurrentRow(-1)
                self.list.clearSelection()
        finally:
            self._populating = False

    def item_for(self, conversation_id: int | None) -> QListWidgetItem | None:
        for row in range(self.list.count()):
            item = self.list.item(row)
            if item.data(ID_ROLE) == conversation_id:
                return item
        return None

    def titles(self) -> list[str]:
        return [self.list.item(i).text() for i in range(self.list.count())]

    def start_rename(self, conversation_id: int) -> None:
        item = self.item_for(conversation_id)
        if item is not None:
            self.list.editItem(item)

    # Reactions -------------------------------------------------------------------

    def _selection_changed(self, current: QListWidgetItem | None, _previous) -> None:
        if current is not None and not self._populating:
            self.conversationSelected.emit(current.data(ID_ROLE))

    def _item_edited(self, item: QListWidgetItem) -> None:
        if not self._populating:
            self.renameRequested.emit(item.data(ID_ROLE), item.text())

    def _emit_for_current(self, emit) -> None:
        item = self.list.currentItem()
        if item is not None:
            emit(item.data(ID_ROLE))

    def _context_menu(self, pos) -> None:
        item = self.list.itemAt(pos)
        if item is None:
            return
        conversation_id = item.data(ID_ROLE)
        menu = QMenu(self)
        menu.addAction("Rename", lambda: self.list.editItem(item))
        menu.addAction("Delete", lambda: self.deleteRequested.emit(conversation_id))
        menu.popup(self.list.viewport().mapToGlobal(pos))
