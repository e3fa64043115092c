"""The MCP client host: one asyncio loop on a thread of its own runs every MCP server's session.

Each server in mcp.json has a supervisor task on that loop. It starts the server the first time one of
its tools is wanted (a process over stdio, or a Streamable HTTP connection), lists its tools, resources
and prompts, and then watches it: a server that ends (crashes) while running is started again after a
backoff that doubles each time (1 s, 2 s, 4 s … up to a minute), and one that crashes MAX_RESTARTS
times in a row, or never starts, is shown as failed with its error and the tail of its stderr. One bad
server never affects another. Stopping a stdio server closes its input, waits a grace period, then
ends its whole process group (the SDK's stdio transport); at close, any process still carrying the
host's mark in its environment is ended too, so nothing Locus started outlives it.

Calls come from other threads (the agent loop) and wait on a future; each has a time limit, and a
cancel or a timeout cancels the request on the loop (the SDK tells the server with
notifications/cancelled); a call the loop cannot end in time is abandoned, never waited for. What a
tool returns is untrusted text: text blocks as they are, images, audio and resources described in a
line (never fetched), capped to result_max_chars.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import re
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.tools.base import ToolResult, ToolSpec, ToolStatus
from engine.tools.errors import McpConfigError
from engine.tools.mcp_config import (
    PromptInfo,
    ResourceInfo,
    ServerConfig,
    ServerState,
    ServerStatus,
    expand,
    tool_name_part,
)
from engine.tools.results import make_result

log = logging.getLogger(__name__)

START_TIMEOUT_S = 30.0  # a server must answer the handshake and list its tools within this
BACKOFF_S = 1.0  # the first restart's wait; doubled after each crash in a row
BACKOFF_MAX_S = 60.0
MAX_RESTARTS = 5  # crashes in a row before a server is left failed
STABLE_S = 60.0  # a server running this long has its crash count reset
ABANDON_GRACE_S = 2.0  # past its time limit, a call whose request could not be cancelled is abandoned
CLOSE_TIMEOUT_S = 12.0  # the most close() waits for the servers to stop (the SDK's escalation takes ~6 s)
STDERR_TAIL_BYTES = 4096
MAX_DESCRIPTION_CHARS = 1024  # a tool's description, as the model is told it (it comes from the server)
MAX_SCHEMA_CHARS = 16384  # a tool whose argument schema is larger is left out (it would fill the prompt)
OWNER_ENV = "LOCUS_MCP_OWNER"  # the mark every stdio server (and what it starts) carries in its environment
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_INPUT_VALUE = re.compile(r"input_value='((?:[^'\\]|\\.){0,160})")


class _ReportedHere(logging.Filter):
    """Drops the SDK's traceback for a line that is not JSON-RPC: the server is shown as failed with the reason
    (and its stderr) instead, which is what a user can act on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Failed to parse JSONRPC message")


logging.getLogger("mcp.client.stdio").addFilter(_ReportedHere())


@dataclass
class _Server:
    """One server's live state (changed on the loop thread, under the host's lock)."""

    config: ServerConfig
    state: ServerState = "stopped"
    error: str | None = None
    stderr_tail: str = ""
    tools: tuple[ToolSpec, ...] = ()
    tool_names: dict = field(default_factory=dict)  # Locus's tool-name part -> the server's own tool name
    resources: tuple[ResourceInfo, ...] = ()
    prompts: tuple[PromptInfo, ...] = ()
    restarts: int = 0
    retry_in_s: float | None = None
    client: Any = None  # the SDK Client while running
    task: asyncio.Task | None = None
    stop: asyncio.Event | None = None
    running: asyncio.Event | None = None

    def status(self) -> ServerStatus:
        c = self.config
        return ServerStatus(
            c.name,
            c.transport,
            c.target(),
            self.state,
            self.error,
            self.stderr_tail,
            self.tools,
            self.resources,
            self.prompts,
            self.restarts,
            self.retry_in_s,
        )


