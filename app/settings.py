"""The one typed settings schema, and config.toml loading and saving.

Each setting is declared once, with its default, description and allowed
values. Loading never fails: a bad file or value is reported as a Problem that
names the key and what is allowed, and the default is used in its place.
"""

from __future__ import annotations

import difflib
import math
import os
import tempfile
import tomllib
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import tomli_w

from engine.chat_settings import DEFAULT_SYSTEM_PROMPT
from engine.runtime.kv_cache import FLASH_ATTENTION, KV_CACHE_TYPES, combination_problem


def setting(
    default: Any,
    description: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    choices: tuple[str, ...] | None = None,
    label: str | None = None,
    widget: str | None = None,
) -> Any:
    """Declare one setting: its default, what it means, its allowed values, how it is edited."""
    meta = {
        "description": description,
        "minimum": minimum,
        "maximum": maximum,
        "choices": choices,
        "label": label,
        "widget": widget,
    }
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class ModelSettings:
    path: str = setting(
        "", "GGUF model file. Empty: the bundled SmolLM2-135M-Instruct.", label="Model file", widget="gguf_file"
    )
    context_size: int = setting(4096, "Context window in tokens.", minimum=256, maximum=262144, label="Context size")
    threads: int = setting(
        0, "CPU threads for generation; 0 picks one per core.", minimum=0, maximum=512, label="Threads"
    )
    gpu_layers: int = setting(
        0,
        "Layers offloaded to the GPU; -1 offloads all, 0 runs on the CPU.",
        minimum=-1,
        maximum=10000,
        label="GPU layers",
    )
    parallel_requests: int = setting(
        4,
        "Requests answered together (continuous batching): a quick ask, the local "
        "API and a running summary share the model instead of waiting in turn; "
        "1 answers one at a time.",
        minimum=1,
        maximum=32,
        label="Parallel requests",
    )
    conversation_cache_mb: int = setting(
        512,
        "Memory kept for the model's state of recent conversations, so "
        "going back to one does not read its history again; 0 keeps none.",
        minimum=0,
        maximum=65536,
        label="Conversation cache (MB)",
    )
    conversation_cache_disk_mb: int = setting(
        2048,
        "Disk space for conversation states pushed out of memory "
        "(in the data folder, removed on exit); 0 keeps none on disk.",
        minimum=0,
        maximum=1048576,
        label="Conversation cache on disk (MB)",
    )
    kv_cache_type: str = setting(
        "f16",
        "Element type of the model's KV cache (its memory of the context): q8_0 takes about half "
        "of f16's memory and q4_0 about a quarter, for longer contexts or more layers on the GPU, "
        "at a small cost in quality. A quantized cache needs flash attention.",
        choices=KV_CACHE_TYPES,
        label="KV cache type",
    )
    flash_attention: str = setting(
        "auto",
        "Flash attention: faster attention in less memory. 'auto' uses it where the device supports "
        "it; 'off' cannot be combined with a q8_0 or q4_0 KV cache.",
        choices=FLASH_ATTENTION,
        label="Flash attention",
    )
    speculative: str = setting(
        "off",
        "Speculative decoding: while one answer is being written, guess its next tokens from "
        "the text it can copy (the question, the document, the answer so far) and let the model "
        "check several guesses in one step. Answers that copy code or passages come faster "
        "(1.5-2.5x on a 2-core CPU). On a CPU with an f16 KV cache and flash attention 'auto', the answer "
        "is the same token for token as without it (flash attention is then off, so long prompts are read "
        "about 20% slower). Otherwise (flash attention 'on', a quantized cache, a GPU) a guess checked in a "
        "batch is computed slightly differently, and a near-tie can go the other way. "
        "Off by default. 'draft' guesses with a small draft model of the same vocabulary "
        "(Draft model; without one, prompt lookup is used). 'off' writes one token a step.",
        choices=("prompt_lookup", "draft", "off"),
        label="Speculative decoding",
    )
    draft_model: str = setting(
        "",
        "GGUF file of a small model with the same vocabulary as the model, for speculative decoding 'draft'.",
        label="Draft model",
        widget="gguf_file",
    )
    backend_sampling: str = setting(
        "auto",
        "Sampling on the device: pick each next token inside the model's own computation (llama.cpp's "
        "backend sampling) instead of copying the model's scores for every token of the vocabulary to the "
        "CPU and picking there. 'auto' does it when layers run on a GPU, where it saves that copy and the CPU's "
        "work for every token; on a CPU it gains nothing. It follows the same sampling settings either way "
        "(on a CPU, token for token). Answers held to a format (a grammar or tool calls), completions that mend "
        "a cut-off last word and sampling without top-k stay on the CPU, and so does everything while "
        "speculative decoding is on.",
        choices=("auto", "on", "off"),
        label="Sampling on the device",
    )


