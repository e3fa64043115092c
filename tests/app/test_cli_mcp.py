"""`locus mcp list / import / serve` as a user runs them: the real console script, real MCP servers, the real
keyring, and the `mcp` SDK's own client talking to `locus mcp serve`."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
import uuid
from pathlib import Path

import psutil
from mcp import Client, StdioServerParameters

from app.cli.mcp import app_file
from app.secrets import Secrets
from tests.app.helpers import LOCUS, locus

SERVERS = Path(__file__).resolve().parents[1] / "tools_servers"


def processes_with(marker: str) -> list[psutil.Process]:
    """Live processes whose command line holds ``marker``."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if marker in " ".join(proc.info["cmdline"] or ()) and proc.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def test_list_shows_each_server_its_tools_and_why_one_failed_and_leaves_no_process(locus_home):
    marker = f"marker-{uuid.uuid4().hex}"
    (locus_home / "mcp.json").write_text(
        json.dumps(
            {
                "mcpServers": {
                    "notes": {"command": sys.executable, "args": [str(SERVERS / "server.py"), "--stderr", marker]},
                    "junk": {"command": sys.executable, "args": [str(SERVERS / "garbage.py"), marker]},
                    "broken": {"url": "ftp://nowhere"},
                }
            }
        ),
        encoding="utf-8",
    )
    done = locus(locus_home, "mcp", "list", timeout=180)
    out = done.stdout
    assert done.returncode == 1  # a server failed
    assert f"MCP servers in {locus_home / 'mcp.json'}:" in out
    assert "! MCP server 'broken'" in out and "http:// or https://" in out
    assert "  notes  [running]  stdio:" in out
    assert "    tool notes/echo (read-only): Say the text back." in out
    assert "    tool notes/add: Add two whole numbers." in out
    assert "    resource notes://readme: readme" in out and "    prompt summarize(topic):" in out
    assert "  junk  [failed]" in out and "does not speak MCP" in out
    assert "      garbage server: about to print nonsense" in out
    assert "  calculator  (on)" in out and "  fetch_page  (off: Fetching web pages is off" in out
    assert "Traceback" not in done.stderr
    assert processes_with(marker) == []  # the command stopped every server it started

    nothing = locus(locus_home, "mcp", "list", "--no-start")
    assert "  notes  [stopped]" in nothing.stdout and "tool notes/" not in nothing.stdout


def test_import_adds_another_apps_servers_and_moves_their_secrets_to_the_keyring(locus_home, tmp_path, secret_service):
    claude = tmp_path / "claude_desktop_config.json"
    claude.write_text(
        json.dumps(
            {
                "mcpServers": {
                    "github": {
                        "command": "npx",
                        "args": ["-y", "@modelcontextprotocol/server-github"],
                        "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_realsecret123", "LOG_LEVEL": "info"},
                    },
                    "search": {
                        "url": "https://mcp.example.com/mcp",
                        "headers": {"Authorization": "Bearer sk-live-456"},
                    },
                    "old": {"type": "sse", "url": "https://old.example.com/sse"},
                    "off": {"command": "x", "disabled": True},
                }
            }
        ),
        encoding="utf-8",
    )
    (locus_home / "mcp.json").write_text(
        json.dumps({"mcpServers": {"search": {"url": "https://mine/mcp"}}}), encoding="utf-8"
    )

    done = locus(locus_home, "mcp", "import", str(claude))
    assert done.returncode == 0, done.stderr
    assert "Added 'github'." in done.stdout and "Kept 'search' as it was" in done.stdout
    assert "SSE servers are not supported" in done.stderr
    written = (locus_home / "mcp.json").read_text(encoding="utf-8")
    assert "ghp_realsecret123" not in written
    servers = json.loads(written)["mcpServers"]
    assert servers["search"] == {"url": "https://mine/mcp"}  # kept as it was
    assert servers["github"] == {
        "command": "npx",
        "args": ["-y", "@modelcontextprotocol/server-github"],
        "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "${keyring:github_github_personal_access_token}", "LOG_LEVEL": "info"},
    }
    assert "off" not in servers and "old" not in servers
    assert stat.S_IMODE(os.stat(locus_home / "mcp.json").st_mode) == 0o600
    keyring = Secrets(backend=secret_service)
    assert keyring.get("mcp.github_github_personal_access_token") == "ghp_realsecret123"
    assert "Moved a secret into the system keyring as 'mcp.github_github_personal_access_token'." in done.stdout

    again = locus(locus_home, "mcp", "import", str(claude))
    assert "Kept 'github' as it was" in again.stdout
    missing = locus(locus_home, "mcp", "import", str(tmp_path / "nope.json"))
    assert missing.returncode == 1 and "could not be read" in missing.stderr


def test_app_names_find_their_own_files(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert app_file("cursor") == tmp_path / ".cursor" / "mcp.json"
    assert app_file("lmstudio") == tmp_path / ".lmstudio" / "mcp.json"
    if sys.platform.startswith("linux"):
        assert app_file("claude") == tmp_path / ".config" / "Claude" / "claude_desktop_config.json"
    assert app_file("./some.json") == Path("./some.json")


def test_serve_offers_document_search_to_an_mcp_host(locus_home, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "lights.md").write_text(
        "# Lighthouses\n\nThe keeper of the north light climbs 112 steps each evening and trims the wick.\n",
        encoding="utf-8",
    )
    indexed = locus(locus_home, "index", str(docs), "--collection", "notes")
    assert indexed.returncode == 0, indexed.stderr

    async def host() -> dict:
        params = StdioServerParameters(command=LOCUS, args=["mcp", "serve"], env={"LOCUS_HOME": str(locus_home)})
        async with Client(params) as client:
            listed = {t.name: t for t in (await client.list_tools()).tools}
            found = await client.call_tool("search_documents", {"query": "How many steps does the keeper climb?"})
            calculated = await client.call_tool("calculator", {"expression": "0.1 + 0.2"})
            wrong = await client.call_tool("calculator", {"expr": "1"})
            unknown = await client.call_tool("fetch_page", {"url": "https://example.com"})
            return {"listed": listed, "found": found, "calculated": calculated, "wrong": wrong, "unknown": unknown}

    got = asyncio.run(asyncio.wait_for(host(), 180))
    assert sorted(got["listed"]) == ["calculator", "current_time", "search_documents"]  # read_file, fetch_page off
    assert got["listed"]["search_documents"].annotations.read_only_hint
    assert "query" in got["listed"]["search_documents"].input_schema["properties"]
    found = got["found"]
    assert not found.is_error and found.content[0].text.startswith("[1] Lighthouses")
    assert "112 steps" in found.content[0].text
    [citation] = found.structured_content["citations"]
    assert citation["path"] == str(docs / "lights.md") and citation["number"] == 1
    assert got["calculated"].content[0].text == "0.1 + 0.2 = 0.3"
    assert got["wrong"].is_error and "'expression' is a required property" in got["wrong"].content[0].text
    assert got["unknown"].is_error and "offers no tool 'fetch_page'" in got["unknown"].content[0].text
    assert processes_with(f"{LOCUS} mcp serve") == []  # it ended when the host closed its input
