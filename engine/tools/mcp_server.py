"""Locus as an MCP server: its built-in tools offered to other MCP hosts over stdio (`locus mcp serve`).

Each call runs the tool on a worker thread with the call time limit; arguments are checked against the
tool's schema first. A host that cancels a request sets the tool's cancel event. search_documents'
citations travel beside the text as structured content ({"citations": [...]}, as document answers
describe them).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from engine.tools.base import Tool

INSTRUCTIONS = (
    "Locus's tools over the user's own computer: search_documents searches the documents the user "
    "indexed in Locus and returns numbered passages with their sources."
)


async def serve_stdio(tools: Sequence[Tool], *, version: str, timeout_s: float) -> None:
    """Serve ``tools`` over MCP on this process's stdin and stdout until the host closes stdin."""
    import anyio
    import anyio.to_thread
    import jsonschema
    from mcp.server import Server
    from mcp.server.stdio import stdio_server
    from mcp.types import CallToolResult, ListToolsResult, TextContent, ToolAnnotations
    from mcp.types import Tool as McpToolInfo

    by_name = {tool.spec.name: tool for tool in tools}
    listing = [
        McpToolInfo(
            name=t.spec.name,
            description=t.spec.description,
            input_schema=t.spec.parameters,
            annotations=ToolAnnotations(read_only_hint=t.spec.read_only),
        )
        for t in tools
    ]

    async def list_tools(_ctx, _params) -> ListToolsResult:
        return ListToolsResult(tools=listing)

    async def call_tool(_ctx, params) -> CallToolResult:
        tool = by_name.get(params.name)
        if tool is None:
            return _error(f"Locus offers no tool '{params.name}' (it offers {', '.join(by_name) or 'none'}).")
        arguments = params.arguments or {}
        try:
            jsonschema.validate(arguments, tool.spec.parameters)
        except jsonschema.ValidationError as exc:
            return _error(f"The arguments do not fit {params.name}: {exc.message}")
        cancel = threading.Event()
        try:
            result = await anyio.to_thread.run_sync(tool.run, arguments, cancel, timeout_s, abandon_on_cancel=True)
        except anyio.get_cancelled_exc_class():
            cancel.set()  # the host cancelled the request: the tool is told to stop
            raise
        structured = {"citations": [c.to_dict() for c in result.citations]} if result.citations else None
        return CallToolResult(
            content=[TextContent(text=result.text)], structured_content=structured, is_error=result.status != "ok"
        )

    def _error(text: str) -> CallToolResult:
        return CallToolResult(content=[TextContent(text=text)], is_error=True)

    server = Server(
        "locus",
        version=version,
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        get_tool_input_schema=lambda name: by_name[name].spec.parameters if name in by_name else None,
    )
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())
