"""The context meter under the composer: how much of the model's context the next question takes (a thin bar
and "1.2k / 8k tokens", the split in its tooltip), amber then red with a sentence before the oldest messages
stop fitting; "Compact now", and automatic compaction when Settings › Chat › Compact long conversations is on.

Measuring (engine/context_meter.py) and compacting (engine/compaction.py) run off the GUI thread; the meter is
measured again after each answer, when another conversation or a new one is shown, when a model loads, after
a compaction and after a summary is edited.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, cast

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QHBoxLayout, QProgressBar, QPushButton, QVBoxLayout, QWidget

from engine.compaction import CompactionHandle, CompactionResult, compact
from engine.context_meter import ContextMeter, ContextUsage
from engine.history.store import UNSET
from ui.errors import describe
from ui.ops import run_in_background
from ui.plain import literal, plain_label

if TYPE_CHECKING:
    from engine.assistants import Preset

log = logging.getLogger(__name__)

COLOURS = {"ok": "palette(highlight)", "warn": "#d08a00", "full": "#c62828"}


def short(n: int) -> str:
    """1234 -> '1.2k'; a window of 8192 -> '8k'."""
    if n < 1000:
        return str(n)
    if n % 1024 == 0:
        return f"{n // 1024}k"
    value = n / 1000
    return f"{value:.0f}k" if value >= 10 else f"{value:.1f}k"


class ContextMeterBar(QWidget):
    """The bar, its label, the warning sentence and 'Compact now' (which reads 'Stop' while compacting)."""

    compactRequested = Signal()
    stopRequested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("contextMeter")
        self.level = "ok"
        self.compacting = False
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 2, 0, 0)
        column.setSpacing(2)
        row = QHBoxLayout()
        row.setSpacing(8)
        self.bar = QProgressBar(self)
        self.bar.setObjectName("contextMeterBar")
        self.bar.setRange(0, 1000)
        self.bar.setTextVisible(False)
        self.bar.setFixedSize(140, 6)
        self.label = plain_label("", self, name="contextMeterLabel")
        self.button = QPushButton("Compact now", self)
        self.button.setObjectName("compactButton")
        self.button.setFlat(True)
        self.button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.button.setStyleSheet("QPushButton { color: palette(link); border: none; padding: 0 4px; }")
        self.button.clicked.connect(
            lambda: self.stopRequested.emit() if self.compacting else self.compactRequested.emit()
        )
        row.addWidget(self.bar, 0, Qt.AlignmentFlag.AlignVCenter)
        row.addWidget(self.label)
        row.addStretch(1)
        row.addWidget(self.button)
        column.addLayout(row)
        self.warning = plain_label("", self, name="contextWarning", wrap=True)
        self.warning.hide()
        column.addWidget(self.warning)
        self.show_usage(None)

    def _clicked(self) -> None:
        (self.stopRequested if self.compacting else self.compactRequested).emit()

    def show_usage(self, usage: ContextUsage | None, can_compact: bool = False, auto_compact: bool = False) -> None:
        """The next question's share of the context (None: not known, e.g. before a model is loaded)."""
        if usage is None:
            self.level = "ok"
            self.bar.setValue(0)
            self.label.setText("Context: –")
            self.setToolTip("How much of the model's context the next question takes (known once a model is loaded).")
            self.warning.hide()
        else:
            self.level = usage.level
            self.bar.setValue(min(1000, round(usage.fraction * 1000)))
            self.label.setText(f"{short(usage.used)} / {short(usage.n_ctx)} tokens")
            self.setToolTip(literal(usage.split()))
            sentence = usage.sentence(auto_compact)
            self.warning.setText(sentence)
            self.warning.setVisible(bool(sentence))
        colour = COLOURS[self.level]
        self.bar.setStyleSheet(
            "QProgressBar { border: none; border-radius: 3px; background: palette(midlight); }"
            f"QProgressBar::chunk {{ border-radius: 3px; background: {colour}; }}"
        )
        self.warning.setStyleSheet(f"color: {colour};" if self.level != "ok" else "")
        if not self.compacting:
            self.button.setVisible(can_compact)

    def show_compacting(self, compacting: bool) -> None:
        self.compacting = compacting
        self.button.setText("Stop compacting" if compacting else "Compact now")
        self.button.setToolTip(
            "Stop summarizing (nothing is changed)"
            if compacting
            else "Summarize the older turns into one note the model sees instead (the originals are kept)"
        )
        if compacting:
            self.button.show()
            self.label.setText("Compacting: summarizing the older turns…")


