"""The tools Locus can run: its built-ins and every MCP server's, by name, and the servers' state.

Built-ins are named by themselves ("calculator"); MCP tools as "server/tool". The registry reads
mcp.json when first asked about servers, starts a server the first time one of its tools is wanted
(``resolve``) or everything is listed with ``available(start=True)``, and stops them all on
``close``. Settings changes arrive whole through ``configure``. Callbacks given to ``on_change`` are
called (from any thread, with no argument) when a server's state or tools change or the settings do.
"""

from __future__ import annotations

import difflib
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from engine.tools.base import Tool, ToolSpec
from engine.tools.builtin import FETCH_OFF, LibrarySource, builtin_tools
from engine.tools.config import BUILTIN_NAMES, ToolsConfig
from engine.tools.errors import McpConfigError, ToolUnavailableError, UnknownToolError
from engine.tools.mcp_config import ServerStatus, load_servers

if TYPE_CHECKING:
    from engine.tools.mcp import McpHost

log = logging.getLogger(__name__)

SecretSource = Callable[[str], "str | None"]  # a keyring name ("mcp.github") -> its value, or None
START_WAIT_S = 30.0  # how long resolve waits for a server it started to list its tools


@dataclass(frozen=True)
class BuiltinStatus:
    """A built-in tool as the Tools panel shows it: on or off, and why it is off."""

    spec: ToolSpec
    available: bool
    reason: str | None  # why it is not available, in words (None when it is)


