"""Which tools a conversation's answers may call, and whether the next question must call one.

A button with a menu beside the documents and backend choices: no tools, or any of the built-ins that can
run and the tools of the MCP servers that are running (a stopped server offers to start, to list its
tools). The choice is saved on the conversation (``history.set_options(tools=...)`` by the window); the
"next question" choice (tool_choice) is for one question only and goes back to "the model decides".
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import QMenu, QToolButton, QWidget

from ui.plain import literal, mnemonic_safe
from ui.tools.watch import ToolsSnapshot

CHOICES = (
    ("auto", "The model decides"),
    ("required", "Must call a tool"),
    ("none", "Must not call a tool"),
)
MAX_DESCRIPTION = 300  # characters of a tool's description in its tooltip


def describe(value: list[str], tool_choice: str = "auto") -> str:
    """The button's words: 'Tools: off', 'Tools: calculator', 'Tools: 3'."""
    if not value:
        return "Tools: off"
    words = f"Tools: {value[0]}" if len(value) == 1 else f"Tools: {len(value)}"
    if tool_choice == "required":
        words += " · must call"
    elif tool_choice == "none":
        words += " · no calls"
    elif tool_choice != "auto":
        words += f" · call {tool_choice}"
    return words


class ToolPicker(QToolButton):
    """``value``: the tools chosen (names; [] for none); ``tool_choice``: for the next question only."""

    valueChanged = Signal(list)  # a person changed the tools
    startRequested = Signal(str)  # start this MCP server (to list its tools)
    panelRequested = Signal()  # open the Tools panel

    def __init__(self, parent: QWidget | None = None, *, name: str = "toolPicker", panel: bool = True):
        super().__init__(parent)
        self.setObjectName(name)
        self.offers_panel = panel  # the menu ends with "Tools panel…" (not where there is no panel to open)
        self.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.setToolTip("Tools this conversation's answers may call (each call asks you first unless trusted)")
        self.value: list[str] = []
        self.tool_choice = "auto"
        self.picked = False  # a person changed the value since the conversation was shown
        self.snapshot = ToolsSnapshot()
        menu = QMenu(self)
        menu.setToolTipsVisible(True)
        self.setMenu(menu)
        self._rebuild()

    # Values ------------------------------------------------------------------------------

    def set_value(self, value: list[str] | None) -> None:
        """Show a conversation's saved tools (None: none) without announcing them."""
        self.value = list(dict.fromkeys(value or []))
        self.picked = False
        self.tool_choice = "auto"
        self._rebuild()

    def set_snapshot(self, snapshot: ToolsSnapshot) -> None:
        """The tools there are now (from a ToolsWatch)."""
        self.snapshot = snapshot
        self._rebuild()

    def choose(self, value: list[str]) -> None:
        """What the menu does: set the tools and announce them."""
        self.value = list(dict.fromkeys(value))
        self.picked = True
        if self.tool_choice not in ("auto", "required", "none") and self.tool_choice not in self.value:
            self.tool_choice = "auto"
        self._rebuild()
        self.valueChanged.emit(list(self.value))

    def set_tool_choice(self, choice: str) -> None:
        """For the next question: "auto", "required", "none" or one of the chosen tools' names."""
        self.tool_choice = choice
        self._rebuild()

    def take_tool_choice(self) -> str:
        """The next question's tool_choice; the choice goes back to "auto" for the questions after it."""
        choice, self.tool_choice = self.tool_choice, "auto"
        self._rebuild()
        return choice if self.value else "auto"

    def ask_options(self, *, new: bool) -> dict:
        """What to pass to Assistant.ask: the tools when a person picked them here (or any, for a new
        conversation) and the next question's tool_choice."""
        options: dict = {}
        if self.picked or (new and self.value):
            options["tools"] = list(self.value)
        choice = self.take_tool_choice()
        if choice != "auto":
            options["tool_choice"] = choice
        return options

    # The menu ----------------------------------------------------------------------------

    def _toggle(self, name: str, checked: bool) -> None:
        chosen = [n for n in self.value if n != name] + ([name] if checked else [])
        self.choose(chosen)

    def _tool_action(self, menu: QMenu, name: str, description: str, usable: bool, reason: str = "") -> QAction:
        label = name if usable else f"{name} (off)"
        action = QAction(mnemonic_safe(label), menu, checkable=True, checked=name in self.value)
        action.setEnabled(usable or name in self.value)  # a chosen tool that is off can still be taken away
        tip = reason if not usable and reason else " ".join(description.split())[:MAX_DESCRIPTION]
        action.setToolTip(literal(tip))
        action.triggered.connect(lambda checked, n=name: self._toggle(n, checked))
        menu.addAction(action)
        return action

    def _rebuild(self) -> None:
        menu = self.menu()
        menu.clear()
        off = QAction("No tools", menu, checkable=True, checked=not self.value)
        off.triggered.connect(lambda: self.choose([]))
        menu.addAction(off)
        listed: set[str] = set()
        snapshot = self.snapshot
        if snapshot.builtins:
            menu.addSection("Built-in tools")
        for builtin in snapshot.builtins:
            spec = builtin.spec
            listed.add(spec.name)
            self._tool_action(menu, spec.name, spec.description, builtin.available, builtin.reason or "")
        for server in snapshot.servers:
            menu.addSection(mnemonic_safe(f"MCP: {server.name}"))
            for spec in server.tools:
                listed.add(spec.name)
                off_reason = "It is switched off in the Tools panel." if snapshot.config.is_disabled(spec.name) else ""
                self._tool_action(menu, spec.name, spec.description, not off_reason, off_reason)
            if not server.tools:
                words = {
                    "failed": f"{server.name} failed: start it again",
                    "starting": f"{server.name} is starting…",
                }.get(server.state, f"Start {server.name} to list its tools")
                start = QAction(mnemonic_safe(words), menu)
                start.setEnabled(server.state != "starting")
                start.triggered.connect(lambda _checked=False, n=server.name: self.startRequested.emit(n))
                menu.addAction(start)
        missing = [n for n in self.value if n not in listed]
        if missing:
            menu.addSection("Chosen, not available now")
            for name in missing:
                self._tool_action(menu, name, "", False, "Not available now: its server is not running, or it is gone.")
        menu.addSeparator()
        self._add_choice_menu(menu)
        if self.offers_panel:
            panel = QAction("Tools panel…", menu)
            panel.triggered.connect(self.panelRequested)
            menu.addAction(panel)
        self.setText(mnemonic_safe(describe(self.value, self.tool_choice)))

    def _add_choice_menu(self, menu: QMenu) -> None:
        sub = menu.addMenu("Next question")
        sub.setObjectName("toolChoiceMenu")
        sub.setEnabled(bool(self.value))
        group = QActionGroup(sub)
        choices = list(CHOICES) + [(name, f"Must call {name}") for name in self.value]
        for choice, words in choices:
            action = QAction(mnemonic_safe(words), sub, checkable=True, checked=self.tool_choice == choice)
            action.triggered.connect(lambda _checked=False, c=choice: self.set_tool_choice(c))
            group.addAction(action)
            sub.addAction(action)