class McpTool:
    """A tool of an MCP server, as the agent loop runs it."""

    def __init__(self, host: McpHost, server: str, spec: ToolSpec):
        self.spec = spec
        self._host = host
        self._server = server

    def run(self, arguments: dict, cancel: threading.Event, timeout_s: float) -> ToolResult:
        return self._host.call(self._server, self.spec.name.split("/", 1)[1], arguments, cancel, timeout_s)


class McpHost:
    """Every MCP server's session, on one asyncio loop on a thread of its own (started with the first server)."""

    def __init__(
        self,
        servers: dict[str, ServerConfig],
        *,
        secret: Callable[[str], str | None],
        on_change: Callable[[], None],
        call_timeout_s: float = 30.0,
        result_max_chars: int = 8000,
        start_timeout_s: float = START_TIMEOUT_S,
        backoff_s: float = BACKOFF_S,
        backoff_max_s: float = BACKOFF_MAX_S,
        max_restarts: int = MAX_RESTARTS,
        stable_s: float = STABLE_S,
        client_version: str = "",
    ):
        self._servers = {name: _Server(config) for name, config in servers.items()}
        self._secret = secret
        self._on_change = on_change
        self.call_timeout_s = call_timeout_s
        self.result_max_chars = result_max_chars
        self._start_timeout_s = start_timeout_s
        self._backoff_s = backoff_s
        self._backoff_max_s = backoff_max_s
        self._max_restarts = max_restarts
        self._stable_s = stable_s
        self._client_version = client_version
        self._owner = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._spawned = False  # a stdio server was started (close then looks for what carries the mark)

    # What the registry asks ------------------------------------------------------------------

    def configure(self, *, call_timeout_s: float, result_max_chars: int) -> None:
        self.call_timeout_s, self.result_max_chars = call_timeout_s, result_max_chars

    def server_names(self) -> list[str]:
        with self._lock:
            return list(self._servers)

    def statuses(self) -> list[ServerStatus]:
        with self._lock:
            return [s.status() for s in self._servers.values()]

    def status(self, name: str) -> ServerStatus:
        with self._lock:
            return self._servers[name].status()

    def tool(self, server: str, name: str) -> McpTool | None:
        """The tool "server/name" of a server that listed it, or None."""
        with self._lock:
            s = self._servers.get(server)
            spec = next((t for t in s.tools if t.name == f"{s.config.prefix}/{name}"), None) if s else None
        return McpTool(self, server, spec) if spec is not None else None

    def start(self, name: str, *, wait_s: float = 0.0, again: bool = False) -> ServerStatus:
        """Start a server unless it runs or is starting (``again``: also one that failed or was stopped after
        running); wait up to ``wait_s`` for it to be running or failed."""
        with self._lock:
            s = self._servers[name]
            if self._closed:
                return s.status()
            idle = s.task is None or s.task.done()
            if idle and ((s.state == "stopped" and s.error is None) or again):
                s.state, s.error, s.retry_in_s = "starting", None, None
                loop = self._ensure_loop()
                loop.call_soon_threadsafe(self._launch, s)
        self._notify()
        return self._wait(name, wait_s)

    def start_all(self, *, wait_s: float = 0.0) -> None:
        """Start every server not started yet; wait up to ``wait_s`` (in all) for them to settle."""
        deadline = time.monotonic() + wait_s
        for name in self.server_names():
            self.start(name)
        for name in self.server_names():
            self._wait(name, max(0.0, deadline - time.monotonic()))

    def stop(self, name: str, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Stop one server and wait (up to ``timeout_s``) for its process to be gone."""
        with self._lock:
            s = self._servers.get(name)
            loop = self._loop
        if s is None or loop is None or s.task is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._stop_one(s), loop)
        with contextlib.suppress(Exception):
            future.result(timeout_s)

    def replace_servers(self, servers: dict[str, ServerConfig]) -> None:
        """Take a new mcp.json: stop servers removed or changed, keep the rest, list the new ones as stopped."""
        with self._lock:
            gone = [n for n, s in self._servers.items() if servers.get(n) != s.config]
        for name in gone:
            self.stop(name)
        with self._lock:
            kept = {n: s for n, s in self._servers.items() if n not in gone}
            self._servers = {n: kept.get(n) or _Server(c) for n, c in servers.items()}
        self._notify()

    def call(self, server: str, tool: str, arguments: dict, cancel: threading.Event, timeout_s: float) -> ToolResult:
        """Call a server's tool from any thread: the result, a timeout, a cancel or an error, never an exception."""
        started = time.perf_counter()
        max_chars = self.result_max_chars
        with self._lock:
            s = self._servers.get(server)
            loop = self._loop
            mcp_name = s.tool_names.get(tool) if s else None
        if s is None or loop is None or mcp_name is None or self._closed:
            return make_result(
                "error",
                f"The MCP server '{server}' has no tool '{tool}' running now.",
                started=started,
                max_chars=max_chars,
            )
        future = asyncio.run_coroutine_threadsafe(self._call(s, mcp_name, arguments, timeout_s), loop)
        done = threading.Event()
        future.add_done_callback(lambda _f: done.set())
        deadline = time.monotonic() + timeout_s + ABANDON_GRACE_S
        while not done.wait(0.05):
            if cancel.is_set():
                future.cancel()  # cancels the request on the loop; the SDK tells the server
                return make_result("cancelled", "The call was stopped.", started=started, max_chars=max_chars)
            if time.monotonic() > deadline:
                future.cancel()
                return make_result(
                    "timeout",
                    f"{server}/{tool} did not answer within {timeout_s:g} s; the call was abandoned.",
                    started=started,
                    max_chars=max_chars,
                )
        if cancel.is_set():
            return make_result("cancelled", "The call was stopped.", started=started, max_chars=max_chars)
        status: ToolStatus
        try:
            status, text = future.result()
        except BaseException as exc:  # noqa: BLE001 - a call's failure is its result, never the caller's crash
            status, text = "error", f"The MCP server '{server}' failed the call: {_describe(exc)}"
        return make_result(status, text, started=started, max_chars=max_chars)

    def read_resource(self, server: str, uri: str, timeout_s: float | None = None) -> str:
        """A resource's text (binary contents described, not decoded); raises McpConfigError in words."""
        return self._run_sync(server, lambda client: self._read(client, uri), timeout_s)

    def get_prompt(self, server: str, name: str, arguments: dict | None = None, timeout_s: float | None = None) -> str:
        """A prompt's messages as text; raises McpConfigError in words."""
        return self._run_sync(server, lambda client: self._prompt(client, name, arguments or {}), timeout_s)

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Stop every server (no process left behind) and the loop's thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop, thread = self._loop, self._thread
        if loop is not None and thread is not None:
            future = asyncio.run_coroutine_threadsafe(self._stop_all(), loop)
            try:
                future.result(timeout_s)
            except Exception:  # noqa: BLE001 - a server that will not stop is ended below
                log.warning("MCP servers did not all stop within %s s; ending what is left", timeout_s)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout_s)
        if self._spawned:
            end_marked_processes(self._owner)

    # On the loop ----------------------------------------------------------------------------

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        """The loop, started on its own thread the first time (under the lock)."""
        if self._loop is None:
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()
                loop.close()

            self._thread = threading.Thread(target=run, name="locus-mcp", daemon=True)
            self._thread.start()
            ready.wait()
            self._loop = loop
        return self._loop

    def _launch(self, s: _Server) -> None:
        s.stop, s.running = asyncio.Event(), asyncio.Event()
        s.task = asyncio.get_running_loop().create_task(self._supervise(s), name=f"mcp:{s.config.name}")

    async def _supervise(self, s: _Server) -> None:
        crashes, ever_ran = 0, False
        assert s.stop is not None
        while not s.stop.is_set():
            self._set(s, state="starting", retry_in_s=None)
            ran_s, error = await self._session(s)
            if s.stop.is_set():
                break
            ever_ran = ever_ran or ran_s is not None
            if not ever_ran:  # it never started: no point in trying again on its own
                self._set(s, state="failed", error=error, tools=(), tool_names={}, resources=(), prompts=())
                return
            crashes = 1 if ran_s is not None and ran_s >= self._stable_s else crashes + 1
            if crashes > self._max_restarts:
                self._set(
                    s,
                    state="failed",
                    tools=(),
                    tool_names={},
                    resources=(),
                    prompts=(),
                    error=f"{error} It stopped {crashes} times in a row and is not restarted again.",
                )
                return
            delay = min(self._backoff_s * 2 ** (crashes - 1), self._backoff_max_s)
            self._set(s, state="starting", retry_in_s=delay, error=f"{error} Restarting in {delay:g} s.")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(s.stop.wait(), delay)
            if not s.stop.is_set():
                self._set(s, restarts=s.restarts + 1)
        self._set(s, state="stopped", error=None, retry_in_s=None, tools=(), tool_names={}, resources=(), prompts=())

    async def _session(self, s: _Server) -> tuple[float | None, str]:
        """Run one session of a server until it ends: (seconds it ran, or None when it never started; why it
        ended, in words)."""
        import anyio

        config = s.config
        errlog = tempfile.TemporaryFile()  # the server's stderr, for its tail
        ended, garbage = anyio.Event(), []
        started_at: float | None = None
        scope = anyio.CancelScope(deadline=anyio.current_time() + self._start_timeout_s)

        def on_garbage(exc: Exception) -> None:
            garbage.append(exc)
            if started_at is None:
                scope.cancel()  # not MCP: give up on the handshake now
            elif config.transport == "http":
                ended.set()

        try:
            transport = _Watched(self._transport(config, errlog), on_end=ended.set, on_garbage=on_garbage)
            with scope:
                from mcp import Client
                from mcp.types import Implementation

                async with Client(
                    transport, client_info=Implementation(name="locus", version=self._client_version)
                ) as client:
                    listing = await _list_everything(client, config)
                    scope.deadline = math.inf
                    started_at = time.monotonic()
                    self._set(s, state="running", error=None, client=client, **listing)
                    assert s.running is not None and s.stop is not None
                    s.running.set()
                    stop_wait = asyncio.ensure_future(s.stop.wait())
                    end_wait = asyncio.ensure_future(ended.wait())
                    try:
                        await asyncio.wait({stop_wait, end_wait}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        stop_wait.cancel()
                        end_wait.cancel()
                    s.running.clear()
                    self._set(s, client=None)
            if started_at is None and scope.cancelled_caught:
                reason = (
                    _garbage_reason(garbage[0])
                    if garbage
                    else f"It did not answer the MCP handshake within {self._start_timeout_s:g} s."
                )
            elif started_at is None:
                reason = "It ended before it answered."
            else:
                reason = "It stopped unexpectedly." if s.stop is None or not s.stop.is_set() else ""
        except McpConfigError as exc:
            reason = exc.message
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            if isinstance(exc, asyncio.CancelledError) and s.stop is not None and not s.stop.is_set():
                raise
            reason = (
                _garbage_reason(garbage[0])
                if garbage and started_at is None
                else f"It {'could not be started' if started_at is None else 'failed'}: {_describe(exc)}"
            )
        finally:
            if s.running is not None:
                s.running.clear()
            tail = _tail(errlog)
            errlog.close()
        self._set(s, client=None, stderr_tail=tail)
        ran = time.monotonic() - started_at if started_at is not None else None
        return ran, reason

    def _transport(self, config: ServerConfig, errlog):
        """The SDK transport for a server, its secrets filled in (raises McpConfigError when one is missing)."""
        if config.transport == "http":
            import httpx2
            from mcp.client.streamable_http import streamable_http_client

            headers = {k: expand(v, self._secret) for k, v in config.headers.items()}
            http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=300.0))
            return _HttpTransport(http, streamable_http_client(config.url, http_client=http))
        from mcp import StdioServerParameters
        from mcp.client.stdio import stdio_client

        env = {k: expand(v, self._secret) for k, v in config.env.items()}
        env[OWNER_ENV] = self._owner
        self._spawned = True
        params = StdioServerParameters(
            command=config.command, args=list(config.args), env=env, cwd=config.cwd, encoding_error_handler="replace"
        )
        return stdio_client(params, errlog=errlog)

    async def _call(self, s: _Server, name: str, arguments: dict, timeout_s: float) -> tuple[ToolStatus, str]:
        from mcp import MCPError
        from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT

        assert s.running is not None
        try:
            async with asyncio.timeout(timeout_s):
                await s.running.wait()  # a server restarting after a crash: wait for it, within the limit
                client = s.client
                result = await client.call_tool(name, arguments, read_timeout_seconds=timeout_s)
        except TimeoutError:
            return "timeout", f"{s.config.prefix}/{name} did not answer within {timeout_s:g} s."
        except MCPError as exc:
            if exc.code == REQUEST_TIMEOUT:
                return "timeout", f"{s.config.prefix}/{name} did not answer within {timeout_s:g} s."
            if exc.code == CONNECTION_CLOSED:
                return "error", (
                    f"The MCP server '{s.config.name}' stopped during the call (it may have crashed); "
                    "Locus restarts it."
                )
            return "error", f"The MCP server '{s.config.name}' refused the call: {exc}"
        return ("error" if result.is_error else "ok"), result_text(result)

    async def _read(self, client, uri: str) -> str:
        result = await client.read_resource(uri)
        return "\n\n".join(_resource_text(c) for c in result.contents)

    async def _prompt(self, client, name: str, arguments: dict) -> str:
        result = await client.get_prompt(name, {k: str(v) for k, v in arguments.items()})
        return "\n\n".join(f"{m.role}: {_block_text(m.content)}" for m in result.messages)

    def _run_sync(self, server: str, work: Callable[[Any], Any], timeout_s: float | None) -> str:
        timeout_s = timeout_s or self.call_timeout_s
        status = self.start(server, wait_s=timeout_s)
        with self._lock:
            s = self._servers[server]
            loop = self._loop
        if status.state != "running" or loop is None:
            raise McpConfigError(f"The MCP server '{server}' is not running: {status.error or status.state}")

        async def guarded() -> str:
            async with asyncio.timeout(timeout_s):
                return await work(s.client)

        try:
            return _clean(asyncio.run_coroutine_threadsafe(guarded(), loop).result(timeout_s + ABANDON_GRACE_S))
        except Exception as exc:
            raise McpConfigError(f"The MCP server '{server}' could not answer: {_describe(exc)}") from exc

    async def _stop_one(self, s: _Server) -> None:
        if s.stop is not None:
            s.stop.set()
        if s.task is not None:
            with contextlib.suppress(BaseException):
                await s.task

    async def _stop_all(self) -> None:
        with self._lock:
            servers = list(self._servers.values())
        await asyncio.gather(*(self._stop_one(s) for s in servers), return_exceptions=True)

    # State -----------------------------------------------------------------------------------

    def _set(self, s: _Server, **changes) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(s, key, value)
            self._changed.notify_all()
        self._notify()

    def _notify(self) -> None:
        try:
            self._on_change()
        except Exception:
            log.exception("MCP change listener failed")

    def _wait(self, name: str, wait_s: float) -> ServerStatus:
        deadline = time.monotonic() + wait_s
        with self._lock:
            while True:
                s = self._servers.get(name)
                if s is None:
                    raise KeyError(name)
                settled = s.state in ("running", "failed", "stopped") and s.retry_in_s is None
                left = deadline - time.monotonic()
                if settled or left <= 0:
                    return s.status()
                self._changed.wait(min(left, 0.5))


