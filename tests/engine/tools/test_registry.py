"""The registry: which tools exist and can run, settings changes, mcp.json read again, listeners."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import psutil
import pytest

from engine.tools.config import BUILTIN_NAMES, ToolsConfig
from engine.tools.errors import ToolUnavailableError, UnknownToolError
from engine.tools.registry import ToolRegistry

SERVER = str(Path(__file__).resolve().parents[2] / "tools_servers" / "server.py")


def test_every_builtin_is_listed_with_why_it_is_off():
    registry = ToolRegistry(ToolsConfig(disabled=("calculator",)))
    status = {b.spec.name: b for b in registry.builtins()}
    assert list(status) == list(BUILTIN_NAMES)
    assert status["search_documents"].available and status["current_time"].available
    assert "switched off" in status["calculator"].reason
    assert "no folder is allowed" in status["read_file"].reason
    assert "only thing in Locus that goes to the internet" in status["fetch_page"].reason
    assert [s.name for s in registry.available()] == ["search_documents", "current_time"]
    with pytest.raises(ToolUnavailableError, match="switched off"):
        registry.resolve(["calculator"])
    with pytest.raises(UnknownToolError) as caught:
        registry.resolve(["calculater"])
    assert caught.value.hint == "Did you mean 'calculator'?"
    assert registry.servers() == [] and registry.mcp_problems == ()  # no mcp.json: no servers


def test_settings_changes_apply_to_the_next_call_and_are_announced():
    registry = ToolRegistry(ToolsConfig())
    changes = []
    unsubscribe = registry.on_change(lambda: changes.append(registry.config))
    registry.configure(ToolsConfig(fetch_enabled=True, trusted=("notes/*",)))
    assert [c.fetch_enabled for c in changes] == [True]
    assert "fetch_page" in [s.name for s in registry.available()]
    assert not registry.needs_approval("notes/search") and registry.needs_approval("notes2/search")
    assert registry.needs_approval("calculator")  # trusted only when the settings say so
    unsubscribe()
    registry.configure(ToolsConfig())
    assert len(changes) == 1
    registry.on_change(lambda: 1 / 0)  # a failing listener does not stop the change
    registry.configure(ToolsConfig(disabled=("current_time",)))
    assert "current_time" not in [s.name for s in registry.available()]


def test_reading_mcp_json_again_stops_changed_servers_and_lists_new_ones(tmp_path):
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {"a": {"command": sys.executable, "args": [SERVER]}}}), encoding="utf-8")
    registry = ToolRegistry(ToolsConfig(), mcp_file=path)
    try:
        [tool] = registry.resolve(["a/pid"])
        pid = int(tool.run({}, threading.Event(), 30).text)
        path.write_text(
            json.dumps({"mcpServers": {"b": {"command": sys.executable, "args": [SERVER]}}}), encoding="utf-8"
        )
        registry.reload_servers()
        assert [(s.name, s.state) for s in registry.servers()] == [("b", "stopped")]
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        with pytest.raises(UnknownToolError, match="no MCP server 'a'"):
            registry.resolve(["a/pid"])
        registry.start_server("b", wait_s=30)
        assert "b/echo" in [s.name for s in registry.available()]
        registry.stop_server("b")
        assert [(s.name, s.state, s.tools) for s in registry.servers()] == [("b", "stopped", ())]
    finally:
        registry.close()
