"""MetricsSampler: real psutil readings, engine gauges, the sampling thread, and GPU readings through NVML."""

from __future__ import annotations

import logging
import time
from types import SimpleNamespace

import pytest

from engine.trace.metrics import MetricsSampler
from engine.trace.store import TraceStore

SYSTEM = {"process.cpu_percent", "process.rss_bytes", "system.memory_percent", "system.cpu_percent"}


@pytest.fixture()
def store(tmp_path):
    s = TraceStore(tmp_path / "traces.sqlite3")
    yield s
    s.close()


class FakeNvml:
    """The NVML calls the sampler makes, answering for two GPUs: this machine has none (the one fake here)."""

    class NVMLError(Exception):
        pass

    def __init__(self, *, init_fails: bool = False, utilization_fails_on: int | None = None):
        self.init_fails = init_fails
        self.utilization_fails_on = utilization_fails_on
        self.initialised = False
        self.shutdowns = 0

    def nvmlInit(self):  # noqa: N802 - pynvml's own name
        if self.init_fails:
            raise self.NVMLError("Driver Not Loaded")
        self.initialised = True

    def nvmlShutdown(self):  # noqa: N802 - pynvml's own name
        self.shutdowns += 1
        self.initialised = False

    def nvmlDeviceGetCount(self):  # noqa: N802 - pynvml's own name
        return 2

    def nvmlDeviceGetHandleByIndex(self, index):  # noqa: N802 - pynvml's own name
        return f"handle-{index}"

    def nvmlDeviceGetUtilizationRates(self, handle):  # noqa: N802 - pynvml's own name
        if handle == f"handle-{self.utilization_fails_on}":
            raise self.NVMLError("Not Supported")
        return SimpleNamespace(gpu={"handle-0": 37, "handle-1": 4}[handle], memory=12)

    def nvmlDeviceGetMemoryInfo(self, handle):  # noqa: N802 - pynvml's own name
        used = {"handle-0": 6 << 30, "handle-1": 1 << 30}[handle]
        return SimpleNamespace(used=used, total=80 << 30, free=(80 << 30) - used)


def test_real_process_and_system_readings_reach_the_store(store):
    sampler = MetricsSampler(store, gpu=False)
    time.sleep(0.05)  # cpu_percent measures since the previous call
    samples = sampler.sample_once()

    assert {name for _, name, _ in samples} == SYSTEM
    assert len({ts for ts, _, _ in samples}) == 1  # one timestamp per sample
    assert set(store.metric_names()) == SYSTEM
    (rss,) = store.metrics("process.rss_bytes")
    assert rss[1] > 10e6
    assert abs(rss[0] - time.time()) < 5
    assert store.metrics("process.cpu_percent")[0][1] >= 0
    assert 0 <= store.metrics("system.cpu_percent")[0][1] <= 100
    assert 0 < store.metrics("system.memory_percent")[0][1] <= 100


def test_gauges_are_recorded_and_a_broken_one_is_skipped(store, caplog):
    queue = [3, 5]

    def broken():
        raise RuntimeError("the runtime is gone")

    sampler = MetricsSampler(
        store,
        gpu=False,
        gauges={
            "runtime.queue_length": lambda: queue.pop(0),
            "runtime.tokens_per_s": lambda: None,  # nothing generated yet
            "runtime.broken": broken,
            "runtime.ratio": lambda: float("nan"),  # 0/0 somewhere: SQLite would refuse the whole batch
        },
    )
    with caplog.at_level(logging.DEBUG, logger="engine.trace.metrics"):
        sampler.sample_once()
        sampler.sample_once()

    assert [v for _, v in store.metrics("runtime.queue_length")] == [3.0, 5.0]
    assert store.metrics("runtime.tokens_per_s") == []
    assert store.metrics("runtime.broken") == []
    assert store.metrics("runtime.ratio") == []
    assert len(store.metrics("process.rss_bytes")) == 2  # the rest of each sample still arrived
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in warnings] == ["metric runtime.broken could not be read; skipping it"]


def test_start_samples_repeatedly_and_stop_returns_promptly(store):
    sampler = MetricsSampler(store, interval_s=0.05, gpu=False, gauges={"runtime.queue_length": lambda: 1})
    sampler.start()
    sampler.start()  # a second start does not add a second thread
    deadline = time.monotonic() + 5
    while len(store.metrics("process.rss_bytes")) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sampler.running

    began = time.monotonic()
    sampler.stop()
    assert time.monotonic() - began < 0.5
    assert not sampler.running
    taken = len(store.metrics("runtime.queue_length"))
    assert taken >= 4
    time.sleep(0.15)
    assert len(store.metrics("runtime.queue_length")) == taken  # nothing after stop


def test_gpu_readings_through_nvml(store):
    nvml = FakeNvml()
    sampler = MetricsSampler(store, nvml=nvml)
    assert sampler.gpu_available
    samples = {name: value for _, name, value in sampler.sample_once()}

    assert {k: v for k, v in samples.items() if k.startswith("gpu.")} == {
        "gpu.0.utilization_percent": 37.0,
        "gpu.0.memory_used_bytes": float(6 << 30),
        "gpu.0.memory_total_bytes": float(80 << 30),
        "gpu.1.utilization_percent": 4.0,
        "gpu.1.memory_used_bytes": float(1 << 30),
        "gpu.1.memory_total_bytes": float(80 << 30),
    }
    assert store.metrics("gpu.1.memory_used_bytes")[0][1] == 1 << 30
    sampler.stop()
    assert nvml.shutdowns == 1 and not nvml.initialised


def test_an_unsupported_gpu_query_loses_only_that_reading(store):
    sampler = MetricsSampler(store, nvml=FakeNvml(utilization_fails_on=1))
    names = {name for _, name, _ in sampler.sample_once()}
    assert "gpu.1.utilization_percent" not in names
    assert {"gpu.0.utilization_percent", "gpu.1.memory_used_bytes", "gpu.1.memory_total_bytes"} <= names
    sampler.stop()


def test_no_gpu_means_no_gpu_metrics_and_no_error(store, caplog):
    nvml = FakeNvml(init_fails=True)
    with caplog.at_level(logging.DEBUG, logger="engine.trace.metrics"):
        sampler = MetricsSampler(store, nvml=nvml)
        assert not sampler.gpu_available
        names = {name for _, name, _ in sampler.sample_once()}
        sampler.sample_once()
        sampler.stop()
    assert names == SYSTEM
    assert nvml.shutdowns == 0
    assert [r.levelno for r in caplog.records] == [logging.DEBUG]  # said once, quietly
    assert "Driver Not Loaded" in caplog.records[0].getMessage()


def test_the_real_nvml_never_raises(store):
    """Whatever this machine has (no GPU, no driver, or a GPU), the real pynvml path samples cleanly."""
    sampler = MetricsSampler(store)
    names = {name for _, name, _ in sampler.sample_once()}
    gpu_names = {n for n in names if n.startswith("gpu.")}
    assert bool(gpu_names) == sampler.gpu_available
    sampler.stop()