# Listing and results ---------------------------------------------------------------------------


async def _list_everything(client, config: ServerConfig) -> dict:
    """The server's tools (as Locus names them), resources and prompts; a server that lists no resources
    or prompts (or fails to) still runs its tools."""
    tools: list[ToolSpec] = []
    names: dict[str, str] = {}
    cursor = None
    for _ in range(100):  # pages, bounded
        page = await client.list_tools(cursor=cursor)
        for tool in page.tools:
            spec = _spec(config, tool, set(names))
            if spec is not None:
                tools.append(spec)
                names[spec.name.split("/", 1)[1]] = tool.name
        cursor = page.next_cursor
        if not cursor:
            break
    caps = client.server_capabilities
    resources: list[ResourceInfo] = []
    prompts: list[PromptInfo] = []
    if caps.resources is not None:
        with contextlib.suppress(Exception):
            listed = await client.list_resources()
            resources = [
                ResourceInfo(r.uri, r.name, _clean(r.description or ""), r.mime_type) for r in listed.resources
            ]
    if caps.prompts is not None:
        with contextlib.suppress(Exception):
            listed_prompts = await client.list_prompts()
            prompts = [
                PromptInfo(p.name, _clean(p.description or ""), tuple(a.name for a in p.arguments or ()))
                for p in listed_prompts.prompts
            ]
    return {"tools": tuple(tools), "tool_names": names, "resources": tuple(resources), "prompts": tuple(prompts)}


