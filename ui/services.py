"""What the window needs from the app's composition root (app.services.Services provides it)."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any, Protocol

from engine.runtime.backend import BackendRegistry


class Services(Protocol):
    """What the window needs from the app's composition root.

    Everything here is read, never assigned: settings change through ``update_settings``/``apply_settings``
    (which replace them whole), the backends by a swap inside ``backends``.
    """

    assistant: Any
    history: Any
    backends: BackendRegistry  # which backends exist now and the default: ``backends.current()``
    templates: Any
    paths: Any  # app.paths.Paths: data and config folders

    @property
    def settings(self) -> Any: ...
    @property
    def problems(self) -> tuple: ...
    @property
    def traces(self) -> Any: ...  # engine.trace.store.TraceStore | None (None: it could not be opened)
    @property
    def tracing(self) -> Any: ...  # engine.trace.tracing.Tracing: .flush() writes pending spans first
    @property
    def monitor(self) -> Any: ...  # engine.trace.monitor.Monitor | None: for the Monitoring tab
    @property
    def library(self) -> Any: ...  # engine.rag.library.DocumentLibrary | None, once opened
    @property
    def setting_specs(self) -> Any: ...

    def backend_label(self, name: str) -> str: ...
    def ready_backend(self, name: str | None = None, on_event=None) -> Future: ...
    def load_model(self, on_event=None, override_path=None) -> Future: ...
    def setting_values(self) -> dict: ...
    def apply_setting_values(self, values: dict) -> bool: ...
    def apply_settings(self, new) -> bool: ...
    def update_settings(self, change) -> bool: ...
