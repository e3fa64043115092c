"""The composition root's tools: one registry for the assistant and the window, from the [tools] settings and
<config>/mcp.json, its servers stopped when Locus closes."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import psutil

from app import settings as st
from app.paths import resolve_paths
from app.services import build_services

SERVER = Path(__file__).resolve().parents[1] / "tools_servers" / "server.py"


def test_the_assistant_calls_the_registry_built_from_the_tools_settings(locus_home, tmp_path):
    settings = (
        st.Settings()
        .with_value("tools.allowed_folders", [str(tmp_path)])
        .with_value("tools.trusted", ["calculator", "notes/*"])
        .with_value("tools.trust_read_only", True)
        .with_value("tools.max_steps", 3)
        .with_value("tools.max_tokens", 999)
        .with_value("tools.max_seconds", 42.0)
        .with_value("tools.call_timeout_s", 7.0)
        .with_value("tools.result_max_chars", 1234)
    )
    st.save(settings, locus_home / "config.toml")
    services = build_services(resolve_paths())
    try:
        assert services.assistant.tools is services.tools
        agent = services.assistant.settings.agent
        assert (agent.max_steps, agent.max_tokens, agent.max_seconds, agent.call_timeout_s, agent.result_max_chars) == (
            3,
            999,
            42.0,
            7.0,
            1234,
        )
        assert agent.trusted == ("calculator", "notes/*") and agent.trust_read_only
        config = services.tools.config
        assert config.allowed_folders == (str(tmp_path),) and config.result_max_chars == 1234
        assert "read_file" in [s.name for s in services.tools.available()]

        services.update_settings(lambda s: s.with_value("tools.allowed_folders", []).with_value("tools.max_steps", 5))
        assert "read_file" not in [s.name for s in services.tools.available()]
        assert services.assistant.settings.agent.max_steps == 5
    finally:
        services.close()


def test_closing_stops_the_mcp_servers_of_mcp_json(locus_home):
    (locus_home / "mcp.json").write_text(
        json.dumps({"mcpServers": {"notes": {"command": sys.executable, "args": [str(SERVER)]}}}), encoding="utf-8"
    )
    services = build_services(resolve_paths())
    try:
        assert [(s.name, s.state) for s in services.tools.servers()] == [("notes", "stopped")]
        [tool] = services.tools.resolve(["notes/pid"])
        pid = int(tool.run({}, threading.Event(), 30).text)
        assert psutil.pid_exists(pid)
    finally:
        services.close()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
