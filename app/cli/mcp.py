"""`locus mcp`: the MCP servers of mcp.json (list, import another app's), and Locus as an MCP server (serve).

    locus mcp list            the servers, whether they start, their tools, resources and prompts
    locus mcp import FILE     add the servers of Claude Desktop's, Cursor's, LM Studio's or VS Code's MCP file
                              (or name the app: claude, cursor, lmstudio)
    locus mcp serve           an MCP server on stdin/stdout offering Locus's built-in tools (search_documents
                              and the others switched on), so other MCP hosts can search the user's documents

Every MCP server a command starts is stopped before it returns. Only this module's parser is imported for
every `locus` command; the engine loads in the functions below.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

APP_FILES = {  # where other apps keep their MCP servers, per platform
    "claude": {
        "darwin": "~/Library/Application Support/Claude/claude_desktop_config.json",
        "win32": "%APPDATA%/Claude/claude_desktop_config.json",
        "linux": "~/.config/Claude/claude_desktop_config.json",
    },
    "cursor": {"any": "~/.cursor/mcp.json"},
    "lmstudio": {"any": "~/.lmstudio/mcp.json"},
}
LIST_WAIT_S = 60.0  # the most `locus mcp list` waits for the servers to start


def add_parsers(sub) -> None:
    """Add the `mcp` command to the `locus` parser's subparsers."""
    p = sub.add_parser(
        "mcp",
        help="MCP servers: list those in mcp.json, import another app's, or serve Locus's tools over MCP",
        description="MCP (Model Context Protocol) servers give answers more tools. Locus starts the servers in "
        "mcp.json (in its config folder) when a tool of theirs is wanted and stops them when it quits.",
    )
    actions = p.add_subparsers(dest="mcp_command", metavar="ACTION", required=True)
    list_p = actions.add_parser("list", help="the servers, their state and their tools (starts them to ask)")
    list_p.add_argument("--no-start", action="store_true", help="only show mcp.json; start nothing")
    list_p.set_defaults(run=run_list)
    import_p = actions.add_parser(
        "import",
        help="add the servers of another app's MCP file (Claude Desktop, Cursor, LM Studio, VS Code)",
        description="Add the servers of another app's MCP file to Locus's mcp.json. Header values and secret-"
        "looking environment values are moved to the system keyring (mcp.NAME) and written as "
        "${keyring:NAME}; servers already in mcp.json are kept as they are.",
    )
    import_p.add_argument("file", metavar="FILE", help="the file, or claude, cursor or lmstudio for that app's own")
    import_p.set_defaults(run=run_import)
    serve_p = actions.add_parser(
        "serve",
        help="be an MCP server on stdin/stdout, offering Locus's built-in tools (search_documents, ...)",
        description="Speak MCP on stdin and stdout, offering the built-in tools switched on in Settings > Tools "
        "(search_documents over the indexed documents, and read_file, fetch_page, calculator and "
        "current_time as their settings allow), for other MCP hosts. Add it to their mcp.json as "
        '{"command": "locus", "args": ["mcp", "serve"]}.',
    )
    serve_p.add_argument("--tools", metavar="NAME[,NAME…]", help="offer only these built-ins")
    serve_p.set_defaults(run=run_serve)


# list ---------------------------------------------------------------------------------------------------


def run_list(args: argparse.Namespace) -> int:
    """Print each server of mcp.json with its state, error, stderr tail and tools; 1 when one failed."""
    from app.cli import EXIT_ERROR, EXIT_OK
    from app.cli.common import plain
    from app.paths import resolve_paths
    from app.services import build_services
    from engine.tools.mcp_config import MCP_FILE

    paths = resolve_paths()
    services = build_services(paths)
    try:
        registry = services.tools
        print(f"MCP servers in {paths.config_dir / MCP_FILE}:")
        for problem in registry.mcp_problems:
            print(f"  ! {plain(problem)}")
        if not args.no_start:
            registry.available(start=True, wait_s=LIST_WAIT_S)
        servers = registry.servers()
        if not servers:
            print("  (none)")
        for server in servers:
            _print_server(server, plain)
        print("Built-in tools:")
        for builtin in registry.builtins():
            state = "on" if builtin.available else f"off: {builtin.reason}"
            print(f"  {builtin.spec.name}  ({state})")
        failed = [s for s in servers if s.state == "failed"] or registry.mcp_problems
        return EXIT_ERROR if failed else EXIT_OK
    finally:
        services.close()  # stops every server this command started


