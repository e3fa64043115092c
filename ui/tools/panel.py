"""The Tools panel: MCP servers with their state and tools, the built-ins, and what each may do.

It shows a ToolsSnapshot (ui/tools/watch.py) and asks the controller to act through signals; it never
touches the registry or the settings itself. Every name, description, error and stderr line a server
sends is untrusted text: tree items (plain by nature), plain labels and read-only plain-text boxes.
"""

from __future__ import annotations

import time

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QListWidget,
    QPushButton,
    QTabWidget,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from engine.tools.mcp_config import ServerStatus
from ui.chat.tool_calls import PlainBox
from ui.plain import literal, mnemonic_safe, plain_label
from ui.tools.watch import ToolsSnapshot

NAME_ROLE = Qt.ItemDataRole.UserRole  # the tool's name ("server/tool", a built-in's, or "server/*")
KIND_ROLE = Qt.ItemDataRole.UserRole + 1  # "server", "tool", "builtin", "group", "resource", "prompt"
ENABLED, STATUS, TRUSTED = 0, 1, 2
MAX_TIP = 400  # characters of a description in a tooltip

STATE_WORDS = {
    "stopped": "stopped",
    "starting": "starting…",
    "running": "running",
    "failed": "failed",
}
NETWORK_NOTE = (
    "fetch_page is the only thing in Locus that goes to the internet. It is off unless you turn it on here; "
    "MCP servers you add may use the network too (a server at a URL always does)."
)


def server_words(server: ServerStatus, now_s: float | None = None, read_at: float = 0.0) -> str:
    """One line of a server's state: 'running · 9 tools', 'failed', 'restarting in 3 s'."""
    if server.retry_in_s is not None:
        left = server.retry_in_s - ((now_s if now_s is not None else time.monotonic()) - read_at)
        return f"restarting in {max(0, round(left))} s"
    words = STATE_WORDS.get(server.state, server.state)
    if server.state == "running":
        count = len(server.tools)
        words += f" · {count} tool{'s' * (count != 1)}"
    return words


def _clip(text: str) -> str:
    """A description on one line, cut to MAX_TIP characters (for a tooltip, through literal)."""
    return " ".join((text or "").split())[:MAX_TIP]


