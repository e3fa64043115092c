"""Tracing for one engine: an OpenTelemetry tracer provider, the local store, optional OTLP.

Every request gets one trace: the engine starts a root span where the request
enters (Assistant.ask, a task, an indexing job) and hands its context to the
threads that do the work (retrieval on the caller's thread, generation on the
runtime's). Spans are exported in batches on the SDK's own thread, so the
per-token loop never pays for tracing; before anything is written or sent,
every attribute and event is scrubbed of secrets (keyring values and the shapes
of API keys and tokens).
"""

from __future__ import annotations

import copy
import json
import logging
import re
import threading
from collections.abc import Callable, Iterable, Sequence

from opentelemetry import trace
from opentelemetry.context import Context, create_key, get_value, set_value
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Span, Status, StatusCode

from engine.trace.store import CONVERSATION, SpanRecord, TraceStore

log = logging.getLogger(__name__)

REDACTED = "[redacted]"
# Shapes of credentials that must never be stored even when not in the keyring.
_SECRET_SHAPES = re.compile(
    r"\bhf_[A-Za-z0-9]{20,}\b"  # Hugging Face tokens
    r"|\bsk-[A-Za-z0-9_\-]{16,}\b"  # OpenAI-style API keys
    r"|(?i:\bbearer\s+)[A-Za-z0-9._\-~+/]{12,}=*"  # Authorization headers
    r"|(?i:\b(?:api[_-]?key|token|password|secret)\s*[=:]\s*)[^\s&\"',;]{8,}"
)


class Redactor:
    """Removes secrets from text: the current keyring values, and anything shaped like a key."""

    def __init__(self, secrets: Callable[[], Iterable[str]] | None = None):
        self._secrets = secrets or (lambda: ())

    def scrub(self, text: str) -> str:
        for secret in self._current():
            if secret in text:
                text = text.replace(secret, REDACTED)
        return _SECRET_SHAPES.sub(_keep_label, text)

    def frozen(self) -> Redactor:
        """A redactor with today's secrets fixed: read the keyring once per export batch, not per string."""
        secrets = self._current()
        return Redactor(lambda: secrets)

    def _current(self) -> list[str]:
        try:
            return sorted((s for s in self._secrets() if s and len(s) >= 6), key=len, reverse=True)
        except Exception:
            log.debug("could not read secrets for redaction", exc_info=True)
            return []

    def value(self, value):
        """An attribute value with every string in it scrubbed."""
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, (list, tuple)):
            return type(value)(self.value(v) for v in value)
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        return value


def _keep_label(match: re.Match) -> str:
    """'api_key=abc…' -> 'api_key=[redacted]'; a bare token -> '[redacted]'."""
    text = match.group(0)
    label = re.match(r"(?i)(bearer\s+|(?:api[_-]?key|token|password|secret)\s*[=:]\s*)", text)
    return (label.group(0) if label else "") + REDACTED


def span_record(span: ReadableSpan, redactor: Redactor) -> SpanRecord:
    """A finished SDK span as a scrubbed SpanRecord."""
    ctx = span.get_span_context()
    assert ctx is not None  # an SDK span always has one
    parent = span.parent
    status = {StatusCode.UNSET: "unset", StatusCode.OK: "ok", StatusCode.ERROR: "error"}[span.status.status_code]
    return SpanRecord(
        trace_id=f"{ctx.trace_id:032x}",
        span_id=f"{ctx.span_id:016x}",
        parent_id=f"{parent.span_id:016x}" if parent is not None else None,
        name=span.name,
        kind=span.kind.name.lower(),
        start_ns=span.start_time or 0,
        end_ns=span.end_time or span.start_time or 0,
        status=status,
        status_message=redactor.scrub(span.status.description or ""),
        attributes={k: redactor.value(_plain(v)) for k, v in (span.attributes or {}).items()},
        events=[
            {
                "name": e.name,
                "time_ns": e.timestamp,
                "attributes": {k: redactor.value(_plain(v)) for k, v in (e.attributes or {}).items()},
            }
            for e in span.events
        ],
    )


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


