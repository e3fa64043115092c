"""What the tools are allowed to do: the engine's view of the [tools] settings (app/settings.py builds it)."""

from __future__ import annotations

from dataclasses import dataclass

from engine.tools.results import DEFAULT_RESULT_MAX_CHARS

BUILTIN_NAMES = ("search_documents", "read_file", "fetch_page", "calculator", "current_time")


@dataclass(frozen=True)
class ToolsConfig:
    """The tool settings the registry and the built-ins read (replaced whole when settings change)."""

    disabled: tuple[str, ...] = ()  # tools switched off: built-ins by name, MCP tools "server/tool", "server/*"
    allowed_folders: tuple[str, ...] = ()  # read_file reads only inside these
    fetch_enabled: bool = False  # fetch_page may go to the network (the only thing in Locus that does)
    fetch_private: bool = False  # ... and may also fetch from this computer and the local network
    trusted: tuple[str, ...] = ()  # tools that run without asking (names, or "server/*")
    call_timeout_s: float = 30.0  # one call's time limit
    result_max_chars: int = DEFAULT_RESULT_MAX_CHARS  # longer results are cut, with a note

    def is_disabled(self, name: str) -> bool:
        """Whether a tool (or its whole MCP server) is switched off."""
        server = name.split("/", 1)[0] + "/*" if "/" in name else None
        return name in self.disabled or (server is not None and server in self.disabled)

    def is_trusted(self, name: str) -> bool:
        """Whether a tool runs without asking: named in ``trusted`` (or its server as "server/*")."""
        server = name.split("/", 1)[0] + "/*" if "/" in name else None
        return name in self.trusted or (server is not None and server in self.trusted)
