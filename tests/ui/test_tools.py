"""Tools in the window, driven like a user with pytest-qt: the Tools panel over real MCP servers (real
processes from mcp.json), the tool picker, tool calls inline in the answer with their approval prompt on the
bundled model, what was called shown again on reopening, and the quick ask doing the same.

Set LOCUS_SCREENSHOTS to a folder (docs/screenshots) to save the panel's and an answer's screenshots."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog, QLabel, QPushButton

from engine.tools.base import ToolCall, ToolResult
from tests.ui.tools_server import PAYLOAD, payload
from ui.chat.message import MessageWidget
from ui.chat.tool_calls import ApprovalPrompt, CallState, ToolCallList, ToolCallRow
from ui.traces.window import TraceWindow
from ui.tray import Tray

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


def shoot(qtbot, widget, name: str) -> None:
    """Save a screenshot of ``widget`` when LOCUS_SCREENSHOTS names a folder (docs/screenshots), once the
    rows and messages just shown are laid out (a layout is applied on the next turns of the event loop)."""
    folder = os.environ.get("LOCUS_SCREENSHOTS")
    if folder:
        laid_out = [*widget.findChildren(ToolCallRow), *widget.findChildren(MessageWidget)]
        qtbot.waitUntil(
            lambda: all(w.height() >= w.minimumSizeHint().height() for w in laid_out if w.isVisible()), timeout=5000
        )
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
        qtbot.waitUntil(lambda: "Starting the MCP server" not in window.statusBar().currentMessage())
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
        shoot(qtbot, window, "tools-panel.png")

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
    row.grab()  # a paint of the whole row, now: an image in it would be loaded
    assert row.result.toPlainText() == hostile
    assert row.status_label.text() == "done" and row.duration_label.text() == "250 ms"
    assert row.approval_label.text() == "Allowed once."
    assert asked == [("call_1", "once")]  # the result's "approve" words pressed nothing
    assert fifo_trap.opened == 0

    saved = ToolCallRow(CallState.saved({"name": "<b>x</b>", "status": "denied", "approval": "deny", "result": "no"}))
    qtbot.addWidget(saved)
    assert saved.name_label.text() == "<b>x</b>" and saved.name_label.textFormat() == Qt.TextFormat.PlainText
    assert saved.status_label.text() == "denied"


def menu_action(menu, text: str):
    """The action of ``menu`` a person would click for ``text`` (mnemonic ampersands aside)."""
    for action in menu.actions():
        if action.text().replace("&&", "&") == text or action.text().replace("&", "") == text:
            return action
    raise AssertionError(f"no {text!r} in {[a.text() for a in menu.actions()]}")


def pick(qtbot, picker, text: str, submenu: str | None = None) -> None:
    """Choose ``text`` in the tool picker's menu (in its ``submenu``), as a click on it does."""
    menu = picker.menu()
    if submenu is not None:
        menu = menu_action(menu, submenu).menu()
    action = menu_action(menu, text)
    assert action.isEnabled(), text
    action.trigger()


def answer_prompts(qtbot, calls, finished, first: str, then: str = "denyCall", shot=None, timeout=120_000):
    """Answer the approval prompts shown in ``calls`` (a ToolCallList) as a person clicks them: the first with
    ``first`` ("allowOnce", "allowConversation" or "denyCall"), any later one (the model may call again when
    it is free to) with ``then``, until ``finished`` (a signal) says the answer ended; ``shot`` (widget,
    name) is a screenshot taken at the first prompt. Returns what the prompts asked (title, arguments) and
    the finished signal's first argument."""
    ended: list = []
    finished.connect(ended.append)
    asked = []
    try:
        while not ended:
            qtbot.waitUntil(lambda: bool(ended or calls.prompts()), timeout=timeout)
            for prompt in calls.prompts():
                asked.append((prompt.title.text(), prompt.arguments.toPlainText()))
                if len(asked) == 1 and shot:
                    shoot(qtbot, *shot)
                press(qtbot, prompt.findChild(QPushButton, first if len(asked) == 1 else then))
    finally:
        finished.disconnect(ended.append)
    return asked, ended[0]


