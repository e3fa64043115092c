"""The runtime thread: queueing, events, cancellation, failed loads, shutdown."""

from __future__ import annotations

import threading

import pytest

from engine.errors import ModelLoadError, ModelNotLoadedError, RuntimeStoppedError
from engine.runtime.runtime import Runtime
from engine.runtime.types import (
    ChatMessage,
    Done,
    Failed,
    GenerationRequest,
    LoadProgress,
    ModelConfig,
    ModelLoaded,
    ModelLoadFailed,
    Priority,
    SamplingParams,
    Started,
    Token,
)


def request(text="Say hello.", max_tokens=16, **kw) -> GenerationRequest:
    return GenerationRequest((ChatMessage("user", text),), SamplingParams(max_tokens=max_tokens, seed=1), **kw)


def test_load_reports_progress_then_the_model(model_path):
    rt = Runtime()
    events = []
    try:
        info = rt.load(ModelConfig(model_path, n_ctx=1024), events.append).result(timeout=120)
    finally:
        rt.shutdown()
    fractions = [e.fraction for e in events if isinstance(e, LoadProgress)]
    assert len(fractions) >= 3 and fractions == sorted(fractions) and fractions[-1] == 1.0
    assert isinstance(events[-1], ModelLoaded) and events[-1].info == info
    assert info.n_ctx == 1024 and info.chat_template_source == "gguf" and info.n_params > 100_000_000


def test_events_arrive_in_order(runtime):
    handle = runtime.submit(request())
    events = list(handle.events())
    assert isinstance(events[0], Started)
    assert all(isinstance(e, Token) for e in events[1:-1])
    assert isinstance(events[-1], Done)
    assert events[-1].text == "".join(e.text for e in events[1:-1])


def test_callback_mode_runs_on_the_runtime_thread(runtime):
    threads = set()
    handle = runtime.submit(request(), lambda e: threads.add(threading.current_thread().name))
    assert isinstance(handle.wait(60), Done)
    assert threads == {"locus-runtime"}


def test_requests_queue_and_a_queued_one_can_be_cancelled_before_it_starts(one_slot):
    first = one_slot.submit(request("Write a long story.", max_tokens=60))
    second = one_slot.submit(request())
    second.cancel()
    assert isinstance(first.wait(60), Done)
    result = second.wait(60)
    assert isinstance(result, Done) and result.stats.finish_reason == "cancelled" and result.text == ""


def test_interactive_requests_overtake_background_ones(one_slot):
    order = []
    blocker = one_slot.submit(request("Write a long story.", max_tokens=40))
    background = one_slot.submit(
        request(priority=Priority.BACKGROUND), lambda e: isinstance(e, Started) and order.append("background")
    )
    interactive = one_slot.submit(
        request(priority=Priority.INTERACTIVE), lambda e: isinstance(e, Started) and order.append("interactive")
    )
    for h in (blocker, background, interactive):
        h.wait(60)
    assert order == ["interactive", "background"]


def test_generation_without_a_model_fails_with_a_reason():
    rt = Runtime()
    try:
        result = rt.submit(request()).wait(10)
    finally:
        rt.shutdown()
    assert isinstance(result, Failed) and isinstance(result.error, ModelNotLoadedError)
    assert "No model is loaded" in result.error.user_text()


def test_a_corrupt_model_is_refused_and_the_current_one_keeps_working(runtime, corrupt_model):
    before = runtime.model_info
    events = []
    with pytest.raises(ModelLoadError) as info:
        runtime.load(ModelConfig(str(corrupt_model)), events.append).result(timeout=60)
    assert "truncated.gguf" in str(info.value) and "corrupt" in str(info.value)
    assert isinstance(events[-1], ModelLoadFailed)
    assert runtime.model_info == before
    assert isinstance(runtime.submit(request()).wait(60), Done)


