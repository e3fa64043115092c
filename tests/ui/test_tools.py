"""Tools in the window, driven like a user with pytest-qt: the Tools panel over real MCP servers (real
processes from mcp.json), the tool picker, tool calls inline in the answer with their approval prompt on the
bundled model, what was called shown again on reopening, and the quick ask doing the same.

Set LOCUS_SCREENSHOTS to a folder (docs/screenshots) to save the panel's and an answer's screenshots."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog, QLabel

from engine.tools.base import ToolCall, ToolResult
from tests.ui.tools_server import PAYLOAD
from ui.chat.tool_calls import ApprovalPrompt, CallState, ToolCallList, ToolCallRow

REPO = Path(__file__).resolve().parents[2]
TEST_SERVER = REPO / "tests" / "tools_servers" / "server.py"
GARBAGE = REPO / "tests" / "tools_servers" / "garbage.py"
UI_SERVER = REPO / "tests" / "ui" / "tools_server.py"
SHOTS = REPO / "docs" / "screenshots"


def write_mcp(home: Path, servers: dict) -> Path:
    path = home / "mcp.json"
    path.write_text(json.dumps({"mcpServers": servers}), encoding="utf-8")
    return path


@pytest.fixture()
def mcp_servers(locus_home):
    """mcp.json with the project's test MCP server and one that answers garbage."""
    return write_mcp(
        locus_home,
        {
            "test": {"command": sys.executable, "args": [str(TEST_SERVER)]},
            "garbage": {"command": sys.executable, "args": [str(GARBAGE)]},
        },
    )


def tree_texts(tree, column=0) -> list[str]:
    out = []
    stack = [tree.topLevelItem(i) for i in range(tree.topLevelItemCount())]
    while stack:
        item = stack.pop(0)
        out.append(item.text(column))
        stack += [item.child(i) for i in range(item.childCount())]
    return out


def shoot(widget, name: str) -> None:
    """Save a screenshot of ``widget`` when LOCUS_SCREENSHOTS names a folder (docs/screenshots)."""
    folder = os.environ.get("LOCUS_SCREENSHOTS")
    if folder:
        assert widget.grab().save(str(Path(folder) / name))


def press(qtbot, button):
    """Click a button as a person does: once it is laid out on screen and enabled."""
    qtbot.waitUntil(lambda: button.isVisible() and button.isEnabled() and not button.rect().isEmpty())
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def server_state(panel, name):
    return next((s.state for s in panel.snapshot.servers if s.name == name), None)


