"""The conversation list: new, search, select, rename (F2 or double-click), delete; projects as collapsible
folders (drag a conversation onto one, or "Move to project" in its menu), pinned conversations on top."""

from __future__ import annotations

import json
from collections.abc import Sequence

from PySide6.QtCore import QByteArray, QMimeData, QPointF, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QColor, QIcon, QKeySequence, QPainter, QPen, QPixmap, QPolygonF
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPushButton,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QVBoxLayout,
    QWidget,
)

from engine.history.models import Conversation, SearchHit
from ui.plain import literal, mnemonic_safe

ID_ROLE = Qt.ItemDataRole.UserRole  # a conversation's id (None on a project's row)
PROJECT_ROLE = Qt.ItemDataRole.UserRole + 1  # a project's id: on its folder row, and on its conversations' rows
INDENT_ROLE = Qt.ItemDataRole.UserRole + 2  # a conversation inside a project's folder (drawn indented)
PINNED_ROLE = Qt.ItemDataRole.UserRole + 3  # a pinned conversation (listed first, with a pin)
ALL = "all"  # the search scope of every conversation
MIME = "application/x-locus-conversations"  # a drag's conversation ids (JSON)
INDENT_PX = 18


class _IndentDelegate(QStyledItemDelegate):
    """Draws (and edits) a project's conversations a little to the right of its folder."""

    def _shifted(self, option, index) -> QStyleOptionViewItem:
        option = QStyleOptionViewItem(option)
        if index.data(INDENT_ROLE):
            option.rect.adjust(INDENT_PX, 0, 0, 0)
        return option

    def paint(self, painter, option, index) -> None:
        super().paint(painter, self._shifted(option, index), index)

    def updateEditorGeometry(self, editor, option, index) -> None:
        super().updateEditorGeometry(editor, self._shifted(option, index), index)


def _pin_icon() -> QIcon:
    """A small drawn pin (no icon file, no emoji font needed)."""
    pixmap = QPixmap(16, 16)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    color = QColor("#c0392b")
    painter.setPen(QPen(QColor("#7f8c8d"), 1.6))
    painter.drawLine(QPointF(8, 9), QPointF(8, 15))
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(color)
    painter.drawEllipse(QPointF(8, 5), 4.2, 4.2)
    painter.end()
    return QIcon(pixmap)


def _folder_icon(open_: bool) -> QIcon:
    pixmap = QPixmap(16, 16)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QColor("#d4a82f"))
    painter.drawRoundedRect(1, 3, 7, 3, 1, 1)
    painter.drawRoundedRect(1, 5, 14, 9, 1.5, 1.5)
    painter.setBrush(QColor("#6b6b6b"))
    arrow = (
        [QPointF(5, 8), QPointF(11, 8), QPointF(8, 12)] if open_ else [QPointF(6, 7), QPointF(10, 9.5), QPointF(6, 12)]
    )
    painter.drawPolygon(QPolygonF(arrow))
    painter.end()
    return QIcon(pixmap)


class ConversationListWidget(QListWidget):
    """The list itself: a conversation dragged onto a project's row (or one of its conversations) moves
    there; dropped on a conversation in no project, or below the rows, it leaves its project. The drag
    carries the conversations' ids (``MIME``); rows are never reordered."""

    moveRequested = Signal(int, object)  # conversation id, project id or None

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setDragEnabled(True)
        self.setAcceptDrops(True)
        self.setDropIndicatorShown(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragDrop)
        self.setDefaultDropAction(Qt.DropAction.MoveAction)

    def mimeTypes(self) -> list[str]:
        return [MIME]

    def mimeData(self, items) -> QMimeData:
        data = QMimeData()
        ids = [item.data(ID_ROLE) for item in items if item.data(ID_ROLE) is not None]
        data.setData(MIME, QByteArray(json.dumps(ids).encode()))
        return data

    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasFormat(MIME):
            event.setDropAction(Qt.DropAction.MoveAction)
            event.accept()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:
        self.dragEnterEvent(event)

    def dropEvent(self, event) -> None:
        """Move the dropped conversations to the project under the drop (None: out of any)."""
        if not event.mimeData().hasFormat(MIME):
            event.ignore()
            return
        try:
            ids = json.loads(bytes(event.mimeData().data(MIME).data()).decode())
        except ValueError:
            ids = []
        target = self.itemAt(event.position().toPoint())
        project = target.data(PROJECT_ROLE) if target is not None else None
        for conversation in ids if isinstance(ids, list) else []:
            item = next((self.item(i) for i in range(self.count()) if self.item(i).data(ID_ROLE) == conversation), None)
            if isinstance(conversation, int) and (item is None or item.data(PROJECT_ROLE) != project):
                self.moveRequested.emit(conversation, project)
        event.setDropAction(Qt.DropAction.CopyAction)  # nothing for the source to remove
        event.accept()


