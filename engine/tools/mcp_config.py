"""mcp.json: the MCP servers Locus may start, in the format Claude Desktop, Cursor and LM Studio use.

    {"mcpServers": {
        "files":  {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/home/me/notes"]},
        "search": {"url": "https://mcp.example.com/mcp",
                   "headers": {"Authorization": "Bearer ${keyring:example}"}}}}

A server is started by a command (stdio) or reached at a URL (Streamable HTTP). Secrets are never
written in this file: a header or environment value may hold ``${keyring:NAME}``, read from the system
keyring's entry ``mcp.NAME`` (``locus secrets set mcp.NAME``) when the server starts, or
``${env:NAME}``, read from Locus's environment. VS Code's ``{"servers": {...}}`` form is read too.
A bad entry is reported and left out; the others work. Importing another app's file moves the literal
header values (and environment values whose names say token, key, secret or password) into the keyring.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from engine.tools.base import ToolSpec
from engine.tools.errors import McpConfigError

MCP_FILE = "mcp.json"
KEYRING_PREFIX = "mcp."  # a ${keyring:NAME} reference reads the keyring entry "mcp.NAME"
_REFERENCE = re.compile(r"\$\{(keyring|env):([A-Za-z0-9_.-]{1,64})\}")
_NAME_PART = re.compile(r"[^A-Za-z0-9_.-]+")
_SECRET_ENV = re.compile(r"TOKEN|KEY|SECRET|PASSWORD|PASSWD|AUTH|CREDENTIAL|COOKIE", re.IGNORECASE)
ServerState = Literal["stopped", "starting", "running", "failed"]


@dataclass(frozen=True)
class ServerConfig:
    """One entry of mcp.json."""

    name: str  # as written in mcp.json
    transport: Literal["stdio", "http"]
    command: str = ""
    args: tuple[str, ...] = ()
    env: dict = field(default_factory=dict)  # values may hold ${keyring:NAME} / ${env:NAME}
    cwd: str | None = None
    url: str = ""
    headers: dict = field(default_factory=dict)  # values may hold ${keyring:NAME} / ${env:NAME}

    @property
    def prefix(self) -> str:
        """The server's part of its tools' names ("server/tool"): its name with only the characters a tool
        name may have."""
        return tool_name_part(self.name)

    def target(self) -> str:
        """The command line or URL, for people (references shown as written, never their values)."""
        if self.transport == "http":
            return self.url
        return " ".join([self.command, *self.args])


@dataclass(frozen=True)
class ResourceInfo:
    """A resource an MCP server lists (read with ``McpHost.read_resource``)."""

    uri: str
    name: str
    description: str = ""
    mime_type: str | None = None


@dataclass(frozen=True)
class PromptInfo:
    """A prompt an MCP server lists."""

    name: str
    description: str = ""
    arguments: tuple[str, ...] = ()


@dataclass(frozen=True)
class ServerStatus:
    """An MCP server as the Tools panel and `locus mcp list` show it."""

    name: str
    transport: str  # "stdio" or "http"
    target: str  # command line or URL
    state: ServerState
    error: str | None = None  # why it failed or restarts, in words
    stderr_tail: str = ""  # the last lines it wrote to stderr (stdio servers)
    tools: tuple[ToolSpec, ...] = ()
    resources: tuple[ResourceInfo, ...] = ()
    prompts: tuple[PromptInfo, ...] = ()
    restarts: int = 0  # times it was restarted after a crash
    retry_in_s: float | None = None  # the backoff before the next restart, while one is pending


def tool_name_part(name: str) -> str:
    """``name`` with only the characters a tool name may have (letters, digits, _ . -), at most 64."""
    cleaned = _NAME_PART.sub("_", name).strip("_") or "server"
    return cleaned[:64]


def load_servers(path: Path) -> tuple[dict[str, ServerConfig], list[str]]:
    """The servers in ``path`` by name, and what was wrong (a missing file is no servers and no problem)."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}, []
    except (OSError, UnicodeDecodeError) as exc:
        return {}, [f"{path} could not be read ({exc}); no MCP server is available."]
    try:
        data = json.loads(raw)
    except ValueError as exc:
        return {}, [f"{path} is not valid JSON ({exc}); no MCP server is available."]
    return parse_servers(data, str(path))


def parse_servers(data: object, source: str) -> tuple[dict[str, ServerConfig], list[str]]:
    """Servers from a parsed mcp.json (or another app's file), and the problems of the entries left out."""
    if not isinstance(data, dict):
        return {}, [f'{source} should hold an object with "mcpServers".']
    entries = data.get("mcpServers", data.get("servers"))
    if entries is None:
        return {}, [f'{source} has no "mcpServers" section.']
    if not isinstance(entries, dict):
        return {}, [f'"mcpServers" in {source} should be an object of servers by name.']
    servers: dict[str, ServerConfig] = {}
    problems: list[str] = []
    prefixes: dict[str, str] = {}
    for name, entry in entries.items():
        try:
            server = _server(str(name), entry)
        except McpConfigError as exc:
            problems.append(f"MCP server '{name}' in {source}: {exc.message} It is left out.")
            continue
        if server is None:
            continue  # "disabled": true
        if server.prefix in prefixes:
            problems.append(
                f"MCP servers '{prefixes[server.prefix]}' and '{name}' in {source} would name their "
                f"tools alike ('{server.prefix}/…'); '{name}' is left out."
            )
            continue
        prefixes[server.prefix] = server.name
        servers[server.name] = server
    return servers, problems