def test_tools_panel_lists_a_real_servers_tools_and_a_failed_one_with_its_stderr(
    qtbot, window, services, mcp_servers, gui_guard, monkeypatch, tmp_path
):
    panel = window.tools.panel
    with gui_guard:
        window.tools.open()
        assert window.tools.dock.isVisible()
        qtbot.waitUntil(lambda: [s.name for s in panel.snapshot.servers] == ["test", "garbage"], timeout=20_000)
        assert server_state(panel, "test") == "stopped"  # listed, not started: nothing runs until it is wanted
        for name in ("test", "garbage"):
            panel.server_tree.setCurrentItem(panel.server_item(name))
            press(qtbot, panel.start_button)
        qtbot.waitUntil(lambda: server_state(panel, "test") == "running", timeout=60_000)
        qtbot.waitUntil(lambda: server_state(panel, "garbage") == "failed", timeout=60_000)
        # The running server: its tools (with on/off and trusted switches), its resource and its prompt.
        names = tree_texts(panel.server_tree)
        for tool in ("echo", "add", "sleep", "crash", "huge", "inject", "picture"):
            assert tool in names, names
        assert "readme" in names and "summarize" in names
        assert panel.server_item("test").text(1) == f"running · {len(panel.snapshot.servers[0].tools)} tools"
        assert panel.tool_item("test/echo").text(1) == "read-only"
        # The failed one: its state, its error and the last lines it wrote to stderr, as plain text.
        panel.server_tree.setCurrentItem(panel.server_item("garbage"))
        assert panel.server_item("garbage").text(1) == "failed"
        assert panel.server_state.text().startswith("Failed: ")
        assert "garbage server: about to print nonsense" in panel.stderr.toPlainText()
        assert panel.stderr.isVisibleTo(panel) and panel.start_button.text() == "Start again"
        window.resize(1280, 820)
        qtbot.wait(100)
        shoot(window, "tools-panel.png")

        # A tool switched off is saved in [tools] disabled and leaves the picker; on again, it is back.
        item = panel.tool_item("test/add")
        item.setCheckState(0, Qt.CheckState.Unchecked)
        qtbot.waitUntil(lambda: "test/add" in services.settings.tools.disabled, timeout=10_000)
        qtbot.waitUntil(lambda: "test/add" not in [s.name for s in window.tool_picker.snapshot.usable()])
        panel.tool_item("test/add").setCheckState(0, Qt.CheckState.Checked)
        qtbot.waitUntil(lambda: "test/add" not in services.settings.tools.disabled, timeout=10_000)
        qtbot.waitUntil(lambda: "test/add" in [s.name for s in window.tool_picker.snapshot.usable()])

        # Built-ins: fetch_page off, saying it is the only thing that goes to the network; read_file needs a folder.
        builtins = {b.spec.name: b for b in panel.snapshot.builtins}
        panel.tabs.setCurrentIndex(1)
        assert not builtins["fetch_page"].available and panel.tool_item("fetch_page").text(1) == "off"
        assert "fetch_page: Fetching web pages is off: it is the only thing in Locus that goes to the internet" in (
            panel.reasons.text()
        )
        assert "only thing in Locus that goes to the internet" in panel.findChild(QLabel, "networkNote").text()
        assert not builtins["read_file"].available and panel.tool_item("read_file").text(1) == "off"
        assert "read_file: no folder is allowed" in panel.reasons.text()
        folder = tmp_path / "notes"
        folder.mkdir()
        monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(folder))
        press(qtbot, panel.add_folder_button)
        qtbot.waitUntil(lambda: services.settings.tools.allowed_folders == [str(folder)], timeout=10_000)
        qtbot.waitUntil(lambda: panel.tool_item("read_file").text(1) == "on")
        assert [panel.folders.item(i).text() for i in range(panel.folders.count())] == [str(folder)]
        panel.fetch.click()
        qtbot.waitUntil(lambda: services.settings.tools.fetch_enabled, timeout=10_000)
        qtbot.waitUntil(lambda: panel.tool_item("fetch_page").text(1) == "on")
        panel.fetch.click()
        qtbot.waitUntil(lambda: not services.settings.tools.fetch_enabled, timeout=10_000)

        # Stop the running server: its tools leave the picker.
        panel.tabs.setCurrentIndex(0)
        panel.server_tree.setCurrentItem(panel.server_item("test"))
        press(qtbot, panel.stop_button)
        qtbot.waitUntil(lambda: server_state(panel, "test") == "stopped", timeout=20_000)
    assert gui_guard.entered == [], "blocking work on the GUI thread:\n" + "\n".join(gui_guard.entered)
    saved = (Path(services.paths.config_file)).read_text(encoding="utf-8")
    assert str(folder) in saved


def test_tool_call_rows_show_untrusted_text_as_the_characters_it_is(qtbot, fifo_trap):
    """A result full of markup and orders: every character shown as it is, nothing loaded, nothing pressed."""
    hostile = PAYLOAD.replace("/dev/zero", str(fifo_trap.path)) + '\n<img src="/dev/zero">'
    calls = ToolCallList()
    qtbot.addWidget(calls)
    asked: list = []
    calls.approvalGiven.connect(lambda *a: asked.append(a))
    call = ToolCall("call_1", "srv/report", {"q": '<img src="/dev/zero">', "n": [1, 2]})
    calls.call_started(call, 1)
    prompt = calls.approval_needed(call)
    calls.show()
    row = calls.rows()[0]
    assert isinstance(prompt, ApprovalPrompt) and row.prompt is prompt
    assert '"q": "<img src=\\"/dev/zero\\">"' in prompt.arguments.toPlainText()
    assert row.status_label.text() == "waiting for your approval"
    prompt.allow_once.click()
    assert asked == [("call_1", "once")] and row.prompt is None and row.status_label.text() == "running…"
    calls.call_ended(ToolResult("call_1", "ok", hostile, duration_s=0.25))
    row.set_expanded(True)
    qtbot.wait(50)  # a paint of the whole row: an image in it would be loaded now
    assert row.result.toPlainText() == hostile
    assert row.status_label.text() == "done" and row.duration_label.text() == "250 ms"
    assert row.approval_label.text() == "Allowed once."
    assert asked == [("call_1", "once")]  # the result's "approve" words pressed nothing
    assert fifo_trap.opened == 0

    saved = ToolCallRow(CallState.saved({"name": "<b>x</b>", "status": "denied", "approval": "deny", "result": "no"}))
    qtbot.addWidget(saved)
    assert saved.name_label.text() == "<b>x</b>" and saved.name_label.textFormat() == Qt.TextFormat.PlainText
    assert saved.status_label.text() == "denied"
