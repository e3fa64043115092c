"""Wires the Tools panel to the tool registry and the [tools] settings: servers started, stopped and read
again, tools switched on, off and trusted, folders for read_file, fetch_page's network switch, mcp.json.

Nothing here blocks the GUI thread: the registry's calls, settings saves and file reads run on the
background pool; the registry's changes come back through a ToolsWatch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDockWidget, QFileDialog, QMainWindow

from engine.errors import EngineError
from engine.tools.mcp_config import MCP_FILE, import_servers
from ui.errors import describe, show_error
from ui.ops import run_in_background
from ui.plain import message_box
from ui.tools.mcp_editor import McpEditor
from ui.tools.panel import ToolsPanel
from ui.tools.watch import ToolsWatch

log = logging.getLogger(__name__)

OTHER_APPS = (  # where other apps keep their MCP servers (the import dialog starts in the first that exists)
    "~/.config/Claude",
    "~/Library/Application Support/Claude",
    "~/AppData/Roaming/Claude",
    "~/.cursor",
    "~/.lmstudio",
)


def toggled(names: list[str] | tuple[str, ...], name: str, present: bool) -> list[str]:
    """``names`` with ``name`` in it (``present``) or not, order kept."""
    kept = [n for n in names if n != name]
    return [*kept, name] if present else kept


class ToolsController(QObject):
    """The Tools dock of the main window, and the one ToolsWatch the window's pickers follow."""

    def __init__(self, window: QMainWindow, services):
        super().__init__(window)
        self.window = window
        self.services = services
        self.registry = services.tools
        self.watch = ToolsWatch(self.registry, self)
        self.panel = ToolsPanel(window)
        self.dock = QDockWidget("Tools", window)
        self.dock.setObjectName("toolsDock")
        self.dock.setWidget(self.panel)
        window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock)
        self.dock.hide()  # opened from View › Tools or a tool picker
        self.toggle_action: QAction = self.dock.toggleViewAction()
        self.toggle_action.setText("&Tools and MCP servers")
        self.toggle_action.setShortcut(QKeySequence("Ctrl+Shift+L"))
        self.dock.visibilityChanged.connect(lambda visible: visible and self.watch.refresh())
        self.editor: McpEditor | None = None
        self._starting: dict[str, str] = {}  # server name -> the status-bar words saying it is starting
        self.watch.changed.connect(self.panel.show_snapshot)
        self.watch.changed.connect(self._started)
        panel = self.panel
        panel.startRequested.connect(self.start_server)
        panel.stopRequested.connect(self.stop_server)
        panel.reloadRequested.connect(self.reload)
        panel.editRequested.connect(self.edit_mcp)
        panel.importRequested.connect(self.choose_import)
        panel.enabledToggled.connect(self.set_enabled)
        panel.trustedToggled.connect(self.set_trusted)
        panel.fetchToggled.connect(lambda on: self._change("tools.fetch_enabled", lambda _t: on))
        panel.folderAdded.connect(
            lambda folder: self._change("tools.allowed_folders", lambda t: toggled(t.allowed_folders, folder, True))
        )
        panel.folderRemoved.connect(
            lambda folder: self._change("tools.allowed_folders", lambda t: toggled(t.allowed_folders, folder, False))
        )

    @property
    def mcp_file(self) -> Path:
        return Path(self.services.paths.config_dir) / MCP_FILE

    def open(self) -> None:
        """Show the panel (beside the Documents panel) and read the tools again."""
        self.dock.show()
        self.dock.raise_()
        self.watch.refresh()

    # Servers ------------------------------------------------------------------------------

    def _registry_call(self, fn: Callable[[], object], title: str, done: Callable[[object], None] | None = None):
        run_in_background(fn, done, lambda exc: self._failed(title, exc), owner=self.window)

    def _failed(self, title: str, exc: BaseException) -> None:
        self.window.statusBar().showMessage(f"{title}: {describe(exc)}", 10000)
        self.watch.refresh()

    def start_server(self, name: str) -> None:
        """Start (or start again) an MCP server; its state comes back through the watch."""
        registry = self.registry
        words = f"Starting the MCP server {name}…"
        self._starting[name] = words
        self.window.statusBar().showMessage(words, 10000)
        self._registry_call(lambda: registry.start_server(name, wait_s=0), "Could not start the server")

    def _started(self, snapshot) -> None:
        """A server asked to start is running or failed: the status bar no longer says it is starting."""
        bar = self.window.statusBar()
        for server in snapshot.servers:
            words = self._starting.get(server.name)
            if words is not None and server.state in ("running", "failed"):
                del self._starting[server.name]
                if bar.currentMessage() == words:
                    bar.clearMessage()

    def stop_server(self, name: str) -> None:
        registry = self.registry
        self._registry_call(lambda: registry.stop_server(name), "Could not stop the server")

    def reload(self) -> None:
        """Read mcp.json again (changed servers stop; new ones are listed)."""
        registry = self.registry
        self._registry_call(registry.reload_servers, "Could not read mcp.json")

    # Settings -----------------------------------------------------------------------------

    def _change(self, key: str, value: Callable) -> None:
        """Save one [tools] setting, computed from the settings as they are when the change applies (so a
        change made meanwhile elsewhere is kept)."""
        services = self.services

        def save() -> bool:
            return services.update_settings(lambda current: current.with_value(key, value(current.tools)))

        run_in_background(
            save,
            lambda _reload: self.watch.refresh(),
            lambda exc: (show_error(self.window, "Tools", exc), self.watch.refresh()),
            owner=self.window,
        )

    def set_enabled(self, name: str, on: bool) -> None:
        """Switch a tool (a built-in, "server/tool", or a whole server as "server/*") on or off."""
        self._change("tools.disabled", lambda t: toggled(t.disabled, name, not on))

    def set_trusted(self, name: str, trusted: bool) -> None:
        """Let a tool (or a whole server, "server/*") run without asking, or make it ask again."""
        self._change("tools.trusted", lambda t: toggled(t.trusted, name, trusted))

    # mcp.json -----------------------------------------------------------------------------

    def edit_mcp(self) -> McpEditor:
        """Open mcp.json in the editor; saving it reads the servers again."""
        if self.editor is not None:
            self.editor.raise_()
            return self.editor
        self.editor = McpEditor(self.mcp_file, self.window)
        self.editor.saved.connect(self.reload)
        self.editor.destroyed.connect(lambda *_: setattr(self, "editor", None))
        self.editor.open()
        return self.editor

    def choose_import(self) -> None:
        start = next((Path(p).expanduser() for p in OTHER_APPS if Path(p).expanduser().is_dir()), Path.home())
        path, _filter = QFileDialog.getOpenFileName(
            self.window, "Import MCP servers from another app", str(start), "MCP settings (*.json);;All files (*)"
        )
        if path:
            self.import_file(Path(path))

    def import_file(self, source: Path) -> None:
        """Add another app's servers (Claude Desktop, Cursor, LM Studio, VS Code) to mcp.json; their secrets
        go to the system keyring."""
        target, secrets = self.mcp_file, getattr(self.services, "secrets", None)

        def store(name: str, value: str) -> bool:
            if secrets is None:
                return False
            try:
                secrets.set(name, value)
            except EngineError:  # no keyring: the user stores it later (the report says how)
                return False
            return True

        run_in_background(
            lambda: import_servers(source, target, store),
            self._imported,
            lambda exc: show_error(self.window, "Import MCP servers", exc),
            owner=self.window,
        )

    def _imported(self, outcome) -> None:
        lines = [f"Added {name}." for name in outcome.added]
        lines += [f"Kept {name} as it was (mcp.json already has a server of that name)." for name in outcome.skipped]
        lines += [f"Left out: {problem}" for problem in outcome.problems]
        lines += [f"Moved a secret into the system keyring as {name}." for name in outcome.secrets_stored]
        lines += [
            f"No system keyring: store the secret with `locus secrets set {name}` before using the server."
            for name in outcome.secrets_missing
        ]
        message_box(
            self.window,
            "Import MCP servers",
            "Imported." if outcome.added else "No server was imported.",
            informative="\n".join(lines),
            name="mcpImported",
        ).open()
        self.reload()