class ConversationTagger(SpanProcessor):
    """Gives each span its parent's conversation id, so that every span of a conversation's requests
    (the generation's prompt above all) can be found and deleted with it, even when the request's
    root span never arrives (a process killed mid-answer)."""

    def on_start(self, span, parent_context: Context | None = None) -> None:
        if parent_context is None:
            return
        parent = trace.get_current_span(parent_context)
        value = (getattr(parent, "attributes", None) or {}).get(CONVERSATION)
        if value is not None and CONVERSATION not in (span.attributes or {}):
            span.set_attribute(CONVERSATION, value)

    def on_end(self, span: ReadableSpan) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class StoreExporter(SpanExporter):
    """Writes finished spans into the local TraceStore."""

    def __init__(self, store: TraceStore, redactor: Redactor):
        self.store = store
        self.redactor = redactor

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            redactor = self.redactor.frozen()
            self.store.add_spans([span_record(s, redactor) for s in spans])
        except Exception:
            log.exception("could not store %d spans", len(spans))
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


class RedactingExporter(SpanExporter):
    """Hands scrubbed copies of spans to another exporter (the OTLP one)."""

    def __init__(self, inner: SpanExporter, redactor: Redactor):
        self.inner = inner
        self.redactor = redactor

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        redactor = self.redactor.frozen()
        return self.inner.export([self._scrubbed(s, redactor) for s in spans])

    @staticmethod
    def _scrubbed(s: ReadableSpan, r: Redactor) -> ReadableSpan:
        return ReadableSpan(
            name=s.name,
            context=s.get_span_context(),
            parent=s.parent,
            resource=s.resource,
            attributes={k: r.value(v) for k, v in (s.attributes or {}).items()},
            events=[
                Event(e.name, {k: r.value(v) for k, v in (e.attributes or {}).items()}, e.timestamp) for e in s.events
            ],
            links=s.links,
            kind=s.kind,
            status=Status(s.status.status_code, r.scrub(s.status.description) if s.status.description else None),
            start_time=s.start_time,
            end_time=s.end_time,
            instrumentation_scope=s.instrumentation_scope,
        )

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def otlp_exporter(endpoint: str, headers: dict[str, str] | None = None, timeout_s: float = 3.0) -> SpanExporter:
    """An OTLP/HTTP (protobuf) span exporter for ``endpoint`` (a collector's base URL or its /v1/traces)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    url = endpoint.rstrip("/")
    if not url.endswith("/v1/traces"):
        url += "/v1/traces"
    return OTLPSpanExporter(endpoint=url, headers=headers or {}, timeout=timeout_s)


class Tracing:
    """The engine's tracer, where its spans go, and whether prompts and answers are captured.

    ``Tracing.disabled()`` gives a tracer that records nothing (spans cost a few hundred ns).
    """

    def __init__(
        self,
        store: TraceStore | None = None,
        *,
        capture_content: bool = True,
        redactor: Redactor | None = None,
        otlp_endpoint: str = "",
        otlp_headers: dict[str, str] | None = None,
        schedule_delay_ms: int = 500,
        service_version: str = "",
        enabled: bool = True,
    ):
        self.store = store
        self.capture_content = capture_content
        self.redactor = redactor or Redactor()
        self.enabled = enabled and (store is not None or bool(otlp_endpoint))
        self.otlp_endpoint = otlp_endpoint
        self._provider: TracerProvider | None = None
        self._local: BatchSpanProcessor | None = None  # the store's processor: flush() waits on it alone
        if not self.enabled:
            self.tracer: trace.Tracer = trace.NoOpTracer()
            return
        resource = Resource.create({"service.name": "locus", "service.version": service_version or "0"})
        self._provider = TracerProvider(resource=resource)
        self._provider.add_span_processor(ConversationTagger())
        if store is not None:
            self._local = BatchSpanProcessor(
                StoreExporter(store, self.redactor), schedule_delay_millis=schedule_delay_ms
            )
            self._provider.add_span_processor(self._local)
        if otlp_endpoint:
            self._provider.add_span_processor(
                BatchSpanProcessor(
                    RedactingExporter(otlp_exporter(otlp_endpoint, otlp_headers), self.redactor),
                    schedule_delay_millis=max(schedule_delay_ms, 1000),
                )
            )
        self.tracer = self._provider.get_tracer("locus.engine", service_version or None)

    @classmethod
    def disabled(cls) -> Tracing:
        return cls(None, enabled=False)

    def without_content(self) -> Tracing:
        """This tracer, recording timings and counts only (an answer that is not saved: no text in its trace)."""
        if not self.capture_content:
            return self
        quiet = copy.copy(self)  # same provider, store and exporters
        quiet.capture_content = False
        return quiet

    def for_request(self, parent: Context | None) -> Tracing:
        """The tracer for spans under ``parent``: without content when the request asked for none."""
        return self if parent is None or get_value(_NO_CONTENT, parent) is None else self.without_content()

    # Spans ---------------------------------------------------------------------------

    def start(
        self,
        name: str,
        parent: Context | Span | None = None,
        attributes: dict | None = None,
        start_time_ns: int | None = None,
    ) -> Span:
        """A span that the caller ends (it may be ended on another thread)."""
        if isinstance(parent, Span):
            parent = trace.set_span_in_context(parent)
        return self.tracer.start_span(
            name,
            context=parent if parent is not None else Context(),
            attributes=_clean(attributes),
            start_time=start_time_ns,
        )

    def content(self, span: Span, key: str, value) -> None:
        """Set a prompt/response attribute, only when content capture is on (dicts/lists as JSON)."""
        if self.capture_content and span.is_recording():
            span.set_attribute(key, value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Write every ended span to the local store now (the viewer calls this before it reads).

        Only the local store is waited for: an OTLP collector that is down would hold the caller
        through the exporter's retries; its processor sends on its own schedule.
        """
        return self._local.force_flush(int(timeout_s * 1000)) if self._local else True

    def shutdown(self, otlp_wait_s: float = 2.0) -> None:
        """Store pending spans, then give the OTLP export at most ``otlp_wait_s`` (exit must not hang on it)."""
        if self._provider is None:
            return
        if self._local is not None:
            self._local.shutdown()
        closing = threading.Thread(target=self._provider.shutdown, name="locus-trace-shutdown", daemon=True)
        closing.start()
        closing.join(otlp_wait_s)