def test_a_missing_model_file_is_named(runtime, tmp_path):
    missing = tmp_path / "nope.gguf"
    with pytest.raises(ModelLoadError, match=r"nope\.gguf' does not exist"):
        runtime.load(ModelConfig(str(missing))).result(timeout=30)


def test_shutdown_cancels_the_running_request_and_fails_the_waiting_ones(model_path):
    rt = Runtime()
    rt.load(ModelConfig(model_path, n_ctx=1024, n_parallel=1)).result(timeout=120)  # the second one waits
    first_token = threading.Event()
    running = rt.submit(
        request("Write a very long story.", max_tokens=500), lambda e: isinstance(e, Token) and first_token.set()
    )
    waiting = rt.submit(request())
    assert first_token.wait(30)
    rt.shutdown()
    assert running.result.stats.finish_reason == "cancelled"
    assert isinstance(waiting.result, Failed) and isinstance(waiting.result.error, RuntimeStoppedError)
    assert isinstance(rt.submit(request()).wait(1), Failed)


def test_a_broken_consumer_does_not_stop_the_runtime(runtime):
    def explode(event):
        raise RuntimeError("consumer bug")

    first = runtime.submit(request(), explode)
    assert isinstance(first.wait(60), Done)
    assert isinstance(runtime.submit(request()).wait(60), Done)


@pytest.mark.parametrize(
    "bad",
    [dict(n_parallel=0), dict(n_parallel=1000), dict(kv_ram_mb=-1), dict(n_ctx=True), dict(n_batch=4, n_parallel=8)],
)
def test_bad_model_settings_are_refused_with_their_name(model_path, bad):
    from engine.errors import InvalidRequestError

    with pytest.raises(InvalidRequestError, match=next(iter(bad))):
        ModelConfig(model_path, **bad)


def test_an_unknown_scheduling_policy_is_refused():
    with pytest.raises(ValueError, match="fcfs"):
        Runtime(scheduling="random")


def test_a_failure_between_steps_fails_one_request_and_the_runtime_goes_on(runtime, monkeypatch):
    """A bug in scheduling (forced here: nothing real raises there) fails the request it hit, not the thread."""
    from engine.errors import GenerationError
    from engine.runtime.scheduler import Scheduler

    real_admit, calls = Scheduler.admit, []

    def admit_once_broken(*args, **kwargs):
        if not calls:
            calls.append(1)
            raise RuntimeError("scheduling bug")
        return real_admit(*args, **kwargs)

    monkeypatch.setattr(Scheduler, "admit", admit_once_broken)
    hit = runtime.submit(request()).wait(60)
    assert isinstance(hit, Failed) and isinstance(hit.error, GenerationError)
    assert isinstance(runtime.submit(request()).wait(60), Done)


def test_a_load_consumer_that_raises_still_gets_the_load_resolved(model_path, corrupt_model):
    def broken(event):
        raise RuntimeError("a bug in the window")

    rt = Runtime()
    try:
        with pytest.raises(ModelLoadError):
            rt.load(ModelConfig(str(corrupt_model)), broken).result(timeout=60)
        info = rt.load(ModelConfig(model_path, n_ctx=512), broken).result(timeout=120)
        assert info.path == model_path
        assert isinstance(rt.submit(request()).wait(60), Done)
    finally:
        rt.shutdown()


def test_a_request_whose_trace_span_cannot_open_fails_alone(runtime, monkeypatch):
    """A bug in tracing (forced here) as a request starts: its caller hears Failed, the next one is answered."""
    import engine.runtime.runtime as module

    real, calls = module.GenerationSpan, []

    def broken_once(*args, **kwargs):
        if not calls:
            calls.append(1)
            raise RuntimeError("tracing bug")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "GenerationSpan", broken_once)
    hit = runtime.submit(request()).wait(60)
    assert isinstance(hit, Failed) and runtime.queue_length == 0
    assert isinstance(runtime.submit(request()).wait(60), Done)
