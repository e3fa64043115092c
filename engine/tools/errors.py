"""The typed errors of tools and MCP servers, each with words for people (see engine/errors.py)."""

from __future__ import annotations

from engine.errors import EngineError


class ToolError(EngineError):
    """Base of the errors about tools: which exist, which can run, how MCP servers are set up."""

    code = "tool_error"


class UnknownToolError(ToolError):
    """A tool was asked for by a name no built-in or MCP server has."""

    code = "unknown_tool"


class ToolUnavailableError(ToolError):
    """A tool exists but cannot run now: switched off, its setting missing, or its server failed."""

    code = "tool_unavailable"


class McpConfigError(ToolError):
    """mcp.json (or a file imported from another app) could not be read or has a bad entry."""

    code = "mcp_config"