def _spec(config: ServerConfig, tool, taken: set[str]) -> ToolSpec | None:
    """Locus's ToolSpec for a server's tool: "server/tool", description and schema capped; None when unusable."""
    part = tool_name_part(tool.name)
    base, n = part, 2
    while part in taken:
        part = f"{base[:60]}_{n}"
        n += 1
    schema = tool.input_schema if isinstance(tool.input_schema, dict) else {}
    if schema.get("type") != "object":
        schema = {"type": "object", "properties": {}}
    if len(json.dumps(schema)) > MAX_SCHEMA_CHARS:
        log.warning("MCP tool %s/%s left out: its argument schema is too large", config.name, tool.name)
        return None
    description = _clean(tool.description or tool.title or "")[:MAX_DESCRIPTION_CHARS]
    read_only = bool(tool.annotations is not None and tool.annotations.read_only_hint)
    return ToolSpec(f"{config.prefix}/{part}", description, schema, read_only=read_only, source=f"mcp:{config.name}")


def result_text(result) -> str:
    """A CallToolResult as plain text: text blocks as they are, anything else described in a line."""
    parts = [_block_text(block) for block in result.content]
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    return _clean("\n\n".join(parts)) if parts else "(the tool returned nothing)"


def _block_text(block) -> str:
    kind = getattr(block, "type", "")
    if kind == "text":
        return block.text
    if kind in ("image", "audio"):
        size = _decoded_size(block.data)
        return f"[{kind}: {block.mime_type}, about {size:,} bytes; not shown]"
    if kind == "resource":
        return _resource_text(block.resource)
    if kind == "resource_link":
        return f"[a link to the resource '{block.name}' at {block.uri}; not fetched]"
    return f"[{kind or 'unknown'} content; not shown]"


