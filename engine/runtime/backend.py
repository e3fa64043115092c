"""What answers run on: a ``Backend`` (the in-process runtime or a remote model server) and the registry
that says which backends exist now and which one is the default.

The registry holds one immutable ``BackendSet``; a settings change builds a new set and swaps it in
whole (one reference assignment), so a request that resolved its backend keeps using that object
for its span, its prompt budget and its generation, even while settings change.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from engine.errors import BackendUnavailableError

if TYPE_CHECKING:
    from engine.runtime.handles import RequestHandle
    from engine.runtime.types import ChatMessage, GenerationEvent, GenerationRequest, ModelInfo
    from engine.tools.base import ToolSpec
    from engine.trace.tracing import Tracing

LOCAL = "local"  # the model in this process (llama.cpp)
REMOTE = "remote"  # an OpenAI-compatible model server (Settings › Model server)
BACKEND_NAMES = (LOCAL, REMOTE)


@runtime_checkable
class Backend(Protocol):
    """Generates answers: what the Assistant, the tasks and the local API need of a model."""

    tracing: Tracing
    last_tokens_per_s: float | None  # decoding speed of the latest finished generation (a metrics gauge)

    @property
    def kind(self) -> str:
        """LOCAL or REMOTE."""
        ...

    @property
    def model_info(self) -> ModelInfo | None:
        """The model that answers (None before it is loaded or connected)."""
        ...

    @property
    def queue_length(self) -> int:
        """Requests waiting or running."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes for this backend's model (an estimate where the server does not say)."""
        ...

    def render_prompt(self, messages: tuple[ChatMessage, ...], tools: tuple[ToolSpec, ...] = ()) -> tuple[str, int]:
        """The prompt ``messages`` (and ``tools`` offered) become for the model, and its token count."""
        ...

    def submit(
        self,
        request: GenerationRequest,
        on_event: Callable[[GenerationEvent], None] | None = None,
        *,
        tap: Callable[[GenerationEvent], None] | None = None,
        trace_parent=None,
    ) -> RequestHandle:
        """Queue a generation; its events go to ``on_event`` (or ``handle.events()``)."""
        ...

    def forget(self, conversation_key: str) -> Future:
        """Drop what is cached for a deleted conversation; resolves to how many caches were dropped."""
        ...

    def cancel_all(self) -> None:
        """Cancel the running requests."""
        ...

    def shutdown(self, timeout: float = 10.0) -> None:
        """Cancel what runs, fail what waits, free what is held."""
        ...


@dataclass(frozen=True)
class BackendSet:
    """The backends that exist at one moment, by name, and which of them is the default."""

    default: str
    available: Mapping[str, Backend] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.default not in self.available:
            raise ValueError(f"the default backend {self.default!r} is not among {sorted(self.available)}")
        object.__setattr__(self, "available", MappingProxyType(dict(self.available)))

    def resolve(self, name: str | None) -> tuple[str, Backend]:
        """The backend a conversation asked for (None: the default), with its name; a conversation that
        chose a backend that is not set up gets BackendUnavailableError (never another backend)."""
        chosen = name or self.default
        backend = self.available.get(chosen)
        if backend is None:
            where = "the model server" if chosen == REMOTE else "this computer's model"
            raise BackendUnavailableError(
                f"This conversation answers on {where}, which is not set up now.",
                hint="Set the server in Settings › Model server, or choose another backend for the conversation.",
            )
        return chosen, backend


class BackendRegistry:
    """Holds the current BackendSet; ``current()`` is one atomic read, ``swap()`` one atomic write."""

    def __init__(self, backends: BackendSet):
        self._current = backends
        self._lock = threading.Lock()  # orders swaps; readers never wait

    @classmethod
    def of(cls, backend: Backend) -> BackendRegistry:
        """A registry of one backend, which is the default (a terminal command, a test)."""
        return cls(BackendSet(backend.kind, {backend.kind: backend}))

    def current(self) -> BackendSet:
        return self._current

    def resolve(self, name: str | None) -> tuple[str, Backend]:
        """``current().resolve(name)``: call once per request and keep the result."""
        return self._current.resolve(name)

    def swap(self, change: Callable[[BackendSet], BackendSet]) -> tuple[BackendSet, BackendSet]:
        """Replace the set by ``change(old)``, atomically with respect to other swaps; returns (old, new)."""
        with self._lock:
            old = self._current
            new = change(old)
            self._current = new
            return old, new
