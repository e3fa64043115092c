"""The two backends a conversation can answer on: the in-process runtime and a model server.

``Services`` keeps both (``local_runtime`` always, ``remote_runtime`` when Settings › Model server
names one); ``runtime`` is the default of the two. A conversation may choose the other; the
assistant finds its runtime by name (``Assistant.backends``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future

from app.secrets import Secrets
from app.settings import Settings
from engine.errors import BackendUnavailableError, EngineError, ModelLoadError
from engine.runtime.backend import LOCAL, REMOTE, BackendSet
from engine.runtime.remote import RemoteRuntime
from engine.runtime.types import ModelLoaded, ModelLoadFailed, RuntimeEvent

log = logging.getLogger(__name__)


class Backends:
    """Backend methods of ``app.services.Services`` (which holds the fields they use)."""

    @property
    def default_backend(self) -> str:
        """REMOTE when answers go to the model server by default, else LOCAL."""
        return self.backends.current().default

    def backend_label(self, name: str) -> str:
        """How a backend is named to people."""
        if name == REMOTE:
            remote = self.settings.remote
            return f"Model server ({remote.model or 'its first model'} at {remote.url})"
        return "This computer"

    def ready_backend(self, name: str, on_event: Callable[[RuntimeEvent], None] | None = None) -> Future:
        """Make a backend able to answer: load the local model or connect to the server, unless it already
        can (or is getting there); resolves to its ModelInfo."""
        runtime = self.backends.current().available.get(name)
        if runtime is None:
            future: Future = Future()
            future.set_exception(BackendUnavailableError("No model server is set up.",
                                                         hint="Set its address in Settings › Model server."))
            return future
        pending = self._readying.get(name)
        if pending is not None and not pending.done():
            return pending
        from app.services import model_config

        info = runtime.model_info
        if info is not None and (name == REMOTE or self.loaded_config == model_config(self.settings, kv_dir=self.paths.kv_cache_dir)):
            future = Future()
            future.set_result(info)
            return future
        if name == REMOTE:
            return self._ready(name, connect_remote(runtime, on_event))
        return self.load_model(on_event) if self.runtime is runtime else self._load_local(on_event)

    def _load_local(self, on_event) -> Future:
        from app.services import model_config

        try:
            config = model_config(self.settings, kv_dir=self.paths.kv_cache_dir)
        except ModelLoadError as exc:
            future: Future = Future()
            future.set_exception(exc)
            return future
        self.loaded_config = config
        return self._ready(LOCAL, self.local_runtime.load(config, on_event))

    def _ready(self, name: str, future: Future) -> Future:
        self._readying[name] = future
        return future

    def set_conversation_backend(self, conversation_id: int, name: str | None):
        """Save which backend answers in a conversation (None: the default)."""
        return self.history.set_backend(conversation_id, name)

    def _rewire_backends(self, new: Settings) -> None:
        """The server settings changed: a new server runtime (the old one finishes or cancels what it runs,
        then stops) and the default backend they choose. The local runtime keeps its model."""
        old_remote = self.remote_runtime
        self.remote_runtime = make_remote(new, self.tracing, self.secrets)
        self._readying.pop(REMOTE, None)
        self._wire(use_server=new.remote.enabled)
        if old_remote is not None:
            threading.Thread(target=old_remote.shutdown, name="locus-runtime-swap", daemon=True).start()

    def _wire(self, *, use_server: bool) -> None:
        available = {LOCAL: self.local_runtime}
        if self.remote_runtime is not None:
            available[REMOTE] = self.remote_runtime
        default = REMOTE if use_server and REMOTE in available else LOCAL
        self.backends.swap(lambda _old: BackendSet(default, available))
        self.runtime = available[default]


def make_remote(settings: Settings, tracing, secrets: Secrets) -> RemoteRuntime | None:
    """A runtime for the OpenAI-compatible server the settings name (None when none is set)."""
    remote = settings.remote
    if not remote.url:
        return None
    try:
        key = secrets.get("remote_api_key")
    except EngineError as exc:
        log.warning("remote API key unavailable: %s", exc.user_text())
        key = None
    return RemoteRuntime(remote.url, model=remote.model or None, api_key=key, tracing=tracing,
                         timeout_s=remote.timeout_s)


def connect_remote(runtime: RemoteRuntime, on_event=None) -> Future:
    """Connect to the server off the caller's thread, telling ``on_event`` as a model load would."""
    future: Future = Future()
    notify = on_event or (lambda _event: None)

    def connect() -> None:
        try:
            info = runtime.connect()
        except EngineError as exc:
            notify(ModelLoadFailed(exc, runtime.base_url))
            future.set_exception(exc)
        else:
            notify(ModelLoaded(info))
            future.set_result(info)

    threading.Thread(target=connect, name="locus-remote-connect", daemon=True).start()
    return future