class ConversationSidebar(QWidget):
    conversationSelected = Signal(int)
    newRequested = Signal()
    renameRequested = Signal(int, str)
    deleteRequested = Signal(int)
    searchChanged = Signal(str)
    # Projects, pins and copies (ui/conversation_list.py and ui/projects.py carry them out).
    pinRequested = Signal(int, bool)
    duplicateRequested = Signal(int)
    moveRequested = Signal(int, object)  # conversation, project id or None
    newProjectRequested = Signal(object)  # a conversation to put in it, or None
    projectMenuRequested = Signal(str, int)  # "new_chat" | "rename" | "settings" | "delete", project id
    scopeChanged = Signal()

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
        self.new_project_button = QPushButton("New project", self)
        self.new_project_button.setObjectName("newProjectButton")
        self.new_project_button.setToolTip("A folder for conversations, with their own assistant and documents")
        self.new_project_button.clicked.connect(lambda: self.newProjectRequested.emit(None))
        buttons = QHBoxLayout()
        buttons.addWidget(self.new_button, 1)
        buttons.addWidget(self.new_project_button)
        self.search = QLineEdit(self)
        self.search.setObjectName("conversationSearch")
        self.search.setPlaceholderText("Search conversations…")
        self.search.setClearButtonEnabled(True)
        self._search_timer = QTimer(self, singleShot=True, interval=200)
        self._search_timer.timeout.connect(lambda: self.searchChanged.emit(self.search.text().strip()))
        self.search.textChanged.connect(lambda _t: self._search_timer.start())
        self.scope = QComboBox(self)
        self.scope.setObjectName("searchScope")
        self.scope.setToolTip("Where to search: every conversation, or one project's")
        self.scope.addItem("All conversations", ALL)
        self.scope.setVisible(False)  # shown once there are projects
        self.scope.currentIndexChanged.connect(lambda _i: self.scopeChanged.emit())
        self.list = ConversationListWidget(self)
        self.list.setObjectName("conversationList")
        self.list.moveRequested.connect(self.moveRequested)
        self.list.setItemDelegate(_IndentDelegate(self.list))
        self.list.setEditTriggers(
            QAbstractItemView.EditTrigger.EditKeyPressed | QAbstractItemView.EditTrigger.DoubleClicked
        )
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._context_menu)
        self.list.currentItemChanged.connect(self._selection_changed)
        self.list.itemChanged.connect(self._item_edited)
        self.list.itemClicked.connect(self._clicked)
        self.list.setWordWrap(True)
        # Long titles wrap and elide; a sideways scrollbar under the list would only get in the way.
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setTextElideMode(Qt.TextElideMode.ElideRight)
        delete = QAction("Delete", self.list)
        delete.setShortcut(QKeySequence.StandardKey.Delete)
        delete.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
        delete.triggered.connect(lambda: self._emit_for_current(self.deleteRequested.emit))
        self.list.addAction(delete)
        menu_key = QAction("Menu", self.list)  # the context menu from the keyboard, at the current row
        menu_key.setShortcut(QKeySequence("Shift+F10"))
        menu_key.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
        menu_key.triggered.connect(self._menu_for_current)
        self.list.addAction(menu_key)
        layout.addLayout(buttons)
        layout.addWidget(self.search)
        layout.addWidget(self.scope)
        layout.addWidget(self.list, 1)
        self._populating = False
        self.projects: list = []  # engine.history.projects.Project, as last shown
        self.collapsed: set[int] = set()  # projects folded shut
        self._rows: tuple = ((), None, False)  # what was last shown, to show again after a fold
        self._pin = _pin_icon()
        blank = QPixmap(16, 16)
        blank.fill(Qt.GlobalColor.transparent)
        self._no_pin = QIcon(blank)
        self._folders = (_folder_icon(False), _folder_icon(True))

    # Content ---------------------------------------------------------------------

    def set_projects(self, projects: Sequence) -> None:
        """The projects there are (folders; the search scope's choices)."""
        self.projects = list(projects)
        chosen = self.scope_project()
        self.scope.blockSignals(True)
        try:
            self.scope.clear()
            self.scope.addItem("All conversations", ALL)
            for project in self.projects:
                self.scope.addItem(mnemonic_safe(f"In project: {project.name}"), project.id)
            index = self.scope.findData(chosen) if chosen != ALL else 0
            self.scope.setCurrentIndex(max(index, 0))
        finally:
            self.scope.blockSignals(False)
        self.scope.setVisible(bool(self.projects))
        if chosen != ALL and self.scope.currentData() == ALL:
            self.scopeChanged.emit()  # the project searched in was deleted

    def scope_project(self) -> object:
        """The project a search looks in (its id), or ALL."""
        value = self.scope.currentData()
        return ALL if value is None else value

    def set_scope(self, project_id: object) -> None:
        index = self.scope.findData(project_id)
        if index >= 0:
            self.scope.setCurrentIndex(index)

    def set_conversations(self, conversations: Sequence[Conversation], current: int | None) -> None:
        self._rows = ([(c, c.title, None) for c in conversations], current, True)
        self._fill(*self._rows)

    def set_search_results(self, hits: Sequence[SearchHit], current: int | None) -> None:
        self._rows = ([(h.conversation, h.conversation.title, h.snippet) for h in hits], current, False)
        self._fill(*self._rows)

    def _fill(self, rows, current: int | None, grouped: bool) -> None:
        """Every conversation under its project's folder (projects first, then the rest), pinned first in
        each group; search results as a flat list (they are ranked)."""
        self._populating = True
        try:
            self.list.clear()
            if not grouped:
                for conversation, title, snippet in rows:
                    self._add_conversation(conversation, title, snippet, current)
                return
            groups: dict[object, list] = {}  # rows by project, in one pass (an import may make many projects)
            for row in rows:
                groups.setdefault(getattr(row[0], "project_id", None), []).append(row)
            for project in self.projects:
                members = groups.pop(project.id, [])
                self._add_project(project, len(members))
                if project.id not in self.collapsed:
                    for conversation, title, snippet in _pinned_first(members):
                        self._add_conversation(conversation, title, snippet, current, indent=True)
            loose = [r for r in rows if getattr(r[0], "project_id", None) in groups]  # in no project (or one gone)
            for conversation, title, snippet in _pinned_first(loose):
                self._add_conversation(conversation, title, snippet, current)
        finally:
            self._populating = False

    def _add_project(self, project, count: int) -> None:
        shut = project.id in self.collapsed
        item = QListWidgetItem(f"{project.name}  ({count})")
        item.setData(ID_ROLE, None)
        item.setData(PROJECT_ROLE, project.id)
        item.setIcon(self._folders[0 if shut else 1])
        item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsDropEnabled)
        font = item.font()
        font.setBold(True)
        item.setFont(font)
        item.setToolTip(literal(f"Project {project.name}: click to {'open' if shut else 'fold'} it"))
        self.list.addItem(item)

    def _add_conversation(self, conversation, title: str, snippet: str | None, current, indent: bool = False) -> None:
        item = QListWidgetItem(title)
        item.setData(INDENT_ROLE, indent)
        item.setData(ID_ROLE, conversation.id)
        item.setData(PROJECT_ROLE, getattr(conversation, "project_id", None))
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsEditable | Qt.ItemFlag.ItemIsDragEnabled)
        pinned = bool(getattr(conversation, "pinned", False))
        item.setData(PINNED_ROLE, pinned)
        item.setIcon(self._pin if pinned else self._no_pin)  # titles line up, pinned or not
        item.setToolTip(literal(snippet.replace("[", "").replace("]", "") if snippet else title))
        self.list.addItem(item)
        if conversation.id == current:
            self.list.setCurrentItem(item)

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
        if conversation_id is None:
            return None
        for row in range(self.list.count()):
            item = self.list.item(row)
            if item.data(ID_ROLE) == conversation_id:
                return item
        return None

    def project_item(self, project_id: int) -> QListWidgetItem | None:
        for row in range(self.list.count()):
            item = self.list.item(row)
            if item.data(ID_ROLE) is None and item.data(PROJECT_ROLE) == project_id:
                return item
        return None

    def titles(self) -> list[str]:
        """The conversations' titles as listed (project folders left out)."""
        items = (self.list.item(i) for i in range(self.list.count()))
        return [item.text() for item in items if item.data(ID_ROLE) is not None]

    def outline(self) -> list[tuple[str, object]]:
        """What the list shows, for tests: ("project", name) and ("conversation", title) rows in order,
        a pinned conversation's title starting with "*"."""
        rows: list[tuple[str, object]] = []
        for i in range(self.list.count()):
            item = self.list.item(i)
            if item.data(ID_ROLE) is None:
                name = next((p.name for p in self.projects if p.id == item.data(PROJECT_ROLE)), "?")
                rows.append(("project", name))
            else:
                pinned = bool(item.data(PINNED_ROLE))
                rows.append(("conversation", ("*" if pinned else "") + item.text()))
        return rows

    def start_rename(self, conversation_id: int) -> None:
        item = self.item_for(conversation_id)
        if item is not None:
            self.list.editItem(item)

    def toggle_project(self, project_id: int) -> None:
        """Fold a project's folder shut, or open it."""
        self.collapsed ^= {project_id}
        self._fill(*self._rows)

    # Reactions -------------------------------------------------------------------

    def _selection_changed(self, current: QListWidgetItem | None, _previous) -> None:
        if current is not None and not self._populating and current.data(ID_ROLE) is not None:
            self.conversationSelected.emit(current.data(ID_ROLE))

    def _clicked(self, item: QListWidgetItem) -> None:
        """A click on a project's folder folds it shut or opens it (its menu does too, for the keyboard); a
        click on the conversation already selected opens it again (a search result: at the message found)."""
        project = item.data(PROJECT_ROLE)
        if item.data(ID_ROLE) is not None and item is self.list.currentItem() and not self._populating:
            self.conversationSelected.emit(item.data(ID_ROLE))
        elif item.data(ID_ROLE) is None and project is not None:
            self.toggle_project(project)
            folder = self.project_item(project)
            if folder is not None:
                self._populating = True
                self.list.setCurrentItem(folder)
                self._populating = False

    def _item_edited(self, item: QListWidgetItem) -> None:
        if not self._populating and item.data(ID_ROLE) is not None:
            self.renameRequested.emit(item.data(ID_ROLE), item.text())

    def _emit_for_current(self, emit) -> None:
        item = self.list.currentItem()
        if item is not None and item.data(ID_ROLE) is not None:
            emit(item.data(ID_ROLE))

    def _menu_for_current(self) -> None:
        item = self.list.currentItem()
        if item is not None:
            self.menu_for(item).popup(self.list.viewport().mapToGlobal(self.list.visualItemRect(item).center()))

    def _context_menu(self, pos) -> None:
        item = self.list.itemAt(pos)
        if item is not None:
            self.menu_for(item).popup(self.list.viewport().mapToGlobal(pos))

    def menu_for(self, item: QListWidgetItem) -> QMenu:
        """A row's menu: a conversation's (rename, pin, duplicate, move to project, delete) or a project's."""
        menu = QMenu(self)
        conversation_id = item.data(ID_ROLE)
        if conversation_id is None:
            project = item.data(PROJECT_ROLE)
            shut = project in self.collapsed
            for key, text in (
                ("new_chat", "New chat in this project"),
                ("search", "Search in this project"),
                ("rename", "Rename project…"),
                ("settings", "Project settings…"),
                ("delete", "Delete project…"),
            ):
                action = menu.addAction(text)
                action.setObjectName(f"project_{key}")
                action.triggered.connect(lambda _c=False, k=key: self._project_action(k, project))
            fold = menu.addAction("Open folder" if shut else "Fold folder")
            fold.triggered.connect(lambda: self.toggle_project(project))
            return menu
        pinned = bool(item.data(PINNED_ROLE))
        menu.addAction("Rename", lambda: self.list.editItem(item)).setObjectName("conversation_rename")
        pin = menu.addAction("Unpin" if pinned else "Pin to top")
        pin.setObjectName("conversation_pin")
        pin.triggered.connect(lambda: self.pinRequested.emit(conversation_id, not pinned))
        duplicate = menu.addAction("Duplicate")
        duplicate.setObjectName("conversation_duplicate")
        duplicate.triggered.connect(lambda: self.duplicateRequested.emit(conversation_id))
        move = menu.addMenu("Move to project")
        move.setObjectName("conversation_move")
        here = item.data(PROJECT_ROLE)
        out = move.addAction("No project")
        out.setEnabled(here is not None)
        out.triggered.connect(lambda: self.moveRequested.emit(conversation_id, None))
        if self.projects:
            move.addSeparator()
        for project in self.projects:
            action = move.addAction(mnemonic_safe(project.name))
            action.setEnabled(project.id != here)
            action.triggered.connect(lambda _c=False, p=project.id: self.moveRequested.emit(conversation_id, p))
        move.addSeparator()
        move.addAction("New project…", lambda: self.newProjectRequested.emit(conversation_id))
        menu.addSeparator()
        menu.addAction("Delete", lambda: self.deleteRequested.emit(conversation_id)).setObjectName(
            "conversation_delete"
        )
        return menu

    def _project_action(self, key: str, project_id: int) -> None:
        if key == "search":
            self.set_scope(project_id)
            self.search.setFocus()
            return
        self.projectMenuRequested.emit(key, project_id)


def _pinned_first(rows):
    return sorted(rows, key=lambda r: not getattr(r[0], "pinned", False))
