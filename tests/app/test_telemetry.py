"""Traces, metrics and retention as the app wires them from config.toml."""

from __future__ import annotations

import time

import pytest

from app import settings as settings_mod
from app.paths import resolve_paths
from app.services import build_services
from engine.trace.store import TraceFilter


def write_config(home, **traces):
    settings = settings_mod.Settings()
    for key, value in traces.items():
        settings = settings.with_value(f"traces.{key}", value)
    settings_mod.save(settings, home / "config.toml")


@pytest.fixture()
def services_for(locus_home):
    made = []

    def build(**traces):
        write_config(locus_home, **traces)
        s = build_services(resolve_paths())
        made.append(s)
        return s

    yield build
    for s in made:
        s.close()


def test_retention_by_age_and_size_applies_to_the_apps_store(services_for):
    services = services_for(retention_days=7, max_size_mb=5)
    now_ns = time.time_ns()
    for days_old in (30, 8, 1, 0):
        start = now_ns - days_old * 86_400 * 10**9
        span = services.tracing.start(
            "ask", attributes={"locus.task": "chat", "locus.summary": f"{days_old} days"}, start_time_ns=start
        )
        span.end(end_time=start + 10**9)
    services.tracing.flush()
    assert services.traces.count() == 4
    assert services.telemetry.apply_retention() == 2
    assert sorted(t.summary for t in services.traces.list_traces()) == ["0 days", "1 days"]


def test_a_bad_otlp_endpoint_is_a_problem_and_traces_stay_local(services_for):
    services = services_for(otlp_endpoint="localhost:4318")
    problems = [p for p in services.problems if p.key == "traces.otlp_endpoint"]
    assert problems and "http://" in problems[0].message
    assert services.tracing.enabled and services.tracing.otlp_endpoint == ""


@pytest.mark.slow
def test_turning_traces_off_and_content_capture_apply_at_once(services_for):
    services = services_for()
    services.load_model().result(timeout=120)
    services.assistant.ask("First question?").wait(120)
    services.tracing.flush()
    assert [t.summary for t in services.traces.list_traces()] == ["First question?"]

    services.apply_settings(services.settings.with_value("traces.capture_content", False))
    services.assistant.ask("Second question?").wait(120)
    services.tracing.flush()
    assert sorted(t.summary for t in services.traces.list_traces()) == ["", "First question?"]

    services.apply_settings(services.settings.with_value("traces.enabled", False))
    backends = services.backends.current().available.values()
    assert not services.tracing.enabled and all(b.tracing is services.tracing for b in backends)
    assert services.assistant.tracing is services.tracing
    services.assistant.ask("Third question?").wait(120)
    time.sleep(0.3)
    assert services.traces.count() == 2


def test_metrics_are_sampled_while_the_window_runs(services_for):
    services = services_for(metrics_interval_s=0.5)
    services.start_telemetry()
    deadline = time.time() + 20
    while time.time() < deadline and len(services.traces.metrics("runtime.queue_length")) < 2:
        time.sleep(0.1)
    assert len(services.traces.metrics("runtime.queue_length")) >= 2
    rss = services.traces.metrics("process.rss_bytes")
    assert rss and rss[-1][1] > 50 * 2**20
    assert services.traces.list_traces(TraceFilter(task="chat")) == []


@pytest.mark.slow
def test_a_keyring_token_never_reaches_the_trace_store(secret_service, locus_home):
    """The user stores a token with `locus secrets set`, then pastes it into a question: no stored span has it."""
    from tests.app.helpers import locus

    token = "tok-7Qm2Zr9XkVb4Lp8Wn3Hs"  # not shaped like any known key: only the keyring knows it is secret
    stored = locus(locus_home, "secrets", "set", "otlp_api_key", stdin=token + "\n")
    assert stored.returncode == 0, stored.stderr
    status = locus(locus_home, "secrets", "status")
    assert "otlp_api_key: stored" in status.stdout, status.stdout + status.stderr
    asked = locus(
        locus_home, "ask", f"My collector key is {token}. Repeat it back to me.", "--max-tokens", "24", "--seed", "3"
    )
    assert asked.returncode == 0, asked.stderr
    shown = locus(
        locus_home,
        "traces",
        "show",
        "--content",
        "--attributes",
        locus(locus_home, "traces", "list", "--json").stdout.split('"trace_id": "')[1][:32],
    )
    assert "[redacted]" in shown.stdout and token not in shown.stdout
    raw = b"".join(p.read_bytes() for p in locus_home.glob("traces.sqlite3*"))
    assert raw and token.encode() not in raw
    # Only the conversation itself keeps what the user typed; config, traces and everything else do not.
    others = [p for p in locus_home.rglob("*") if p.is_file() and not p.name.startswith("locus.sqlite3")]
    assert others and not [p.name for p in others if token.encode() in p.read_bytes()]
    assert locus(locus_home, "secrets", "delete", "otlp_api_key").returncode == 0
    assert "otlp_api_key: not set" in locus(locus_home, "secrets", "status").stdout