class ToolRegistry:
    """Every tool Locus can run now, and the MCP servers behind some of them. Safe to share between threads."""

    def __init__(
        self,
        config: ToolsConfig,
        *,
        library: LibrarySource | None = None,
        mcp_file: Path | None = None,
        secret: SecretSource | None = None,
        mcp_options: dict | None = None,
    ):
        self._config = config
        self._library = library or (lambda: None)
        self._mcp_file = mcp_file
        self._secret = secret or (lambda _name: None)
        self._mcp_options = dict(mcp_options or {})  # passed to McpHost (tests: shorter backoff and start limits)
        self._builtins = builtin_tools(lambda: self._config, self._library)
        self._lock = threading.Lock()
        self._host: McpHost | None = None
        self._mcp_problems: tuple[str, ...] = ()
        self._listeners: list[Callable[[], None]] = []
        self._closed = False

    # Settings -------------------------------------------------------------------------------

    @property
    def config(self) -> ToolsConfig:
        return self._config

    def configure(self, config: ToolsConfig) -> None:
        """Use new tool settings from the next call on."""
        self._config = config
        host = self._host
        if host is not None:
            host.configure(call_timeout_s=config.call_timeout_s, result_max_chars=config.result_max_chars)
        self._changed()

    def needs_approval(self, name: str) -> bool:
        """Whether a call of ``name`` waits for the user's approval (every tool not marked trusted)."""
        return not self._config.is_trusted(name)

    # What exists ----------------------------------------------------------------------------

    def builtins(self) -> list[BuiltinStatus]:
        """The five built-ins, each with whether it can run now and why not."""
        return [
            BuiltinStatus(tool.spec, reason is None, reason)
            for tool in self._builtins.values()
            for reason in [self._builtin_off(tool.spec.name)]
        ]

    def available(self, *, start: bool = False, wait_s: float = 0.0) -> list[ToolSpec]:
        """Every tool that can run now: the built-ins switched on, and the tools of MCP servers that are running.

        ``start``: start every configured server that has not been started yet (their first use), and wait up
        to ``wait_s`` seconds for them to list their tools.
        """
        specs = [s.spec for s in self.builtins() if s.available]
        host = self._mcp_host() if start else self._host
        if host is not None:
            if start:
                host.start_all(wait_s=wait_s)
            for status in host.statuses():
                specs.extend(t for t in status.tools if not self._config.is_disabled(t.name))
        return specs

    def resolve(self, names: Iterable[str]) -> list[Tool]:
        """The tools named, in order, starting MCP servers as needed; raises UnknownToolError or
        ToolUnavailableError naming the first that is unknown or cannot run."""
        tools: list[Tool] = []
        for name in names:
            if name in self._builtins:
                reason = self._builtin_off(name)
                if reason is not None:
                    raise ToolUnavailableError(f"The tool '{name}' cannot run: {reason}")
                tools.append(self._builtins[name])
            elif "/" in name:
                tools.append(self._resolve_mcp(name))
            else:
                raise UnknownToolError(f"There is no tool '{name}'.", hint=self._hint(name))
        return tools

    def servers(self) -> list[ServerStatus]:
        """Every MCP server in mcp.json with its state, error, stderr tail and tools (nothing is started)."""
        host = self._mcp_host()
        return host.statuses() if host is not None else []

    @property
    def mcp_problems(self) -> tuple[str, ...]:
        """What was wrong in mcp.json when it was read (a bad entry is left out; the others work)."""
        self._mcp_host()
        return self._mcp_problems

    # Servers ------------------------------------------------------------------------------

    def start_server(self, name: str, wait_s: float = 0.0) -> ServerStatus:
        """Start a server (again, if it failed or stopped) and wait up to ``wait_s`` for it to be running."""
        host = self._require_host(name)
        return host.start(name, wait_s=wait_s, again=True)

    def stop_server(self, name: str) -> None:
        """Stop a server (its tools are gone until it is started again)."""
        self._require_host(name).stop(name)

    def reload_servers(self) -> None:
        """Read mcp.json again: servers removed or changed are stopped, new ones are listed (not started)."""
        servers, problems = load_servers(self._mcp_file) if self._mcp_file is not None else ({}, [])
        with self._lock:
            self._mcp_problems = tuple(problems)
            host = self._host
        if host is not None:
            host.replace_servers(servers)
        self._changed()

    def on_change(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` (from any thread) whenever servers or settings change; returns an unsubscribe."""
        with self._lock:
            self._listeners.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._listeners:
                    self._listeners.remove(callback)

        return unsubscribe

    def close(self) -> None:
        """Stop every MCP server (their processes and those they started) and the loop that runs them."""
        with self._lock:
            self._closed = True
            host, self._host = self._host, None
            self._listeners.clear()
        if host is not None:
            host.close()

    # Inside --------------------------------------------------------------------------------

    def _builtin_off(self, name: str) -> str | None:
        config = self._config
        if config.is_disabled(name):
            return "it is switched off in Settings > Tools."
        if name == "fetch_page" and not config.fetch_enabled:
            return FETCH_OFF
        if name == "read_file" and not config.allowed_folders:
            return "no folder is allowed for reading files (Settings > Tools > Allowed folders)."
        return None

    def read_resource(self, server: str, uri: str, timeout_s: float | None = None) -> str:
        """A resource of an MCP server, as plain text (the server is started when it is not running)."""
        return self._running_host().read_resource(server, uri, timeout_s)

    def get_prompt(self, server: str, name: str, arguments: dict | None = None, timeout_s: float | None = None) -> str:
        """A prompt of an MCP server filled with ``arguments``, as plain text."""
        return self._running_host().get_prompt(server, name, arguments, timeout_s)

    def _running_host(self) -> McpHost:
        host = self._mcp_host()
        if host is None:
            raise McpConfigError("No MCP servers are configured (mcp.json) or the tools were closed.")
        return host

    def _mcp_host(self) -> McpHost | None:
        """The MCP host, made on first use from mcp.json (no thread or process starts until a server does)."""
        with self._lock:
            if self._host is not None or self._closed or self._mcp_file is None:
                return self._host
            servers, problems = load_servers(self._mcp_file)
            self._mcp_problems = tuple(problems)
            for problem in problems:
                log.warning("mcp.json: %s", problem)
            from engine.tools.mcp import McpHost

            config = self._config
            self._host = McpHost(
                servers,
                secret=self._secret,
                on_change=self._changed,
                call_timeout_s=config.call_timeout_s,
                result_max_chars=config.result_max_chars,
                **self._mcp_options,
            )
            return self._host

    def _require_host(self, name: str) -> McpHost:
        host = self._mcp_host()
        if host is None or name not in host.server_names():
            raise UnknownToolError(
                f"There is no MCP server '{name}' in mcp.json.",
                hint=_did_you_mean(name, host.server_names() if host else []),
            )
        return host

    def _resolve_mcp(self, name: str) -> Tool:
        server, _, tool = name.partition("/")
        if self._config.is_disabled(name):
            raise ToolUnavailableError(f"The tool '{name}' cannot run: it is switched off in Settings > Tools.")
        host = self._require_host(server)
        status = host.start(server, wait_s=START_WAIT_S)
        if status.state != "running" and not status.tools:
            why = status.error or f"the server is {status.state}"
            raise ToolUnavailableError(
                f"The MCP server '{server}' is not running: {why}", detail=status.stderr_tail or None
            )
        found = host.tool(server, tool)
        if found is None:
            names = [t.name for t in status.tools]
            raise UnknownToolError(
                f"The MCP server '{server}' has no tool '{tool}'.",
                hint=_did_you_mean(name, names)
                or (f"Its tools: {', '.join(names)}." if names else "It lists no tools."),
            )
        return found

    def _hint(self, name: str) -> str | None:
        names = list(BUILTIN_NAMES)
        host = self._host
        if host is not None:
            names += [t.name for s in host.statuses() for t in s.tools]
        return _did_you_mean(name, names) or (
            "Built-in tools: " + ", ".join(BUILTIN_NAMES) + "; MCP tools are named server/tool."
        )

    def _changed(self) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for callback in listeners:
            try:
                callback()
            except Exception:  # a listener's failure must not stop the others (or the MCP loop)
                log.exception("a tools listener failed")


def _did_you_mean(name: str, candidates: list[str]) -> str | None:
    close = difflib.get_close_matches(name, candidates, n=1)
    return f"Did you mean '{close[0]}'?" if close else None