@dataclass(frozen=True)
class SamplingSettings:
    temperature: float = setting(
        0.7, "Randomness; 0 always picks the likeliest token.", minimum=0.0, maximum=5.0, label="Temperature"
    )
    top_p: float = setting(
        0.95,
        "Nucleus sampling: keep the likeliest tokens up to this total probability.",
        minimum=0.0,
        maximum=1.0,
        label="Top-p",
    )
    top_k: int = setting(40, "Keep only the k likeliest tokens; 0 disables.", minimum=0, maximum=100000, label="Top-k")
    min_p: float = setting(
        0.05,
        "Drop tokens less likely than this fraction of the likeliest one.",
        minimum=0.0,
        maximum=1.0,
        label="Min-p",
    )
    repeat_penalty: float = setting(
        1.1, "Penalty for repeating recent tokens; 1 disables.", minimum=0.1, maximum=5.0, label="Repeat penalty"
    )
    seed: int = setting(
        -1, "Random seed; -1 draws a new one for every answer.", minimum=-1, maximum=2**31 - 1, label="Seed"
    )
    max_tokens: int = setting(1024, "Longest answer, in tokens.", minimum=1, maximum=262144, label="Max tokens")
    stop: list = setting(  # noqa: RUF009 - setting() returns a field (a default_factory for a list)
        [],
        "Text that ends the answer when generated, one per line; write a line break as \\n and a backslash as \\\\.",
        label="Stop strings",
        widget="lines",
    )


@dataclass(frozen=True)
class ChatSection:
    system_prompt: str = setting(
        DEFAULT_SYSTEM_PROMPT,
        "Instructions the model gets at the start of every conversation.",
        label="System prompt",
        widget="multiline",
    )
    auto_compact: bool = setting(
        False,
        "When a conversation nears the end of the model's context, summarize its older turns into one note "
        "(kept visible and editable; the originals stay in the history) instead of leaving them out unseen.",
        label="Compact long conversations",
    )


@dataclass(frozen=True)
class DocumentSettings:
    embedding_model: str = setting(
        "",
        "sentence-transformers model folder for documents. Empty: the bundled "
        "all-MiniLM-L6-v2. Changing it needs a re-index.",
        label="Embedding model",
    )
    embedding_server: str = setting(
        "",
        "Embed documents and questions on an OpenAI-compatible /v1/embeddings server (Text Embeddings "
        "Inference, vLLM, Infinity, Ollama, another Locus's 'locus serve'), e.g. http://gpu-box:8080/v1. "
        "Empty: embed on this computer. Its API key is kept in the system keyring as 'embedding_api_key'. "
        "Changing it needs a re-index.",
        label="Embedding server",
    )
    embedding_server_model: str = setting(
        "", "The model the embedding server embeds with, e.g. BAAI/bge-m3.", label="Server embedding model"
    )
    embedding_batch_size: int = setting(
        32,
        "Passages sent to the embedding server in one request (Text Embeddings Inference accepts 32 unless "
        "started with a larger --max-client-batch-size).",
        minimum=1,
        maximum=4096,
        label="Server batch size",
    )
    embedding_timeout_s: float = setting(
        60.0,
        "Longest wait for the embedding server to answer one request (it is retried with backoff).",
        minimum=1.0,
        maximum=3600.0,
        label="Server timeout (s)",
    )
    parse_timeout_s: float = setting(
        60.0,
        "Longest time one file may take to parse before it is given up (while OCR reads a scan: one page).",
        minimum=1.0,
        maximum=3600.0,
        label="Parse time limit (s)",
    )
    ocr: bool = setting(
        True,
        "Read scanned PDF pages (without a text layer) and images (PNG, JPEG, TIFF) by OCR, offline on "
        "this computer. It reads Chinese and English (Latin script; accents may be lost). Off: such "
        "files are skipped and say why. Pages that have a text layer are never OCR'd.",
        label="OCR for scans and images",
    )
    watch_interval_s: float = setting(
        30.0,
        "How often watched folders are checked for changes.",
        minimum=1.0,
        maximum=86400.0,
        label="Watch interval (s)",
    )


