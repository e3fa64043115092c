"""mcp.json in the formats other apps write, secret references, and importing another app's file."""

from __future__ import annotations

import json

import pytest

from engine.tools.errors import McpConfigError
from engine.tools.mcp_config import expand, import_servers, load_servers, parse_servers


def test_the_formats_of_claude_desktop_cursor_lm_studio_and_vs_code_are_read():
    servers, problems = parse_servers(
        {
            "mcpServers": {
                "files": {"command": "npx", "args": ["-y", "server-filesystem", "/home/me", 3], "env": {"DEBUG": 1}},
                "remote": {"url": "https://mcp.example.com/mcp", "headers": {"X-Team": "blue"}},
                "windsurf": {"serverUrl": "https://w.example.com/mcp"},
                "typed": {"type": "http", "url": "http://127.0.0.1:9000/mcp"},
                "off": {"command": "x", "disabled": True},
            }
        },
        "test",
    )
    assert problems == []
    assert sorted(servers) == ["files", "remote", "typed", "windsurf"]
    files = servers["files"]
    assert (files.transport, files.command, files.args, files.env) == (
        "stdio",
        "npx",
        ("-y", "server-filesystem", "/home/me", "3"),
        {"DEBUG": "1"},
    )
    assert servers["remote"].transport == "http" and servers["remote"].headers == {"X-Team": "blue"}
    assert servers["windsurf"].url == "https://w.example.com/mcp"
    vscode, _ = parse_servers({"servers": {"gh": {"type": "stdio", "command": "gh-mcp"}}}, "vscode")
    assert vscode["gh"].command == "gh-mcp"


def test_a_bad_entry_is_left_out_with_the_reason_and_the_others_kept():
    servers, problems = parse_servers(
        {
            "mcpServers": {
                "good": {"command": "ok"},
                "nothing": {},
                "sse": {"type": "sse", "url": "https://x/sse"},
                "ftp": {"url": "ftp://x"},
                "args": {"command": "x", "args": "not a list"},
                "env": {"command": "x", "env": ["A=1"]},
                "my server": {"command": "a"},
                "my_server": {"command": "b"},
                "list": ["not", "an", "object"],
            }
        },
        "mcp.json",
    )
    assert sorted(servers) == ["good", "my server"]
    text = "\n".join(problems)
    for name, words in [
        ("nothing", "neither"),
        ("sse", "SSE servers are not supported"),
        ("ftp", "http:// or https://"),
        ("args", "list of text"),
        ("env", "names and text values"),
        ("my_server", "would name their tools alike ('my_server/…')"),
        ("list", "should be an object"),
    ]:
        assert name in text and words in text, name
    assert servers["my server"].prefix == "my_server"  # tool names are "my_server/tool"


def test_a_missing_or_broken_file_is_no_servers_and_says_why(tmp_path):
    assert load_servers(tmp_path / "mcp.json") == ({}, [])
    (tmp_path / "mcp.json").write_text("{not json", encoding="utf-8")
    servers, [problem] = load_servers(tmp_path / "mcp.json")
    assert servers == {} and "is not valid JSON" in problem
    (tmp_path / "mcp.json").write_text('{"servers": 1}', encoding="utf-8")
    assert "should be an object" in load_servers(tmp_path / "mcp.json")[1][0]


def test_references_are_filled_from_the_keyring_and_the_environment():
    keyring = {"mcp.gh": "ghp_123"}
    assert expand("Bearer ${keyring:gh}", keyring.get) == "Bearer ghp_123"
    assert expand("${env:HOME_DIR}/x", keyring.get, {"HOME_DIR": "/home/me"}) == "/home/me/x"
    assert expand("plain $HOME ${other}", keyring.get) == "plain $HOME ${other}"
    with pytest.raises(McpConfigError, match=r"locus secrets set mcp\.nope"):
        expand("${keyring:nope}", keyring.get)
    with pytest.raises(McpConfigError, match="the environment has no MISSING"):
        expand("${env:MISSING}", keyring.get, {})


def test_import_moves_literal_secrets_out_and_keeps_existing_servers(tmp_path):
    source = tmp_path / "cursor.json"
    source.write_text(
        json.dumps(
            {
                "mcpServers": {
                    "api": {
                        "url": "https://api.example.com/mcp",
                        "headers": {"Authorization": "Bearer sk-1", "X-Ref": "${keyring:x}"},
                    },
                    "tool": {"command": "t", "env": {"API_KEY": "k-2", "MODE": "fast"}},
                    "mine": {"command": "other"},
                }
            }
        ),
        encoding="utf-8",
    )
    target = tmp_path / "mcp.json"
    target.write_text(json.dumps({"mcpServers": {"mine": {"command": "keep"}}, "other": 1}), encoding="utf-8")
    stored: dict[str, str] = {}
    outcome = import_servers(source, target, lambda name, value: stored.setdefault(name, value) is not None)
    assert outcome.added == ("api", "tool") and outcome.skipped == ("mine",)
    assert stored == {"mcp.api_authorization": "Bearer sk-1", "mcp.tool_api_key": "k-2"}
    written = json.loads(target.read_text(encoding="utf-8"))
    assert written["other"] == 1 and written["mcpServers"]["mine"] == {"command": "keep"}
    assert written["mcpServers"]["api"]["headers"] == {
        "Authorization": "${keyring:api_authorization}",
        "X-Ref": "${keyring:x}",
    }
    assert written["mcpServers"]["tool"]["env"] == {"API_KEY": "${keyring:tool_api_key}", "MODE": "fast"}

    no_keyring = import_servers(source, tmp_path / "fresh.json", lambda name, value: False)
    assert no_keyring.secrets_missing == ("mcp.api_authorization", "mcp.tool_api_key")
    assert "sk-1" not in (tmp_path / "fresh.json").read_text(encoding="utf-8")