def _server(name: str, entry: object) -> ServerConfig | None:
    if not name.strip():
        raise McpConfigError("A server needs a name.")
    if not isinstance(entry, dict):
        raise McpConfigError('Its entry should be an object with "command" or "url".')
    if entry.get("disabled") is True:
        return None
    kind = str(entry.get("type") or entry.get("transport") or "").lower()
    url = entry.get("url") or entry.get("serverUrl")
    if kind in ("sse",):
        raise McpConfigError(
            "SSE servers are not supported (the transport is deprecated); use its Streamable HTTP address."
        )
    if url is not None or kind in ("http", "streamable-http", "streamablehttp", "streamable_http"):
        if not isinstance(url, str) or not re.match(r"^https?://", url):
            raise McpConfigError('"url" should be an http:// or https:// address.')
        return ServerConfig(name, "http", url=url, headers=_strings(entry.get("headers"), "headers"))
    command = entry.get("command")
    if not isinstance(command, str) or not command.strip():
        raise McpConfigError('It has neither "command" (a program to start) nor "url" (a server\'s address).')
    args = entry.get("args") or []
    if not isinstance(args, list) or not all(isinstance(a, (str, int, float)) for a in args):
        raise McpConfigError('"args" should be a list of text.')
    cwd = entry.get("cwd")
    if cwd is not None and not isinstance(cwd, str):
        raise McpConfigError('"cwd" should be a folder\'s path.')
    return ServerConfig(
        name, "stdio", command=command, args=tuple(str(a) for a in args), env=_strings(entry.get("env"), "env"), cwd=cwd
    )


def _strings(value: object, key: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, (str, int, float)) for k, v in value.items()
    ):
        raise McpConfigError(f'"{key}" should be an object of names and text values.')
    return {k: str(v) for k, v in value.items()}


def expand(value: str, secret: Callable[[str], str | None], environ=os.environ) -> str:
    """``value`` with its ${keyring:NAME} and ${env:NAME} references filled in; raises McpConfigError
    naming a reference that has no value."""

    def fill(match: re.Match) -> str:
        kind, name = match.groups()
        found = secret(KEYRING_PREFIX + name) if kind == "keyring" else environ.get(name)
        if not found:
            where = (
                (
                    f"the system keyring has no '{KEYRING_PREFIX}{name}' (store it with: locus secrets set "
                    f"{KEYRING_PREFIX}{name})"
                )
                if kind == "keyring"
                else f"the environment has no {name}"
            )
            raise McpConfigError(f"${{{kind}:{name}}} has no value: {where}.")
        return found

    return _REFERENCE.sub(fill, value)


# Writing mcp.json and importing other apps' files -------------------------------------------------


def read_document(path: Path) -> dict:
    """mcp.json as a JSON object (an empty one when the file does not exist yet)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"mcpServers": {}}
    except (OSError, ValueError) as exc:
        raise McpConfigError(f"{path} could not be read ({exc}).") from exc
    if not isinstance(data, dict):
        raise McpConfigError(f'{path} should hold an object with "mcpServers".')
    data.setdefault("mcpServers", {})
    return data


def write_document(path: Path, data: dict) -> None:
    """Write mcp.json atomically, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".mcp-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, ensure_ascii=False)
            fh.write("\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class ImportOutcome:
    """What ``import_servers`` did."""

    added: tuple[str, ...]  # servers now in mcp.json
    skipped: tuple[str, ...]  # already there under that name (kept as they were)
    problems: tuple[str, ...]  # entries of the imported file that were left out, and why
    secrets_stored: tuple[str, ...]  # keyring names that now hold values moved out of the file
    secrets_missing: tuple[str, ...]  # keyring names the user must still set (no keyring to move them to)


def import_servers(source: Path, target: Path, store_secret: Callable[[str, str], bool]) -> ImportOutcome:
    """Add the servers of another app's MCP file (Claude Desktop, Cursor, LM Studio, VS Code) to ``target``.

    Literal header values and secret-looking environment values are moved to the keyring through
    ``store_secret(name, value) -> stored?`` and replaced by ${keyring:NAME}; a server whose name is already
    in ``target`` is skipped. Raises McpConfigError when ``source`` cannot be read at all.
    """
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise McpConfigError(f"{source} could not be read as JSON ({exc}).") from exc
    servers, problems = parse_servers(data, str(source))
    if not servers and problems:
        raise McpConfigError(" ".join(problems))
    document = read_document(target)
    existing = document["mcpServers"]
    added: list[str] = []
    skipped: list[str] = []
    stored: list[str] = []
    missing: list[str] = []
    for name, server in servers.items():
        if name in existing:
            skipped.append(name)
            continue
        entry = _entry(server, store_secret, stored, missing)
        existing[name] = entry
        added.append(name)
    if added:
        write_document(target, document)
    return ImportOutcome(tuple(added), tuple(skipped), tuple(problems), tuple(stored), tuple(missing))


def _entry(server: ServerConfig, store_secret: Callable[[str, str], bool], stored: list, missing: list) -> dict:
    def keep(kind: str, key: str, value: str, secret_like: bool) -> str:
        if not secret_like or _REFERENCE.search(value) or value.startswith("${"):
            return value
        name = tool_name_part(f"{server.prefix}_{key}").lower()
        if store_secret(KEYRING_PREFIX + name, value):
            stored.append(KEYRING_PREFIX + name)
        else:
            missing.append(KEYRING_PREFIX + name)
        return "${keyring:" + name + "}"

    if server.transport == "http":
        headers = {k: keep("header", k, v, True) for k, v in server.headers.items()}
        return {"url": server.url, **({"headers": headers} if headers else {})}
    env = {k: keep("env", k, v, bool(_SECRET_ENV.search(k))) for k, v in server.env.items()}
    entry: dict = {"command": server.command, "args": list(server.args)}
    if env:
        entry["env"] = env
    if server.cwd:
        entry["cwd"] = server.cwd
    return entry
