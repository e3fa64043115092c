"""What the window needs from the app's composition root (app.services.Services provides it)."""

from __future__ import annotations

from typing import Any, Protocol


class Services(Protocol):
    """What the window needs from the app's composition root."""

    assistant: Any
    history: Any
    runtime: Any
    templates: Any
    settings: Any
    problems: list
    traces: Any  # engine.trace.store.TraceStore | None (None: tracing is off)
    tracing: Any  # engine.trace.tracing.Tracing: .flush() writes pending spans before the viewer reads
    monitor: Any  # engine.trace.monitor.Monitor | None: drift and answer checks for the Monitoring tab
    paths: Any  # app.paths.Paths: data and config folders
    library: Any  # engine.rag.library.DocumentLibrary | None, once opened off the GUI thread

    def load_model(self, on_event=None, override_path=None): ...
    def setting_values(self) -> dict: ...
    def apply_setting_values(self, values: dict) -> bool: ...
    def apply_settings(self, new) -> bool: ...
    @property
    def setting_specs(self): ...