def _resource_text(contents) -> str:
    mime = f" ({contents.mime_type})" if contents.mime_type else ""
    if hasattr(contents, "text"):
        return f"[resource {contents.uri}{mime}]\n{contents.text}"
    return f"[resource {contents.uri}{mime}: about {_decoded_size(contents.blob):,} bytes of data; not shown]"


def _decoded_size(data: str) -> int:
    """How many bytes base64 ``data`` holds (without decoding it)."""
    return len(data.strip().rstrip("=")) * 3 // 4


def _clean(text: str) -> str:
    """Text without control characters (NUL, escape sequences), which a terminal or a widget might act on."""
    return _CONTROL.sub("", text)


def _garbage_reason(exc: Exception) -> str:
    match = _INPUT_VALUE.search(str(exc))
    sample = f" (it wrote: {_clean(match.group(1))!r})" if match else ""
    return f"It does not speak MCP: it wrote something that is not a JSON-RPC message{sample}."


def _describe(exc: BaseException) -> str:
    """An exception in words, the first of a group."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, FileNotFoundError):
        return f"the program '{exc.filename}' was not found"
    if isinstance(exc, PermissionError):
        return f"the program '{exc.filename}' may not be run"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _tail(errlog) -> str:
    try:
        size = os.fstat(errlog.fileno()).st_size
        data = os.pread(errlog.fileno(), STDERR_TAIL_BYTES, max(0, size - STDERR_TAIL_BYTES))
    except (OSError, ValueError):
        return ""
    text = _clean(data.decode("utf-8", errors="replace"))
    if size > STDERR_TAIL_BYTES:
        text = text.split("\n", 1)[-1]  # start at a whole line
    return text.strip()


# The transport wrappers -------------------------------------------------------------------------


class _Watched:
    """A transport whose read stream reports when it ends (the server went away) and anything it carries that
    is not an MCP message."""

    def __init__(self, inner, *, on_end: Callable[[], None], on_garbage: Callable[[Exception], None]):
        self._inner = inner
        self._on_end = on_end
        self._on_garbage = on_garbage

    async def __aenter__(self):
        read, write = await self._inner.__aenter__()
        return _WatchedRead(read, self._on_end, self._on_garbage), write

    async def __aexit__(self, *exc):
        return await self._inner.__aexit__(*exc)


class _WatchedRead:
    def __init__(self, inner, on_end, on_garbage):
        self._inner = inner
        self._on_end = on_end
        self._on_garbage = on_garbage

    @property
    def last_context(self):
        return getattr(self._inner, "last_context", None)

    async def receive(self):
        import anyio

        try:
            item = await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._on_end()
            raise
        if isinstance(item, Exception):
            self._on_garbage(item)
        return item

    def __aiter__(self):
        return self

    async def __anext__(self):
        import anyio

        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        await self._inner.aclose()

    def close(self) -> None:
        close = getattr(self._inner, "close", None)
        if close is not None:
            close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()


class _HttpTransport:
    """Streamable HTTP with Locus's own HTTP client (its headers), closed with the transport."""

    def __init__(self, http, inner):
        self._http = http
        self._inner = inner

    async def __aenter__(self):
        await self._http.__aenter__()
        try:
            return await self._inner.__aenter__()
        except BaseException:
            await self._http.__aexit__(None, None, None)
            raise

    async def __aexit__(self, *exc):
        try:
            return await self._inner.__aexit__(*exc)
        finally:
            await self._http.__aexit__(None, None, None)


# The last resort at close ------------------------------------------------------------------------


def end_marked_processes(owner: str, grace_s: float = 1.0) -> int:
    """End every process of this user whose environment carries ``owner``'s mark (an MCP server or something
    it started that outlived the orderly stop); how many there were. POSIX only; never raises."""
    if os.name != "posix":
        return 0
    try:
        import psutil
    except ImportError:
        return 0
    marked = []
    needle = f"{OWNER_ENV}={owner}".encode()
    for proc in psutil.process_iter(["pid"]):
        if proc.pid == os.getpid():
            continue
        try:
            with open(f"/proc/{proc.pid}/environ", "rb") as fh:
                if needle in fh.read().split(b"\0"):
                    marked.append(proc)
        except OSError:
            try:
                if proc.environ().get(OWNER_ENV) == owner:
                    marked.append(proc)
            except (psutil.Error, OSError):
                continue
    for proc in marked:
        with contextlib.suppress(psutil.Error, OSError):
            proc.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(marked, timeout=grace_s)
    for proc in alive:
        with contextlib.suppress(psutil.Error, OSError):
            proc.kill()
    if marked:
        log.warning("ended %d MCP server process(es) left running", len(marked))
    return len(marked)
