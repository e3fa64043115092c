"""Traces, metrics and monitoring wired from the settings: what the engine records and where it goes.

The trace store (traces.sqlite3) is opened even when recording is off, so the
viewer still shows what was kept. Retention runs at start and every hour on a
background thread; metrics are sampled only while the window runs.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from urllib.parse import urlparse

from app.paths import Paths
from app.secrets import Secrets
from app.settings import Problem, TraceSettings
from engine.errors import EngineError
from engine.trace.monitor import Monitor
from engine.trace.store import TraceStore
from engine.trace.tracing import Redactor, Tracing

log = logging.getLogger(__name__)

RETENTION_EVERY_S = 3600.0


def endpoint_problem(endpoint: str) -> str | None:
    """Why an OTLP endpoint cannot be used, or None."""
    if not endpoint:
        return None
    url = urlparse(endpoint)
    if url.scheme not in ("http", "https") or not url.hostname:
        return (
            f"Setting 'traces.otlp_endpoint' is {endpoint!r}; it must be an http:// or https:// address such "
            "as http://localhost:4318. Traces stay on this computer until it is fixed."
        )
    return None


def make_tracing(store: TraceStore | None, settings: TraceSettings, secrets: Secrets, version: str) -> Tracing:
    """The engine's Tracing for these settings (disabled when recording is off)."""
    if not settings.enabled:
        return Tracing.disabled()
    endpoint = "" if endpoint_problem(settings.otlp_endpoint) else settings.otlp_endpoint
    headers = {}
    if endpoint:
        try:
            key = secrets.get("otlp_api_key")
        except EngineError as exc:
            log.warning("OTLP API key unavailable: %s", exc.user_text())
            key = None
        if key:
            headers["authorization"] = f"Bearer {key}"
    return Tracing(
        store,
        capture_content=settings.capture_content,
        redactor=Redactor(secrets.values),
        otlp_endpoint=endpoint,
        otlp_headers=headers,
        service_version=version,
    )


@dataclass
class Telemetry:
    """The trace store, the engine's tracing, the monitor and (while the window runs) the metrics sampler."""

    store: TraceStore | None
    tracing: Tracing
    monitor: Monitor | None
    settings: TraceSettings
    sampler: object = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _keeper: threading.Thread | None = None

    def start(self, gauges: dict) -> None:
        """Sample metrics and apply retention in the background (the window calls this)."""
        if self.store is None:
            return
        if self.sampler is None and self.settings.enabled:
            from engine.trace.metrics import MetricsSampler

            self.sampler = MetricsSampler(self.store, interval_s=self.settings.metrics_interval_s, gauges=gauges)
            self.sampler.start()
        if self._keeper is None:
            self._keeper = threading.Thread(target=self._keep, name="locus-trace-retention", daemon=True)
            self._keeper.start()

    def apply_retention(self) -> int:
        if self.store is None:
            return 0
        return self.store.apply_retention(
            max_age_days=self.settings.retention_days, max_bytes=self.settings.max_size_mb * 1024 * 1024
        )

    def _keep(self) -> None:
        while True:
            try:
                deleted = self.apply_retention()
                if deleted:
                    log.info("trace retention deleted %d traces", deleted)
            except EngineError as exc:
                log.warning("trace retention failed: %s (%s)", exc, exc.detail)
            if self._stop.wait(RETENTION_EVERY_S):
                return

    def close(self) -> None:
        """Stop sampling, write out pending spans, close the store."""
        self._stop.set()
        if self.sampler is not None:
            self.sampler.stop()
        self.tracing.shutdown()
        if self._keeper is not None:
            self._keeper.join(5)
        if self.store is not None:
            self.store.close()


def open_telemetry(
    paths: Paths, settings: TraceSettings, secrets: Secrets, version: str, problems: list[Problem]
) -> Telemetry:
    """Open the trace store and build tracing and the monitor; trouble becomes a Problem, never a failed start."""
    problem = endpoint_problem(settings.otlp_endpoint)
    if problem:
        problems.append(Problem("traces.otlp_endpoint", problem))
    try:
        store = TraceStore(paths.traces_db)
    except EngineError as exc:
        problems.append(Problem(None, f"{exc.message} Requests are not traced this session."))
        log.warning("trace store unavailable: %s (%s)", exc, exc.detail)
        return Telemetry(None, Tracing.disabled(), None, settings)
    monitor = Monitor(
        store, baseline_size=settings.drift_window, recent_size=settings.drift_window, alpha=settings.drift_alpha
    )
    return Telemetry(store, make_tracing(store, settings, secrets, version), monitor, settings)