@dataclass(frozen=True)
class TaskSettings:
    token_healing: bool = setting(
        True,
        "Completion-style prompts that end mid-word are backed up over their last "
        "token(s) and the model regenerates the cut-off text (token healing).",
        label="Token healing",
    )
    translate_to: str = setting(
        "English", "Language translations go to unless another is chosen.", label="Translate to"
    )


@dataclass(frozen=True)
class RemoteSettings:
    """The OpenAI-compatible model server Locus sends questions to (``[remote]``; the "remote" backend)."""

    enabled: bool = setting(
        False,
        "Generate answers on an OpenAI-compatible server (vLLM, TGI, llama.cpp server, "
        "Ollama, a company gateway) instead of this computer. Its API key is kept in the system "
        "keyring as 'remote_api_key' (locus secrets set remote_api_key).",
        label="Use a server",
    )
    url: str = setting(
        "", "The server's OpenAI-compatible address, e.g. http://gpu-box:8000/v1.", label="Server address"
    )
    model: str = setting("", "The model the server should use; empty: the first it offers.", label="Server model")
    timeout_s: float = setting(
        120.0, "Longest wait for the server to send anything.", minimum=5.0, maximum=3600.0, label="Server timeout (s)"
    )


@dataclass(frozen=True)
class TraceSettings:
    enabled: bool = setting(
        True,
        "Record every request (retrieval, prompt, timings, token counts) in the local trace "
        "log. Nothing leaves this computer unless an OTLP endpoint is set.",
        label="Record traces",
    )
    capture_content: bool = setting(
        True,
        "Keep prompts, retrieved passages and answers in traces; off keeps only timings, counts and ids.",
        label="Capture prompts and answers",
    )
    retention_days: int = setting(
        14,
        "Traces, metrics and monitoring data older than this are deleted.",
        minimum=1,
        maximum=3650,
        label="Keep traces (days)",
    )
    max_size_mb: int = setting(
        200,
        "Largest size of the trace log; the oldest traces go first.",
        minimum=5,
        maximum=100000,
        label="Trace log limit (MB)",
    )
    otlp_endpoint: str = setting(
        "",
        "Also send traces to this OpenTelemetry collector over OTLP/HTTP (e.g. "
        "http://localhost:4318 for Jaeger, Tempo or Phoenix). Empty: traces stay here. An "
        "API key for it is kept in the system keyring as 'otlp_api_key'.",
        label="OTLP endpoint",
    )
    metrics_interval_s: float = setting(
        5.0,
        "How often CPU, memory, GPU and queue figures are sampled while the window is open.",
        minimum=0.5,
        maximum=3600.0,
        label="Metrics interval (s)",
    )
    drift_window: int = setting(
        40,
        "Questions in each of the two windows compared for drift (the oldest kept as baseline, the newest as recent).",
        minimum=10,
        maximum=1000,
        label="Drift window",
    )
    drift_alpha: float = setting(
        0.01,
        "Significance level of the drift test: drift is reported when its p-value is below this.",
        minimum=0.0001,
        maximum=0.2,
        label="Drift significance",
    )