def _print_server(server, plain) -> None:
    print(f"  {plain(server.name)}  [{server.state}]  {server.transport}: {plain(server.target, 200)}")
    if server.error:
        print(f"    error: {plain(server.error)}")
    if server.stderr_tail and server.state == "failed":
        print("    stderr:")
        for line in server.stderr_tail.splitlines()[-10:]:
            print(f"      {plain(line, 200)}")
    for tool in server.tools:
        mark = " (read-only)" if tool.read_only else ""
        print(f"    tool {tool.name}{mark}: {plain(tool.description, 160)}")
    for resource in server.resources:
        print(f"    resource {plain(resource.uri, 200)}: {plain(resource.name, 80)}")
    for prompt in server.prompts:
        arguments = f"({', '.join(prompt.arguments)})" if prompt.arguments else ""
        print(f"    prompt {plain(prompt.name, 80)}{arguments}: {plain(prompt.description, 160)}")


# import -------------------------------------------------------------------------------------------------


def run_import(args: argparse.Namespace) -> int:
    """Add another app's servers to mcp.json, their secrets to the keyring."""
    from app.cli import EXIT_ERROR, EXIT_OK
    from app.cli.common import plain
    from app.paths import resolve_paths
    from app.secrets import KeyringUnavailableError, Secrets, stored_names_file
    from engine.tools.mcp_config import MCP_FILE, import_servers

    source = app_file(args.file)
    paths = resolve_paths()
    paths.ensure()
    secrets = Secrets(index_path=stored_names_file(paths))

    def store(name: str, value: str) -> bool:
        try:
            secrets.set(name, value)
        except KeyringUnavailableError:
            return False
        return True

    outcome = import_servers(source, paths.config_dir / MCP_FILE, store)
    for name in outcome.added:
        print(f"Added '{plain(name)}'.")
    for name in outcome.skipped:
        print(f"Kept '{plain(name)}' as it was (mcp.json already has a server of that name).")
    for problem in outcome.problems:
        print(f"Left out: {plain(problem)}", file=sys.stderr)
    for name in outcome.secrets_stored:
        print(f"Moved a secret into the system keyring as '{name}'.")
    for name in outcome.secrets_missing:
        print(
            f"No system keyring: store the secret with `locus secrets set {name}` before using the server.",
            file=sys.stderr,
        )
    if not outcome.added and not outcome.skipped:
        print("No server was imported.", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


def app_file(name: str) -> Path:
    """FILE as given, or the MCP file of the app named (claude, cursor, lmstudio) on this platform."""
    known = APP_FILES.get(name.lower())
    if known is None:
        return Path(name).expanduser()
    platform = "linux" if sys.platform.startswith("linux") else sys.platform
    where = known.get(platform) or known.get("any") or next(iter(known.values()))
    return Path(os.path.expandvars(os.path.expanduser(where)))


# serve --------------------------------------------------------------------------------------------------


def run_serve(args: argparse.Namespace) -> int:
    """Serve the built-in tools over MCP on stdin/stdout until the host closes stdin."""
    import anyio

    from app.cli import EXIT_OK, locus_version
    from app.services import build_services
    from engine.tools.mcp_server import serve_stdio

    services = build_services()
    try:
        registry = services.tools
        offered = [b.spec.name for b in registry.builtins() if b.available]
        if args.tools:
            wanted = [n.strip() for n in args.tools.split(",") if n.strip()]
            tools = registry.resolve([n for n in wanted if "/" not in n])  # built-ins only: a typo fails here
        else:
            tools = registry.resolve(offered)
        timeout_s = services.settings.tools.call_timeout_s
        anyio.run(lambda: serve_stdio(tools, version=locus_version(), timeout_s=timeout_s))
        return EXIT_OK
    finally:
        services.close()
