"""What a tool is to Locus: a name, a JSON schema for its arguments, and a ``run`` that is told to stop.

Tools come from three places: Locus's own (``builtin.py``), MCP servers (``mcp.py``), and, for the local
API, a client's own list (which the API never runs: it returns the calls). The model sees a tool's
``ToolSpec``; the agent loop runs a ``Tool``; what a tool returns is untrusted text (``ToolResult``),
shown as plain text and given back to the model as a ``tool`` message, never anything more.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

# A tool's name as the model and the user see it: built-ins by their own name ("search_documents"),
# MCP tools as "server/tool". Kept to what every chat template and JSON grammar can carry.
TOOL_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}(/[A-Za-z0-9_.-]{1,64})?$")

ToolStatus = Literal["ok", "error", "denied", "timeout", "cancelled"]
Approval = Literal["once", "conversation", "deny"]  # the user's answer to ApprovalNeeded
# "auto": the model decides; "none": no tool; "required": at least one call; or a tool's name: that tool.
ToolChoice = str


@dataclass(frozen=True)
class ToolSpec:
    """What the model is told about a tool."""

    name: str
    description: str
    parameters: dict  # a JSON schema of type "object"
    read_only: bool = False  # it only reads (MCP's readOnlyHint; built-ins say so themselves)
    source: str = "builtin"  # "builtin", "mcp:<server>", or "client" (a local API request's own tools)

    def __post_init__(self) -> None:
        if not TOOL_NAME.match(self.name):
            raise ValueError(f"a tool name must be letters, digits, '_', '.', '-' (and one '/'), not {self.name!r}")


@dataclass(frozen=True)
class ToolCall:
    """One call the model asked for (several may come in one turn)."""

    id: str  # unique within the answer ("call_1", or the id the model's own format gave)
    name: str
    arguments: dict  # parsed JSON, validated against the tool's schema before it runs
    raw: str = ""  # the call as the model wrote it (for traces and errors)
    # Set when the call does not parse, names no offered tool, or its arguments break the tool's schema:
    # why, in words. Such a call is never run; the agent loop gives the model this error as the result.
    error: str | None = None


@dataclass(frozen=True)
class ToolResult:
    """What one call returned: untrusted text for the model and the screen, never markup to render."""

    call_id: str
    status: ToolStatus
    text: str  # the result (capped; see ``truncated``), or the error in words when status != "ok"
    truncated: bool = False  # the result was longer than the cap and was cut (the text says so too)
    duration_s: float = 0.0
    citations: tuple = field(default=())  # search_documents: the passages' citations, as document answers have


@runtime_checkable
class Tool(Protocol):
    """A tool the agent loop can run."""

    spec: ToolSpec

    def run(self, arguments: dict, cancel: threading.Event, timeout_s: float) -> ToolResult:
        """Run with validated ``arguments``; return within ``timeout_s`` and soon after ``cancel`` is set
        (a tool that cannot be interrupted is abandoned by the loop, which reports a timeout)."""
        ...