@dataclass(frozen=True)
class ApiSettings:
    """Locus's own OpenAI-compatible API, which editors and scripts call (``[api]``; the model server Locus
    calls is ``[remote]``)."""

    enabled: bool = setting(
        False,
        "Serve the OpenAI-compatible API (/v1/chat/completions, /v1/completions, "
        "/v1/embeddings, /v1/models) while the window is open, for editors, scripts and agents.",
        label="Local API",
    )
    host: str = setting(
        "127.0.0.1",
        "Address the API listens on. Anything but this computer (127.0.0.1, ::1, "
        "localhost) needs an API key, kept in the system keyring as 'server_api_key'.",
        label="API address",
    )
    port: int = setting(8765, "Port the API listens on.", minimum=1, maximum=65535, label="API port")
    max_request_kb: int = setting(
        1024,
        "Largest request body the API accepts, in kilobytes.",
        minimum=1,
        maximum=1048576,
        label="Largest request (KB)",
    )
    max_tokens: int = setting(
        4096, "Most tokens one API request may ask to generate.", minimum=1, maximum=262144, label="API max tokens"
    )
    max_connections: int = setting(
        32,
        "Most connections the API keeps open at once; more are answered 503 (busy) and closed.",
        minimum=1,
        maximum=1024,
        label="API connections",
    )
    max_queued_requests: int = setting(
        16,
        "Most API generations running or waiting at once; more are answered 503 (busy, try again).",
        minimum=1,
        maximum=1024,
        label="API queued requests",
    )
    request_timeout_s: float = setting(
        30.0,
        "Seconds a client may take to send a request's headers, and again its body; slower connections are closed.",
        minimum=1.0,
        maximum=3600.0,
        label="API request timeout (s)",
    )


@dataclass(frozen=True)
class ToolSettings:
    """What tools may do (``[tools]``): the built-ins, the MCP servers of mcp.json, and an agent's budgets."""

    disabled: list = setting(  # noqa: RUF009 - setting() returns a field (a default_factory for a list)
        [],
        "Tools switched off, one per line: built-ins by name (search_documents, read_file, "
        "fetch_page, calculator, current_time), MCP tools as server/tool, a whole MCP server "
        "as server/*.",
        label="Tools switched off",
        widget="lines",
    )
    allowed_folders: list = setting(  # noqa: RUF009 - setting() returns a field (a default_factory for a list)
        [],
        "Folders read_file may read from, one per line (with everything inside them "
        "except hidden files). None: read_file is off.",
        label="Allowed folders",
        widget="lines",
    )
    fetch_enabled: bool = setting(
        False,
        "Let the fetch_page tool read web pages. It is the only thing in Locus that "
        "goes to the internet; off, nothing does.",
        label="Fetch web pages",
    )
    fetch_private: bool = setting(
        False,
        "Let fetch_page also read addresses on this computer and the local network "
        "(127.0.0.1, 192.168.x.x, …); off, it reads only public web pages.",
        label="Fetch from the local network",
    )
    trusted: list = setting(  # noqa: RUF009 - setting() returns a field (a default_factory for a list)
        ["calculator", "current_time"],
        "Tools that run without asking first, one per line "
        "(names as in 'Tools switched off'); every other call waits for Allow or Deny.",
        label="Trusted tools",
        widget="lines",
    )
    trust_read_only: bool = setting(
        False,
        "Tools that say they only read (the built-ins that read, and MCP tools "
        "their server marks read-only) also run without asking. The mark comes from "
        "the server: turn this on only for servers you trust.",
        label="Trust read-only tools",
    )
    max_steps: int = setting(
        6,
        "Most rounds of tool calls in one answer before the model must answer.",
        minimum=1,
        maximum=100,
        label="Agent steps",
    )
    max_tokens: int = setting(
        4096,
        "Most tokens the model may generate over all the rounds of one answer.",
        minimum=64,
        maximum=262144,
        label="Agent tokens",
    )
    max_seconds: float = setting(
        120.0,
        "Longest time one answer with tools may take, calls included.",
        minimum=5.0,
        maximum=3600.0,
        label="Agent time limit (s)",
    )
    call_timeout_s: float = setting(
        30.0,
        "Longest time one tool call may take before it is given up.",
        minimum=1.0,
        maximum=3600.0,
        label="Tool call time limit (s)",
    )
    result_max_chars: int = setting(
        8000,
        "Longest tool result given to the model, in characters; longer ones are cut, with a note saying so.",
        minimum=200,
        maximum=1000000,
        label="Tool result limit (characters)",
    )


