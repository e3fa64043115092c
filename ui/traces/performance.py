"""Charts of requests over time (latency, time to first token, tokens/s) and of the process metrics."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from PySide6.QtWidgets import QFrame, QGridLayout, QScrollArea, QWidget

from engine.trace.reading import downsample
from engine.trace.store import TraceStore
from ui.traces.charts import TimeChart

Points = list[tuple[float, float]]
MIB, GIB = 2**20, 2**30

# Per-request figures: (chart key, title, unit, store column).
REQUEST_CHARTS = (
    ("latency", "Latency per request", "s", "duration_s"),
    ("ttft", "Time to first token", "s", "ttft_s"),
    ("tokens_per_s", "Tokens per second", "tokens/s", "tokens_per_s"),
)
# Sampled metrics: (chart key, title, unit, [(metric name, line name)], scale); {i} is a GPU's index.
METRIC_CHARTS = (
    (
        "cpu",
        "CPU and memory",
        "%",
        [
            ("process.cpu_percent", "Locus CPU"),
            ("system.cpu_percent", "System CPU"),
            ("system.memory_percent", "System memory"),
        ],
        1.0,
    ),
    ("rss", "Locus memory", "MiB", [("process.rss_bytes", "Resident")], 1 / MIB),
    ("queue", "Queue length", "requests", [("runtime.queue_length", "Waiting")], 1.0),
    ("speed", "Generation speed", "tokens/s", [("runtime.tokens_per_s", "Runtime")], 1.0),
    ("gpu", "GPU utilization", "%", [("gpu.{i}.utilization_percent", "GPU {i}")], 1.0),
    (
        "gpu_memory",
        "GPU memory",
        "GiB",
        [("gpu.{i}.memory_used_bytes", "GPU {i} used"), ("gpu.{i}.memory_total_bytes", "GPU {i} total")],
        1 / GIB,
    ),
)
_GPU = re.compile(r"^gpu\.(\d+)\.")


@dataclass(frozen=True)
class PerformanceData:
    """Everything the performance tab draws, read in one go off the GUI thread."""

    charts: dict[str, dict[str, Points]] = field(default_factory=dict)


def load_performance(
    store: TraceStore, since: float | None, task: str | None = None, most: int = 600
) -> PerformanceData:
    """Read the per-request series and every known metric since ``since`` (seconds since the epoch)."""
    charts: dict[str, dict[str, Points]] = {}
    for key, _title, _unit, column in REQUEST_CHARTS:
        charts[key] = {"per request": downsample(store.series(column, since, task), most)}
    names = set(store.metric_names())
    gpus = sorted({int(m.group(1)) for n in names if (m := _GPU.match(n))})
    for key, _title, _unit, lines, scale in METRIC_CHARTS:
        series: dict[str, Points] = {}
        for metric, label in lines:
            for i in gpus if "{i}" in metric else [None]:
                name = metric.format(i=i) if i is not None else metric
                if name in names:
                    points = downsample(store.metrics(name, since), most)
                    series[label.format(i=i)] = [(t, v * scale) for t, v in points]
        charts[key] = series
    return PerformanceData(charts)


class PerformancePanel(QScrollArea):
    """A grid of charts; GPU charts appear only where GPU metrics were recorded."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("performancePanel")
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        body = QWidget(self)
        grid = QGridLayout(body)
        self.charts: dict[str, TimeChart] = {}
        specs = [(k, t, u, True) for k, t, u, _c in REQUEST_CHARTS] + [
            (k, t, u, False) for k, t, u, _l, _s in METRIC_CHARTS
        ]
        for index, (key, title, unit, dots) in enumerate(specs):
            chart = TimeChart(title, unit, body, dots=dots)
            chart.setObjectName(f"chart_{key}")
            grid.addWidget(chart, index // 3, index % 3)
            self.charts[key] = chart
        self.setWidget(body)
        self.show_data(PerformanceData())

    def show_data(self, data: PerformanceData) -> None:
        for key, chart in self.charts.items():
            series = data.charts.get(key, {})
            chart.set_series(series)
            if key.startswith("gpu"):
                chart.setVisible(bool(series))