def runs(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").split()) if path.exists() else 0


def test_a_tool_call_in_the_window_asks_first_allow_runs_it_deny_never_and_reopening_shows_both(
    qtbot, loaded_window, services, locus_home, fifo_trap, gui_guard, tmp_path
):
    window = loaded_window
    ran = tmp_path / "report-runs.txt"
    write_mcp(
        locus_home,
        {
            "ui": {
                "command": sys.executable,
                "args": [str(UI_SERVER)],
                # A tool that takes a second: the window stays responsive while it runs.
                "env": {"LOCUS_TEST_TRAP": str(fifo_trap.path), "LOCUS_TEST_RUNS": str(ran), "LOCUS_TEST_DELAY": "1"},
            }
        },
    )
    chat = services.assistant.settings
    services.assistant.settings = replace(chat, sampling=replace(chat.sampling, max_tokens=48, seed=7))
    picker = window.tool_picker
    expected = payload(str(fifo_trap.path))
    window.documents.dock.hide()  # more room for the answers (and the screenshot)
    window.resize(1280, 820)
    with gui_guard:
        # mcp.json read again (as its editor's Save or the panel's Reload does): the picker lists the server,
        # not started yet; starting it from the picker lists its tools.
        window.tools.reload()
        qtbot.waitUntil(lambda: [s.name for s in picker.snapshot.servers] == ["ui"], timeout=20_000)
        assert picker.text() == "Tools: off"
        pick(qtbot, picker, "Start ui to list its tools")
        qtbot.waitUntil(lambda: "ui/report" in [s.name for s in picker.snapshot.usable()], timeout=60_000)
        pick(qtbot, picker, "ui/report")
        pick(qtbot, picker, "Must call a tool", submenu="Next question")
        assert picker.value == ["ui/report"] and picker.text() == "Tools: ui/report · must call"

        # Ask: the call shows inline in the answer, waiting for the user; nothing has run yet.
        qtbot.keyClicks(window.composer, "Read the quarterly report.")
        qtbot.keyClick(window.composer, Qt.Key.Key_Return)
        answer = window.answer_widget
        qtbot.waitUntil(lambda: bool(answer.tool_calls.prompts()), timeout=120_000)
        assert runs(ran) == 0 and answer.tool_calls.isVisible()
        row = answer.tool_calls.rows()[0]
        assert row.name_label.text() == "ui/report" and row.status_label.text() == "waiting for your approval"
        assert picker.text() == "Tools: ui/report"  # "must call" was for that question only
        asked, ended = answer_prompts(qtbot, answer.tool_calls, window.answerFinished, "allowOnce")
        assert asked[0] == ("Allow the tool “ui/report” to run?", "(no arguments)")
        assert ended.complete, ended.error
        assert runs(ran) == 1  # allowed once: it ran, once (a later call, if any, was denied)
        row = answer.tool_calls.rows()[0]
        assert row.status_label.text() == "done" and row.state.approval == "once"
        row.set_expanded(True)
        assert row.result.toPlainText() == expected  # the tool's markup, as the characters it is
        assert row.approval_label.text() == "Allowed once."
        first_calls = [r.state.status for r in answer.tool_calls.rows()]

        # Deny: the call never runs; the model is told, and the answer still ends.
        pick(qtbot, picker, "Must call a tool", submenu="Next question")
        qtbot.keyClicks(window.composer, "Read the report again.")
        qtbot.keyClick(window.composer, Qt.Key.Key_Return)
        answer = window.answer_widget
        asked, ended = answer_prompts(
            qtbot, answer.tool_calls, window.answerFinished, "denyCall", shot=(window, "tool-call.png")
        )
        assert asked and ended.complete, ended.error
        assert runs(ran) == 1
        rows = answer.tool_calls.rows()
        assert rows[0].status_label.text() == "denied" and rows[0].state.approval == "deny"
        rows[0].set_expanded(True)
        assert rows[0].approval_label.text() == "Denied: the model was told it may not run."

        # Reopening the conversation shows both answers' calls again, from what was saved.
        conversation = window.conversation_id
        qtbot.mouseClick(window.sidebar.new_button, Qt.MouseButton.LeftButton)
        assert window.chat.messages() == [] and picker.text() == "Tools: off"
        window.sidebar.list.setCurrentItem(window.sidebar.item_for(conversation))
        qtbot.waitUntil(lambda: len(window.chat.messages()) == 4, timeout=10_000)
        answers = [w for w in window.chat.messages() if w.role == "assistant"]
        assert [r.state.status for r in answers[0].tool_calls.rows()] == first_calls
        saved = answers[0].tool_calls.rows()[0]
        assert saved.name_label.text() == "ui/report" and saved.status_label.text() == "done"
        saved.set_expanded(True)
        assert saved.result.toPlainText() == expected
        assert answers[1].tool_calls.rows()[0].status_label.text() == "denied"
        assert picker.value == ["ui/report"]  # the conversation keeps its tools
        window.grab()  # a paint of the window with the rows open, now: an image in them would be loaded
    assert gui_guard.entered == [], "blocking work on the GUI thread:\n" + "\n".join(gui_guard.entered)
    assert fifo_trap.opened == 0  # neither the result rows nor the answers' text loaded the named pipe

    # The trace viewer shows the agent's steps in order: the generation that asked for the call, the call,
    # then the generation that read its result.
    qtbot.waitUntil(lambda: answers[0].trace_button.isVisible(), timeout=10_000)
    qtbot.mouseClick(answers[0].trace_button, Qt.MouseButton.LeftButton)
    viewer = window.findChild(TraceWindow)
    assert viewer is not None and viewer.isVisible()
    viewer.timer.stop()

    def steps() -> list[str]:
        return [name for depth, name in viewer.tree.outline() if depth == 1]

    qtbot.waitUntil(
        lambda: viewer.trace_id == answers[0].trace_id and "execute_tool ui/report" in steps(), timeout=15_000
    )
    shown = steps()
    assert shown[0].startswith("chat ") and shown[1] == "execute_tool ui/report" and shown[2].startswith("chat "), shown
    call = next(s for s in viewer.spans if s.name == "execute_tool ui/report")
    assert call.attributes["gen_ai.tool.name"] == "ui/report"


def test_quick_ask_picks_tools_shows_the_call_and_its_approval_like_the_window(
    qtbot, loaded_window, services, locus_home, fifo_trap, gui_guard, tmp_path
):
    window = loaded_window
    ran = tmp_path / "report-runs.txt"
    env = {"LOCUS_TEST_TRAP": str(fifo_trap.path), "LOCUS_TEST_RUNS": str(ran)}
    write_mcp(locus_home, {"ui": {"command": sys.executable, "args": [str(UI_SERVER)], "env": env}})
    window.tools.reload()
    chat = services.assistant.settings
    services.assistant.settings = replace(chat, sampling=replace(chat.sampling, max_tokens=48, seed=7))
    tray = Tray(window, services, quit_app=lambda: None)
    qtbot.addWidget(tray.quick_ask)
    try:
        with gui_guard:
            popup = tray.open_quick_ask()
            picker = popup.tool_picker
            qtbot.waitUntil(lambda: [s.name for s in picker.snapshot.servers] == ["ui"], timeout=20_000)
            assert "Tools panel…" not in [a.text() for a in picker.menu().actions()]  # no panel in the popup
            pick(qtbot, picker, "Start ui to list its tools")
            qtbot.waitUntil(lambda: "ui/report" in [s.name for s in picker.snapshot.usable()], timeout=60_000)
            pick(qtbot, picker, "ui/report")
            pick(qtbot, picker, "Must call a tool", submenu="Next question")
            qtbot.keyClicks(popup.input, "Read the quarterly report.")
            qtbot.keyClick(popup.input, Qt.Key.Key_Return)
            qtbot.waitUntil(lambda: bool(popup.tool_calls.prompts()), timeout=120_000)
            assert runs(ran) == 0 and popup.tool_calls.isVisible()
            assert popup.status.text() == "Waiting for you to allow ui/report…"
            prompt = popup.tool_calls.prompts()[0]
            # The popup grew to show the whole prompt, its buttons inside it.
            qtbot.waitUntil(lambda: popup.height() >= popup.sizeHint().height() and prompt.deny.isVisible())
            assert popup.rect().contains(prompt.deny.mapTo(popup, prompt.deny.rect().bottomRight()))
            shoot(qtbot, popup, "quick-ask-tool-call.png")
            asked, conversation = answer_prompts(qtbot, popup.tool_calls, popup.answered, "allowOnce")
            assert asked[0] == ("Allow the tool “ui/report” to run?", "(no arguments)")
            assert popup.status.text().startswith("Saved as a conversation"), popup.status.text()
            assert runs(ran) == 1
            row = popup.tool_calls.rows()[0]
            assert row.status_label.text() == "done" and row.state.approval == "once"
            row.set_expanded(True)
            assert row.result.toPlainText() == payload(str(fifo_trap.path))
            popup.grab()  # a paint of the popup with the row open, now: an image in it would be loaded

            # Continued in the window: the conversation keeps its tools and shows the call it made.
            qtbot.mouseClick(popup.continue_button, Qt.MouseButton.LeftButton)
            qtbot.waitUntil(lambda: window.conversation_id == conversation and len(window.chat.messages()) == 2)
            rows = window.chat.messages()[1].tool_calls.rows()
            assert [r.status_label.text() for r in rows][:1] == ["done"] and window.tool_picker.value == ["ui/report"]
        assert gui_guard.entered == [], "blocking work on the GUI thread:\n" + "\n".join(gui_guard.entered)
        assert fifo_trap.opened == 0
    finally:
        window.removeEventFilter(tray)  # the fixtures close the window next: that is no quit
