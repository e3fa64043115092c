"""The backends a conversation can answer on, built from the settings, and the one path that makes each ready.

LOCAL is the in-process runtime (always there); REMOTE is the model server that Settings › Model server
names (there when it has an address). ``backend_set`` makes the immutable BackendSet the registry holds;
a settings change builds a new one and swaps it in whole (app/services.py). ``Readiness`` loads the local
model (nothing else does) or connects to a model server, one load or connection per backend at a time.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future

from app.secrets import Secrets
from app.settings import RemoteSettings, Settings
from engine.errors import EngineError
from engine.runtime.backend import LOCAL, REMOTE, Backend, BackendSet
from engine.runtime.remote import RemoteRuntime
from engine.runtime.runtime import Runtime
from engine.runtime.types import ModelConfig, ModelInfo, ModelLoaded, ModelLoadFailed, RuntimeEvent
from engine.trace.tracing import Tracing

log = logging.getLogger(__name__)

OnEvent = Callable[[RuntimeEvent], None]


def backend_set(local: Backend, remote: Backend | None, *, remote_default: bool) -> BackendSet:
    """The backends there are: LOCAL always, REMOTE when a server is set; the default is REMOTE only when
    asked for and there."""
    available: dict[str, Backend] = {LOCAL: local}
    if remote is not None:
        available[REMOTE] = remote
    return BackendSet(REMOTE if remote_default and remote is not None else LOCAL, available)


def make_remote(settings: RemoteSettings, tracing: Tracing, secrets: Secrets | None) -> RemoteRuntime | None:
    """The backend for the model server the settings name (None when none is set)."""
    if not settings.url:
        return None
    try:
        key = secrets.get("remote_api_key") if secrets is not None else None
    except EngineError as exc:
        log.warning("remote API key unavailable: %s", exc.user_text())
        key = None
    return RemoteRuntime(
        settings.url, model=settings.model or None, api_key=key, tracing=tracing, timeout_s=settings.timeout_s
    )


def same_server(old: RemoteSettings, new: RemoteSettings) -> bool:
    """Whether both settings reach the same server the same way (``enabled`` only chooses the default)."""
    return (old.url, old.model, old.timeout_s) == (new.url, new.model, new.timeout_s)


def backend_label(name: str, settings: Settings) -> str:
    """How a backend is named to people."""
    if name == REMOTE:
        remote = settings.remote
        return f"Model server ({remote.model or 'its first model'} at {remote.url})"
    return "This computer"


class Readiness:
    """Makes a backend able to answer: loads the local model or connects to a model server.

    A backend that is already ready, or getting there (the same model, for the local one), is not asked
    again: the caller gets that load's future, and ``on_event`` hears how it ended.
    """

    def __init__(self, local: Runtime):
        self._local = local
        self._lock = threading.Lock()
        self._pending: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # backend -> Future[ModelInfo]
        self._local_config: ModelConfig | None = None  # the model the local runtime was last asked to load

    @property
    def loaded_config(self) -> ModelConfig | None:
        """The ModelConfig of the local model last asked for (loaded or loading)."""
        return self._local_config

    def ready(self, backend: Backend, config: Callable[[], ModelConfig], on_event: OnEvent | None = None) -> Future:
        """Resolves to the backend's ModelInfo once it can answer; ``config`` gives the local model's
        ModelConfig (it may raise ModelLoadError: the future then fails with it)."""
        with self._lock:
            if isinstance(backend, RemoteRuntime):
                return self._connect(backend, on_event)
            if backend is self._local:
                try:
                    wanted = config()
                except EngineError as exc:
                    return _failed(exc)
                return self._load(wanted, on_event)
        return _failed(TypeError(f"unknown backend {backend!r}"))

    def load_local(self, config: ModelConfig, on_event: OnEvent | None = None) -> Future:
        """Load ``config`` on the local runtime unless it is loaded or loading already."""
        with self._lock:
            return self._load(config, on_event)

    def _load(self, config: ModelConfig, on_event: OnEvent | None) -> Future:
        pending = self._pending.get(self._local)
        if pending is not None and config == self._local_config and _usable(pending):
            return _told(pending, on_event, config.path)
        self._local_config = config
        future = self._local.load(config, on_event)
        self._pending[self._local] = future
        return future

    def _connect(self, remote: RemoteRuntime, on_event: OnEvent | None) -> Future:
        pending = self._pending.get(remote)
        if pending is not None and _usable(pending):
            return _told(pending, on_event, remote.base_url)
        future = connect_remote(remote, on_event)
        self._pending[remote] = future
        return future


def _usable(future: Future) -> bool:
    """Still running, or done well."""
    return not future.done() or future.exception() is None


def _told(future: Future, on_event: OnEvent | None, where: str) -> Future:
    """``future``, with ``on_event`` told how it ends (as a load of its own would have told it)."""
    if on_event is not None:

        def tell(done: Future) -> None:
            error = done.exception()
            if error is None:
                on_event(ModelLoaded(done.result()))
            elif isinstance(error, EngineError):
                on_event(ModelLoadFailed(error, where))

        future.add_done_callback(tell)
    return future


def _failed(error: BaseException) -> Future:
    future: Future = Future()
    future.set_exception(error)
    return future


def connect_remote(runtime: RemoteRuntime, on_event: OnEvent | None = None) -> Future:
    """Connect to the server off the caller's thread, telling ``on_event`` as a model load would."""
    future: Future[ModelInfo] = Future()
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