class ContextMeterController(QObject):
    """Keeps the meter of the window's conversation current and runs compactions."""

    measured = Signal(object)  # ContextUsage or None, once shown
    compacted = Signal(object)  # CompactionResult, once the view shows it
    _compaction_done = Signal(object)  # from the compaction's thread

    def __init__(self, window, services):
        super().__init__(window)
        self.window = window
        self.services = services
        self.meter = ContextMeter()
        self.bar = ContextMeterBar(window)
        self.usage: ContextUsage | None = None
        self.handle: CompactionHandle | None = None
        self._ticket = 0
        self._reload_when_idle: int | None = None
        self._backend_choice: str | None = None  # the conversation's backend (None: the default)
        window.answerFinished.connect(lambda _ended: self._after_answer())
        window.sidebar.conversationSelected.connect(lambda _id: self.refresh())
        window.sidebar.newRequested.connect(self.refresh)
        window.bridge.modelLoaded.connect(lambda _event: self.refresh())
        window.chat.summaryEdited.connect(self.save_summary)
        window.chat.shown.connect(self.refresh)  # another branch or conversation shown
        self.bar.compactRequested.connect(self.compact_now)
        self.bar.stopRequested.connect(self.stop)
        self._compaction_done.connect(self._compaction_finished)
        QTimer.singleShot(0, self, self._follow_choices)  # the selectors are made after the meter

    def _follow_choices(self) -> None:
        """Measure again when the documents or the assistant of the conversation are chosen."""
        window = self.window
        window.documents_selector.valueChanged.connect(lambda value: self.refresh(collections=value))
        selector = getattr(window, "assistant_selector", None)
        if selector is not None:
            selector.chosen.connect(lambda preset: self.refresh(preset=preset))

    # Measuring --------------------------------------------------------------------------

    def refresh(self, *, then_compact: bool = False, collections: object = UNSET, preset: object = UNSET) -> None:
        """Measure the conversation shown again (off the GUI thread); the newest request wins. ``collections`` /
        ``preset``: a choice just made (it may not be saved yet), instead of the conversation's."""
        self._ticket += 1
        ticket, cid = self._ticket, self.window.conversation_id
        history, backends, meter = self.services.history, self.services.backends, self.meter
        chat = self.services.assistant.settings
        presets = getattr(self.services.assistant, "presets", None)
        pending = self.window.pending_collections

        def measure() -> tuple[ContextUsage | None, bool, str | None]:
            conversation = history.conversation(cid) if cid is not None else None
            messages = history.messages(cid) if cid is not None else []
            choice = conversation.backend if conversation else None
            _name, backend = backends.resolve(choice)
            if backend.model_info is None:
                return None, False, choice
            chosen = conversation.collections if conversation is not None else pending
            documents = chosen if collections is UNSET else cast("list[str] | None", collections)
            # The conversation's assistant gives its turns their system prompt and sampling (engine/assistants.py).
            own = presets.of_conversation(cid) if cid is not None and presets is not None else None
            assistant = own if preset is UNSET else cast("Preset | None", preset)
            system = assistant.system_prompt if assistant is not None else chat.system_prompt
            sampling = assistant.sampling_params(chat.sampling) if assistant is not None else chat.sampling
            usage = meter.measure(backend, system, messages, collections=documents, max_tokens=sampling.max_tokens)
            return usage, len(messages) >= 2, choice

        def shown(result) -> None:
            if ticket != self._ticket:
                return
            usage, can_compact, self._backend_choice = result
            self.usage = usage
            self.bar.show_usage(usage, can_compact, self._auto_compact())
            self.measured.emit(usage)
            if then_compact and usage is not None and usage.wants_compaction and self._auto_compact():
                self.compact_now()

        def failed(exc: BaseException) -> None:
            if ticket != self._ticket:
                return
            log.info("context meter: %s", exc)
            self.usage = None
            self.bar.show_usage(None)
            self.measured.emit(None)

        run_in_background(measure, shown, failed, owner=self.bar)

    def _auto_compact(self) -> bool:
        return bool(self.services.settings.chat.auto_compact)

    def _after_answer(self) -> None:
        if self._reload_when_idle is not None:
            self._reload(self._reload_when_idle)
        self.refresh(then_compact=True)

    # Compacting -------------------------------------------------------------------------

    def compact_now(self) -> None:
        """Summarize the older turns of the conversation shown (not while an answer is being written)."""
        cid = self.window.conversation_id
        if self.handle is not None or cid is None:
            return
        if self.window.live is not None:
            self.window.statusBar().showMessage("Compacting waits until the answer is written.", 8000)
            return
        services = self.services
        try:
            name, backend = services.backends.resolve(self._backend_choice)
        except Exception as exc:  # noqa: BLE001 - the backend is gone: say so
            self.window.statusBar().showMessage(describe(exc), 10000)
            return
        chat = services.assistant.settings
        self.bar.show_compacting(True)
        self.handle = compact(
            services.history,
            backend,
            services.assistant.tracing,
            cid,
            sampling=chat.sampling,
            backend_name=name,
            lock=services.assistant.turns.lock(cid),
            on_done=self._compaction_done.emit,
        )

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.cancel()

    def _compaction_finished(self, result: CompactionResult) -> None:
        self.handle = None
        self.bar.show_compacting(False)
        if result.outcome == "complete":
            self.window.statusBar().showMessage(
                f"Compacted: a summary now stands for {result.originals} earlier messages (they stay in the history).",
                10000,
            )
        elif result.outcome == "cancelled":
            self.window.statusBar().showMessage("Compacting stopped; nothing was changed.", 8000)
        else:
            self.window.statusBar().showMessage(f"Could not compact: {describe(result.error)}", 15000)
        if result.outcome == "complete" and result.conversation_id == self.window.conversation_id:
            if self.window.live is None:
                self._reload(result.conversation_id, result)
                return
            self._reload_when_idle = result.conversation_id
        self.refresh()
        self.compacted.emit(result)

    def _reload(self, cid: int, result: CompactionResult | None = None) -> None:
        """Show the conversation again (its summary, the originals collapsed above it)."""
        self._reload_when_idle = None
        history = self.services.history

        def show(messages) -> None:
            if self.window.conversation_id == cid and self.window.live is None:
                self.window.chat.show_messages(messages)
            self.refresh()
            if result is not None:
                self.compacted.emit(result)

        run_in_background(lambda: history.messages(cid), show, self._failed, owner=self.bar)

    def save_summary(self, message_id: int, text: str) -> None:
        """Save an edited summary's note; the meter follows."""
        history = self.services.history
        run_in_background(
            lambda: history.update_message(message_id, content=text),
            lambda _r: self.refresh(),
            self._failed,
            owner=self.bar,
        )

    def _failed(self, exc: BaseException) -> None:
        self.window.statusBar().showMessage(describe(exc), 10000)