@dataclass(frozen=True)
class UISettings:
    theme: str = setting("system", "Colour theme of the window.", choices=("system", "light", "dark"), label="Theme")
    close_to_tray: bool = setting(
        True,
        "Closing the window keeps Locus running in the system tray (when the "
        "desktop has one); quit from the tray menu.",
        label="Close to tray",
    )
    quick_ask_collection: str = setting(
        "", "Document collection the quick ask answers from; empty: plain chat.", label="Quick ask collection"
    )
    welcome_shown: bool = setting(
        False,
        "The first-start welcome (hardware check and recommended models) was shown; off shows it at the next "
        "start. Help › Welcome… opens it any time.",
        label="Welcome shown",
    )


@dataclass(frozen=True)
class Settings:
    model: ModelSettings = field(default_factory=ModelSettings)
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    chat: ChatSection = field(default_factory=ChatSection)
    documents: DocumentSettings = field(default_factory=DocumentSettings)
    tasks: TaskSettings = field(default_factory=TaskSettings)
    remote: RemoteSettings = field(default_factory=RemoteSettings)
    traces: TraceSettings = field(default_factory=TraceSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    tools: ToolSettings = field(default_factory=ToolSettings)
    ui: UISettings = field(default_factory=UISettings)

    def get(self, key: str) -> Any:
        section, name = key.split(".", 1)
        return getattr(getattr(self, section), name)

    def with_value(self, key: str, value: Any) -> Settings:
        section, name = key.split(".", 1)
        return replace(self, **{section: replace(getattr(self, section), **{name: value})})


@dataclass(frozen=True)
class SettingSpec:
    key: str
    type: type
    default: Any
    description: str
    label: str
    minimum: float | None
    maximum: float | None
    choices: tuple[str, ...] | None
    widget: str | None  # how the settings dialog edits it: None (by type), gguf_file, multiline, lines
    section: str

    def allowed(self) -> str:
        """The allowed values, in words, for error messages and tooltips."""
        if self.choices:
            return "one of " + ", ".join(f"'{c}'" for c in self.choices)
        if self.type is bool:
            return "true or false"
        kind = {int: "a whole number", float: "a number", str: "text", list: "a list of text"}[self.type]
        if self.minimum is not None and self.maximum is not None:
            return f"{kind} from {_fmt(self.minimum)} to {_fmt(self.maximum)}"
        return kind


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _build_specs() -> tuple[SettingSpec, ...]:
    specs = []
    for section in fields(Settings):
        for f in fields(section.default_factory):
            default = f.default if f.default is not MISSING else f.default_factory()
            m = f.metadata
            specs.append(
                SettingSpec(
                    f"{section.name}.{f.name}",
                    type(default),
                    default,
                    m["description"],
                    m["label"] or f.name,
                    m["minimum"],
                    m["maximum"],
                    m["choices"],
                    m["widget"],
                    section.name,
                )
            )
    return tuple(specs)


SPECS: tuple[SettingSpec, ...] = _build_specs()
SPEC_BY_KEY = {s.key: s for s in SPECS}


@dataclass(frozen=True)
class Problem:
    """Something wrong in config.toml; ``key`` is None when the whole file is unreadable."""

    key: str | None
    message: str

    def __str__(self) -> str:
        return self.message


def validate(spec: SettingSpec, value: Any) -> tuple[Any, str | None]:
    """The value converted to the setting's type, or an error naming the key and allowed values."""
    bad = f"Setting '{spec.key}' is {value!r}; allowed: {spec.allowed()}. Using the default ({spec.default!r})."
    if spec.type is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if spec.type is list:
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            return spec.default, bad
        return list(value), None
    if spec.type is bool:
        return (value, None) if isinstance(value, bool) else (spec.default, bad)
    if not isinstance(value, spec.type) or isinstance(value, bool):
        return spec.default, bad
    if spec.type is float and not math.isfinite(value):
        return spec.default, bad
    if spec.choices and value not in spec.choices:
        return spec.default, bad
    if (spec.minimum is not None and value < spec.minimum) or (spec.maximum is not None and value > spec.maximum):
        return spec.default, bad
    return value, None


# Sections read under an older name: [server] was Locus's own API before it became [api].
FORMER_SECTIONS = {"server": "api"}


def from_mapping(data: dict) -> tuple[Settings, list[Problem]]:
    """Settings from a parsed TOML document; unknown or invalid entries become Problems.

    A section under its former name (FORMER_SECTIONS) is read as the new one, which wins where both are set.
    """
    settings, problems = Settings(), []
    for section_name, section in sorted(data.items(), key=lambda item: item[0] not in FORMER_SECTIONS):
        if not isinstance(section, dict):
            problems.append(_unknown(section_name, "section"))
            continue
        target = FORMER_SECTIONS.get(section_name, section_name)
        for name, value in section.items():
            key = f"{target}.{name}"
            spec = SPEC_BY_KEY.get(key)
            if spec is None:
                problems.append(_unknown(key, "setting", written=f"{section_name}.{name}"))
                continue
            value, error = validate(spec, value)
            if error:
                problems.append(Problem(key, error))
            settings = settings.with_value(key, value)
    kv_problem = combination_problem(settings.model.kv_cache_type, settings.model.flash_attention)
    if kv_problem:  # a quantized cache with flash attention off: llama.cpp would refuse to load the model
        problems.append(Problem("model.flash_attention", f"{kv_problem} Using 'auto'."))
        settings = settings.with_value("model.flash_attention", "auto")
    return settings, problems


def _unknown(key: str, kind: str, *, written: str | None = None) -> Problem:
    """``key`` as looked up; ``written`` as the file has it (a former section name), when different."""
    candidates = [s.key for s in SPECS] if kind == "setting" else [f.name for f in fields(Settings)]
    close = difflib.get_close_matches(key, candidates, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else f" Known {kind}s: {', '.join(candidates)}."
    written = written or key
    return Problem(written, f"Unknown {kind} '{written}' in config.toml; it is ignored.{hint}")


def load(path: Path) -> tuple[Settings, list[Problem]]:
    """Read config.toml; a missing file gives the defaults with no problems."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Settings(), []
    except OSError as exc:
        return Settings(), [Problem(None, f"Could not read {path}: {exc.strerror}. Using default settings.")]
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        return Settings(), [Problem(None, f"{path} is not valid TOML ({exc}). Using default settings.")]
    return from_mapping(data)


def from_values(values: dict[str, Any]) -> tuple[Settings, list[Problem]]:
    """Settings from flat ``{"section.name": value}`` pairs (the settings dialog's output)."""
    nested: dict = {}
    for key, value in values.items():
        section, name = key.split(".", 1)
        nested.setdefault(section, {})[name] = value
    return from_mapping(nested)


def to_values(settings: Settings) -> dict[str, Any]:
    return {spec.key: settings.get(spec.key) for spec in SPECS}


def to_mapping(settings: Settings) -> dict:
    data: dict = {}
    for spec in SPECS:
        section, name = spec.key.split(".", 1)
        data.setdefault(section, {})[name] = settings.get(spec.key)
    return data


def save(settings: Settings, path: Path) -> None:
    """Write config.toml atomically (a crash never leaves half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".config-", suffix=".toml", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            tomli_w.dump(to_mapping(settings), fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
