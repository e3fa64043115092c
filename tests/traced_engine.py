"""The engine as the window builds it, for engine tests that read what was traced: the bundled model in a real
Runtime, a real history and a real trace store (prompts captured), and an Assistant over them."""

from __future__ import annotations

from pathlib import Path

from engine.assistant import Assistant
from engine.chat_settings import ChatSettings
from engine.history.store import HistoryStore
from engine.runtime.backend import BackendRegistry
from engine.runtime.runtime import Runtime
from engine.runtime.types import ModelConfig
from engine.trace.store import TraceStore
from engine.trace.tracing import Tracing


class TracedEngine:
    """``config``: ModelConfig fields beyond the model's path (n_ctx 2048 unless given); ``traces``: the Assistant
    deletes traces from the store (what the window does); ``assistant``: other Assistant keyword arguments."""

    def __init__(
        self, root: Path, model_path: str, settings: ChatSettings, *, config=None, traces: bool = False, **assistant
    ):
        self.store = TraceStore(root / "traces.sqlite3")
        self.tracing = Tracing(self.store, capture_content=True, schedule_delay_ms=50)
        self.runtime = Runtime(self.tracing)
        self.runtime.load(ModelConfig(model_path, **{"n_ctx": 2048, **(config or {})})).result(timeout=120)
        self.history = HistoryStore(root / "locus.sqlite3")
        if traces:
            assistant["traces"] = self.store
        self.assistant = Assistant(
            BackendRegistry.of(self.runtime), self.history, settings, tracing=self.tracing, **assistant
        )

    def close(self) -> None:
        self.assistant.close()
        self.runtime.shutdown()
        self.tracing.shutdown()
        self.history.close()
        self.store.close()