_NO_CONTENT = create_key("locus.no_content")


def context_of(span: Span | None, *, content: bool = True) -> Context | None:
    """The context to hand to another thread so that its spans become children of ``span``; with
    ``content`` False, those spans record no prompt or response either (see ``Tracing.for_request``)."""
    if span is None:
        return None
    context = trace.set_span_in_context(span)
    return context if content else set_value(_NO_CONTENT, True, context)


def trace_id_of(span: Span | None) -> str | None:
    """The hex trace id of a recording span (what the store and the viewer use), else None."""
    if span is None or not span.is_recording():
        return None
    return f"{span.get_span_context().trace_id:032x}"


def fail(span: Span, error: BaseException) -> None:
    """Mark a span failed with the error's words for people (and its type)."""
    message = getattr(error, "message", None) or str(error) or type(error).__name__
    span.set_status(Status(StatusCode.ERROR, message))
    span.set_attribute("error.type", getattr(error, "code", None) or type(error).__name__)


def set_attributes(span: Span, attributes: dict) -> None:
    """Set several attributes, leaving out None values (OpenTelemetry refuses them)."""
    if span.is_recording():
        span.set_attributes(_clean(attributes))


def _clean(attributes: dict | None) -> dict:
    if not attributes:
        return {}
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in attributes.items() if v is not None}
