"""What the tools are now, for the Tools panel and the tool pickers: read off the GUI thread, newest wins.

The registry (engine/tools/registry.py) calls ``on_change`` listeners from any thread (its MCP loop, a
settings change); a listener here only emits a queued signal. Reading the servers' state takes the MCP
host's lock and, the first time, reads mcp.json, so it runs on the background pool (``ui/ops.py``), one
read at a time; a change during a read asks for one more.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from PySide6.QtCore import QObject, Signal

from engine.tools.base import ToolSpec
from engine.tools.config import ToolsConfig
from ui.errors import describe
from ui.ops import run_in_background

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ToolsSnapshot:
    """The tools at one moment: built-ins with why one is off, MCP servers with their state, the settings."""

    builtins: tuple = ()  # BuiltinStatus
    servers: tuple = ()  # ServerStatus
    problems: tuple[str, ...] = ()  # what was wrong in mcp.json
    config: ToolsConfig = field(default_factory=ToolsConfig)
    read_at: float = 0.0  # time.monotonic() of the read (a retry countdown counts from it)
    error: str | None = None  # the read itself failed (words)

    def usable(self) -> list[ToolSpec]:
        """The tools a conversation may pick now: built-ins that can run and running servers' tools that
        are switched on."""
        specs = [b.spec for b in self.builtins if b.available]
        specs += [t for s in self.servers for t in s.tools if not self.config.is_disabled(t.name)]
        return specs


def read_snapshot(registry) -> ToolsSnapshot:
    """One consistent-enough read of the registry (not on the GUI thread)."""
    servers = tuple(registry.servers())  # first: it reads mcp.json on first use, which sets the problems
    return ToolsSnapshot(
        tuple(registry.builtins()), servers, tuple(registry.mcp_problems), registry.config, time.monotonic()
    )


class ToolsWatch(QObject):
    """Follows a ToolRegistry: ``changed`` carries a new ToolsSnapshot after each change (and the first read)."""

    changed = Signal(object)  # ToolsSnapshot
    _poked = Signal()  # from any thread: something changed

    def __init__(self, registry, parent: QObject | None = None):
        super().__init__(parent)
        self.registry = registry
        self.latest: ToolsSnapshot | None = None
        self._reading = False
        self._again = False
        self._poked.connect(self.refresh)  # queued when emitted off the GUI thread
        poked = self._poked

        def listener() -> None:
            try:
                poked.emit()
            except RuntimeError:  # this watch was deleted; the unsubscribe below is on its way
                pass

        unsubscribe = registry.on_change(listener)
        self._unsubscribe = unsubscribe
        self.destroyed.connect(lambda *_: unsubscribe())

    def close(self) -> None:
        """Stop following the registry (also done when the watch is deleted)."""
        self._unsubscribe()

    def refresh(self) -> None:
        """Read the tools again in the background; ``changed`` follows."""
        if self._reading:
            self._again = True
            return
        self._reading = True
        registry = self.registry

        def done(snapshot: ToolsSnapshot) -> None:
            self._reading = False
            self.latest = snapshot
            self.changed.emit(snapshot)
            if self._again:
                self._again = False
                self.refresh()

        def failed(exc: BaseException) -> None:
            log.warning("could not read the tools: %s", exc)
            done(ToolsSnapshot(error=describe(exc), read_at=time.monotonic()))

        run_in_background(lambda: read_snapshot(registry), done, failed, owner=self)