class ToolsPanel(QWidget):
    startRequested = Signal(str)  # server name
    stopRequested = Signal(str)
    reloadRequested = Signal()  # read mcp.json again
    editRequested = Signal()  # open mcp.json in the editor
    importRequested = Signal()  # import another app's MCP servers
    enabledToggled = Signal(str, bool)  # tool name (or "server/*"), switched on?
    trustedToggled = Signal(str, bool)  # tool name (or "server/*"), runs without asking?
    fetchToggled = Signal(bool)  # fetch_page may go to the network
    folderAdded = Signal(str)  # a folder read_file may read
    folderRemoved = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("toolsPanel")
        self.snapshot = ToolsSnapshot()
        self.selected_server: str | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)

        self.tabs = QTabWidget(self)
        self.tabs.setObjectName("toolsTabs")
        layout.addWidget(self.tabs, 1)

        servers = QWidget(self.tabs)
        column = QVBoxLayout(servers)
        actions = QHBoxLayout()
        self.edit_button = self._button("Edit mcp.json…", "editMcp", self.editRequested, "Add or change MCP servers")
        self.import_button = self._button(
            "Import…", "importMcp", self.importRequested, "Add the MCP servers of Claude Desktop, Cursor or LM Studio"
        )
        self.reload_button = self._button(
            "Reload", "reloadMcp", self.reloadRequested, "Read mcp.json again (changed servers are restarted)"
        )
        for button in (self.edit_button, self.import_button, self.reload_button):
            actions.addWidget(button)
        actions.addStretch(1)
        column.addLayout(actions)
        self.problems = plain_label("", servers, name="mcpProblems", wrap=True, selectable=True)
        self.problems.hide()
        column.addWidget(self.problems)
        self.no_servers = plain_label(
            "No MCP servers yet. Add one with Edit mcp.json… or Import… (or `locus mcp import` in a terminal).",
            servers,
            name="noServers",
            wrap=True,
        )
        column.addWidget(self.no_servers)
        self.server_tree = self._tree("serverTree", ("Server and tools", "Status", "Trusted"), servers)
        self.server_tree.currentItemChanged.connect(lambda item, _prev: self._select_item(item))
        column.addWidget(self.server_tree, 3)

        detail = QFrame(servers)
        self.detail = detail
        detail.setObjectName("serverDetail")
        detail.setFrameShape(QFrame.Shape.StyledPanel)
        box = QVBoxLayout(detail)
        box.setContentsMargins(8, 6, 8, 6)
        self.server_title = plain_label("", detail, name="serverTitle", wrap=True, selectable=True, bold=True)
        self.server_target = plain_label("", detail, name="serverTarget", wrap=True, selectable=True)
        self.server_state = plain_label("", detail, name="serverState", wrap=True, selectable=True)
        self.stderr_title = plain_label("What it wrote to stderr last:", detail, name="stderrTitle")
        self.stderr = PlainBox("", detail, name="serverStderr", max_lines=6)
        buttons = QHBoxLayout()
        self.start_button = QPushButton("Start", detail)
        self.start_button.setObjectName("startServer")
        self.start_button.clicked.connect(self._start_selected)
        self.stop_button = QPushButton("Stop", detail)
        self.stop_button.setObjectName("stopServer")
        self.stop_button.clicked.connect(self._stop_selected)
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.stop_button)
        buttons.addStretch(1)
        for widget in (self.server_title, self.server_target, self.server_state, self.stderr_title, self.stderr):
            box.addWidget(widget)
        box.addLayout(buttons)
        column.addWidget(detail)
        self.tabs.addTab(servers, "MCP servers")

        builtins = QWidget(self.tabs)
        column = QVBoxLayout(builtins)
        self.builtin_tree = self._tree("builtinTree", ("Tool", "Status", "Trusted"), builtins)
        column.addWidget(self.builtin_tree, 1)
        self.reasons = plain_label("", builtins, name="builtinReasons", wrap=True, selectable=True)
        column.addWidget(self.reasons)
        self.fetch = QCheckBox("Let fetch_page read web pages", builtins)
        self.fetch.setObjectName("fetchEnabled")
        self.fetch.toggled.connect(self.fetchToggled)
        column.addWidget(self.fetch)
        column.addWidget(plain_label(NETWORK_NOTE, builtins, name="networkNote", wrap=True))
        column.addWidget(plain_label("Folders read_file may read:", builtins, name="foldersTitle"))
        self.folders = QListWidget(builtins)
        self.folders.setObjectName("allowedFolders")
        self.folders.setMaximumHeight(90)
        column.addWidget(self.folders)
        folder_buttons = QHBoxLayout()
        self.add_folder_button = self._button("Add folder…", "addAllowedFolder", self._choose_folder)
        self.remove_folder_button = self._button("Remove", "removeAllowedFolder", self._remove_folder)
        folder_buttons.addWidget(self.add_folder_button)
        folder_buttons.addWidget(self.remove_folder_button)
        folder_buttons.addStretch(1)
        column.addLayout(folder_buttons)
        self.tabs.addTab(builtins, "Built-in tools")

        self.server_tree.itemChanged.connect(self._item_changed)
        self.builtin_tree.itemChanged.connect(self._item_changed)
        self._countdown = QTimer(self)
        self._countdown.setInterval(1000)
        self._countdown.timeout.connect(self._tick)
        self.show_snapshot(self.snapshot)

    def _button(self, text: str, name: str, slot, tip: str = "") -> QPushButton:
        button = QPushButton(text, self)
        button.setObjectName(name)
        button.setToolTip(literal(tip))
        button.clicked.connect(slot)
        return button

    def _tree(self, name: str, headers: tuple[str, ...], parent: QWidget) -> QTreeWidget:
        tree = QTreeWidget(parent)
        tree.setObjectName(name)
        tree.setHeaderLabels(list(headers))
        tree.setUniformRowHeights(True)
        header = tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(ENABLED, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(STATUS, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(TRUSTED, QHeaderView.ResizeMode.ResizeToContents)
        return tree

    # Showing -----------------------------------------------------------------------------

    def show_snapshot(self, snapshot: ToolsSnapshot) -> None:
        """Show the tools as they are now, keeping what was open and selected."""
        self.snapshot = snapshot
        problems = list(snapshot.problems) + ([snapshot.error] if snapshot.error else [])
        self.problems.setText("\n".join(problems))
        self.problems.setVisible(bool(problems))
        self._fill_servers(snapshot)
        self._fill_builtins(snapshot)
        self.fetch.blockSignals(True)
        self.fetch.setChecked(snapshot.config.fetch_enabled)
        self.fetch.blockSignals(False)
        folders = list(snapshot.config.allowed_folders)
        if [self.folders.item(i).text() for i in range(self.folders.count())] != folders:
            self.folders.clear()
            self.folders.addItems(folders)
        self.remove_folder_button.setEnabled(bool(folders))
        self._show_server()

    def server_item(self, name: str) -> QTreeWidgetItem | None:
        for index in range(self.server_tree.topLevelItemCount()):
            item = self.server_tree.topLevelItem(index)
            if item.data(ENABLED, NAME_ROLE) == f"{name}/*":
                return item
        return None

    def tool_item(self, name: str) -> QTreeWidgetItem | None:
        """The item of a tool (built-in or "server/tool") in either tree."""
        for tree in (self.server_tree, self.builtin_tree):
            stack = [tree.topLevelItem(i) for i in range(tree.topLevelItemCount())]
            while stack:
                item = stack.pop()
                if item.data(ENABLED, NAME_ROLE) == name and item.data(ENABLED, KIND_ROLE) in ("tool", "builtin"):
                    return item
                stack += [item.child(i) for i in range(item.childCount())]
        return None

    def _checkable(self, item: QTreeWidgetItem, name: str, kind: str, config) -> None:
        item.setData(ENABLED, NAME_ROLE, name)
        item.setData(ENABLED, KIND_ROLE, kind)
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
        on = name not in config.disabled if kind == "server" else not config.is_disabled(name)
        item.setCheckState(ENABLED, Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)
        trusted = name in config.trusted if kind == "server" else config.is_trusted(name)
        item.setCheckState(TRUSTED, Qt.CheckState.Checked if trusted else Qt.CheckState.Unchecked)

    def _fill_servers(self, snapshot: ToolsSnapshot) -> None:
        tree = self.server_tree
        expanded = {
            tree.topLevelItem(i).data(ENABLED, NAME_ROLE)
            for i in range(tree.topLevelItemCount())
            if tree.topLevelItem(i).isExpanded()
        }
        tree.blockSignals(True)
        tree.clear()
        for server in snapshot.servers:
            item = QTreeWidgetItem(tree, [server.name, server_words(server, read_at=snapshot.read_at), ""])
            self._checkable(item, f"{server.name}/*", "server", snapshot.config)
            item.setToolTip(ENABLED, literal(_clip(f"{server.transport}: {server.target}")))
            item.setToolTip(TRUSTED, "Every tool of this server runs without asking")
            for spec in server.tools:
                child = QTreeWidgetItem(item, [spec.name.split("/", 1)[-1], "read-only" if spec.read_only else "", ""])
                self._checkable(child, spec.name, "tool", snapshot.config)
                child.setToolTip(ENABLED, literal(_clip(spec.description)))
            for kind, title, entries in (
                ("resource", "Resources", [(r.name or r.uri, r.uri, r.description) for r in server.resources]),
                ("prompt", "Prompts", [(p.name, ", ".join(p.arguments), p.description) for p in server.prompts]),
            ):
                if not entries:
                    continue
                group = QTreeWidgetItem(item, [f"{title} ({len(entries)})", "", ""])
                group.setData(ENABLED, KIND_ROLE, "group")
                for name, what, description in entries:
                    entry = QTreeWidgetItem(group, [name, what, ""])
                    entry.setData(ENABLED, KIND_ROLE, kind)
                    entry.setToolTip(ENABLED, literal(_clip(description)))
            item.setExpanded(item.data(ENABLED, NAME_ROLE) in expanded or (bool(server.tools) and not expanded))
        tree.blockSignals(False)
        names = [s.name for s in snapshot.servers]
        self.no_servers.setVisible(not names)
        tree.setVisible(bool(names))
        self.detail.setVisible(bool(names))
        if self.selected_server not in names:
            failed = [s.name for s in snapshot.servers if s.state == "failed"]
            self.selected_server = (failed or names or [None])[0]
        item = self.server_item(self.selected_server) if self.selected_server else None
        if item is not None:
            tree.blockSignals(True)
            tree.setCurrentItem(item)
            tree.blockSignals(False)

    def _fill_builtins(self, snapshot: ToolsSnapshot) -> None:
        tree = self.builtin_tree
        tree.blockSignals(True)
        tree.clear()
        for builtin in snapshot.builtins:
            spec = builtin.spec
            item = QTreeWidgetItem(tree, [spec.name, "on" if builtin.available else "off", ""])
            self._checkable(item, spec.name, "builtin", snapshot.config)
            item.setToolTip(ENABLED, literal(_clip(spec.description)))
            item.setToolTip(STATUS, literal(builtin.reason or ""))
        tree.blockSignals(False)
        self.reasons.setText(
            "\n".join(f"{b.spec.name}: {b.reason}" for b in snapshot.builtins if not b.available and b.reason)
        )

    def selected(self) -> ServerStatus | None:
        return next((s for s in self.snapshot.servers if s.name == self.selected_server), None)

    def _select_item(self, item: QTreeWidgetItem | None) -> None:
        while item is not None and item.parent() is not None:
            item = item.parent()
        if item is not None:
            self.selected_server = str(item.data(ENABLED, NAME_ROLE)).removesuffix("/*")
            self._show_server()

    def _show_server(self) -> None:
        server = self.selected()
        if server is None:
            self._countdown.stop()
            return
        self.server_title.setText(f"{server.name} ({'command' if server.transport == 'stdio' else 'URL'})")
        self.server_target.setText(server.target)
        self.server_state.setText(self._state_words(server))
        self.server_state.setProperty("state", server.state)
        self.server_state.style().unpolish(self.server_state)
        self.server_state.style().polish(self.server_state)
        self.stderr.set_text(server.stderr_tail)
        self.stderr_title.setVisible(bool(server.stderr_tail))
        self.stderr.setVisible(bool(server.stderr_tail))
        self.start_button.setText(mnemonic_safe("Start again" if server.state in ("failed", "stopped") else "Start"))
        self.start_button.setEnabled(server.state in ("stopped", "failed"))
        self.stop_button.setEnabled(server.state in ("running", "starting") or server.retry_in_s is not None)
        if server.retry_in_s is not None:
            self._countdown.start()
        else:
            self._countdown.stop()

    def _state_words(self, server: ServerStatus) -> str:
        lines = []
        if server.state == "stopped":
            lines.append("Stopped: it starts when one of its tools is wanted, or with Start.")
        elif server.state == "failed":
            lines.append(f"Failed: {server.error or 'it stopped working'}")
        else:
            lines.append(server_words(server, read_at=self.snapshot.read_at).capitalize())
            if server.error:
                lines.append(server.error)
        if server.restarts:
            lines.append(f"Restarted {server.restarts} time{'s' * (server.restarts != 1)} after a crash.")
        return "\n".join(lines)

    def _tick(self) -> None:
        server = self.selected()
        if server is None or server.retry_in_s is None:
            self._countdown.stop()
            return
        self.server_state.setText(self._state_words(server))
        item = self.server_item(server.name)
        if item is not None:
            self.server_tree.blockSignals(True)
            item.setText(STATUS, server_words(server, read_at=self.snapshot.read_at))
            self.server_tree.blockSignals(False)

    # Acting ------------------------------------------------------------------------------

    def _item_changed(self, item: QTreeWidgetItem, column: int) -> None:
        name = item.data(ENABLED, NAME_ROLE)
        if not name or item.data(ENABLED, KIND_ROLE) not in ("server", "tool", "builtin"):
            return
        checked = item.checkState(column) == Qt.CheckState.Checked
        if column == ENABLED:
            self.enabledToggled.emit(name, checked)
        elif column == TRUSTED:
            self.trustedToggled.emit(name, checked)

    def _start_selected(self) -> None:
        if self.selected_server:
            self.startRequested.emit(self.selected_server)

    def _stop_selected(self) -> None:
        if self.selected_server:
            self.stopRequested.emit(self.selected_server)

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "A folder read_file may read")
        if folder:
            self.folderAdded.emit(folder)

    def _remove_folder(self) -> None:
        item = self.folders.currentItem() or (self.folders.item(0) if self.folders.count() == 1 else None)
        if item is not None:
            self.folderRemoved.emit(item.text())
