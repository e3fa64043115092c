"""System, GPU and engine metrics, sampled on a timer into the trace store.

CPU and memory come from psutil; GPU utilisation and memory from NVIDIA's
management library (pynvml) when a driver is present; the engine adds its own
gauges (queue length, tokens per second). One daemon thread owns the sampling
and the NVML session, and stops through an Event.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from functools import partial
from types import ModuleType

import psutil

from engine.trace.store import TraceStore

log = logging.getLogger(__name__)

Gauge = Callable[[], "float | None"]
Sample = tuple[float, str, float]


def nvml_probe() -> ModuleType | None:
    """The pynvml module, or None when it is not installed (whether a GPU answers is found at nvmlInit)."""
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml


class MetricsSampler:
    """Every ``interval_s``, samples process, system, GPU and the given gauges into ``store.add_metrics``.

    ``nvml`` replaces the pynvml module (tests, where no GPU exists); ``gpu=False`` never touches NVML.
    """

    def __init__(
        self,
        store: TraceStore,
        *,
        interval_s: float = 5.0,
        gauges: dict[str, Gauge] | None = None,
        gpu: bool = True,
        nvml: ModuleType | None = None,
    ):
        self.store = store
        self.interval_s = interval_s
        self.gauges = dict(gauges or {})
        self._gpu_wanted = gpu
        self._nvml_module = nvml
        self._nvml: ModuleType | None = None
        self._gpu_handles: list = []
        self._gpu_checked = False
        self._lock = threading.Lock()  # sample_once and the NVML session, from the thread or a caller
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._quiet: set[str] = set()  # readings already reported as failing, so each logs once
        self._process = psutil.Process()
        # A non-blocking cpu_percent compares with the previous call; the first one only sets the baseline.
        self._process.cpu_percent(None)
        psutil.cpu_percent(None)

    # Lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Sample now and then every interval on a daemon thread (a second start does nothing)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="locus-metrics", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop sampling and close NVML; returns as soon as the thread wakes (it waits on an Event)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout_s)
        if thread is None or not thread.is_alive():
            # A thread still stuck in a slow gauge closes NVML itself when it ends.
            self._close_gpu()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def gpu_available(self) -> bool:
        """Whether NVML answered and found at least one GPU."""
        with self._lock:
            self._open_gpu()
            return bool(self._gpu_handles)

    def _run(self) -> None:
        failing = False
        try:
            while not self._stop.is_set():
                try:
                    self.sample_once()
                    failing = False
                except Exception:
                    log.log(logging.DEBUG if failing else logging.WARNING, "could not store metrics", exc_info=True)
                    failing = True
                self._stop.wait(self.interval_s)
        finally:
            self._close_gpu()

    # Sampling ------------------------------------------------------------------------

    def sample_once(self) -> list[Sample]:
        """Take one sample of every metric, store it, and return the (timestamp, name, value) rows."""
        with self._lock:
            now = time.time()
            readings = self._system() + self._gpu() + self._extra()
        # SQLite stores NaN as NULL, which the metrics table refuses: one bad value would lose the batch.
        samples = [(now, name, float(value)) for name, value in readings if value is not None and math.isfinite(value)]
        self.store.add_metrics(samples)
        return samples

    def _system(self) -> list[tuple[str, float | None]]:
        process = self._process
        readings = {
            "process.cpu_percent": lambda: process.cpu_percent(None),
            "process.rss_bytes": lambda: process.memory_info().rss,
            "system.memory_percent": lambda: psutil.virtual_memory().percent,
            "system.cpu_percent": lambda: psutil.cpu_percent(None),
        }
        return [(name, self._try(name, read)) for name, read in readings.items()]

    def _gpu(self) -> list[tuple[str, float | None]]:
        self._open_gpu()
        nvml = self._nvml
        out: list[tuple[str, float | None]] = []
        if nvml is None:  # (no handles either)
            return out
        for i, handle in enumerate(self._gpu_handles):
            name = f"gpu.{i}.utilization_percent"
            out.append((name, self._try(name, partial(_utilization, nvml, handle))))
            memory = self._try(f"gpu.{i}.memory", partial(nvml.nvmlDeviceGetMemoryInfo, handle))
            if memory is not None:
                out.append((f"gpu.{i}.memory_used_bytes", memory.used))
                out.append((f"gpu.{i}.memory_total_bytes", memory.total))
        return out

    def _extra(self) -> list[tuple[str, float | None]]:
        return [
            (name, self._try(name, partial(_read_gauge, gauge), logging.WARNING)) for name, gauge in self.gauges.items()
        ]

    def _try(self, name: str, read: Callable[[], object], level: int = logging.DEBUG):
        """``read()``, or None when it fails (logged once per name, until it works again)."""
        try:
            value = read()
        except Exception:
            if name not in self._quiet:
                self._quiet.add(name)
                log.log(level, "metric %s could not be read; skipping it", name, exc_info=True)
            return None
        self._quiet.discard(name)
        return value

    # NVML ----------------------------------------------------------------------------

    def _open_gpu(self) -> None:
        if self._gpu_checked:
            return
        self._gpu_checked = True
        if not self._gpu_wanted:
            return
        nvml = self._nvml_module or nvml_probe()
        if nvml is None:
            log.debug("no GPU metrics: pynvml is not installed")
            return
        try:
            nvml.nvmlInit()
        except Exception as exc:  # noqa: BLE001 - NVMLError: no driver or no library, the usual case without a GPU
            log.debug("no GPU metrics: NVML did not start (%s)", exc)
            return
        try:
            self._gpu_handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
        except Exception as exc:  # noqa: BLE001 - NVMLError again: a GPU it cannot list is no GPU to watch
            log.debug("no GPU metrics: NVML could not list the GPUs (%s)", exc)
            self._gpu_handles = []
            _shutdown_quietly(nvml)
            return
        self._nvml = nvml

    def _close_gpu(self) -> None:
        with self._lock:
            if self._nvml is not None:
                _shutdown_quietly(self._nvml)
            self._nvml, self._gpu_handles, self._gpu_checked = None, [], False


def _utilization(nvml: ModuleType, handle) -> float:
    return nvml.nvmlDeviceGetUtilizationRates(handle).gpu


def _read_gauge(gauge: Callable[[], object]) -> float | None:
    return _number(gauge())


def _number(value) -> float | None:
    """A gauge's value as a number (None stays None); anything else raises, which skips the gauge."""
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return value
    return float(value)


def _shutdown_quietly(nvml: ModuleType) -> None:
    try:
        nvml.nvmlShutdown()
    except Exception:
        log.debug("nvmlShutdown failed", exc_info=True)
