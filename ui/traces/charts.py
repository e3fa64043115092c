"""Small QtCharts views: values over time (one line per series) and a histogram."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from PySide6.QtCharts import (
    QBarCategoryAxis,
    QBarSeries,
    QBarSet,
    QChart,
    QChartView,
    QDateTimeAxis,
    QLineSeries,
    QScatterSeries,
    QValueAxis,
)
from PySide6.QtCore import QDateTime, QMargins, QPointF, Qt
from PySide6.QtGui import QPainter, QPalette
from PySide6.QtWidgets import QWidget


def _chart(title: str, parent: QWidget) -> QChart:
    chart = QChart()
    dark = parent.palette().color(QPalette.ColorRole.Window).lightness() < 128
    chart.setTheme(QChart.ChartTheme.ChartThemeDark if dark else QChart.ChartTheme.ChartThemeLight)
    chart.setBackgroundRoundness(4)
    chart.setMargins(QMargins(4, 4, 4, 4))
    chart.setTitle(title)
    chart.legend().setAlignment(Qt.AlignmentFlag.AlignBottom)
    return chart


class TimeChart(QChartView):
    """Values over time, one line (or dots) per named series; times are seconds since the epoch."""

    def __init__(self, title: str, unit: str, parent: QWidget | None = None, *, dots: bool = False):
        super().__init__(parent)
        self.title = title
        self.unit = unit
        self.dots = dots
        self.setRenderHint(QPainter.RenderHint.Antialiasing)
        self.setMinimumHeight(190)
        self.chart_ = _chart(title, self)
        self.setChart(self.chart_)
        self.x_axis = QDateTimeAxis()
        self.x_axis.setFormat("HH:mm")
        self.x_axis.setTickCount(5)
        self.y_axis = QValueAxis()
        self.y_axis.setTitleText(unit)
        self.y_axis.setLabelFormat("%.3g")
        self.chart_.addAxis(self.x_axis, Qt.AlignmentFlag.AlignBottom)
        self.chart_.addAxis(self.y_axis, Qt.AlignmentFlag.AlignLeft)
        self.series: dict[str, QLineSeries] = {}
        self.set_series({})

    def set_series(
        self,
        data: Mapping[str, Sequence[tuple[float, float]]],
        *,
        floor: float | None = None,
        floor_name: str = "threshold",
    ) -> None:
        """Show these series (name -> (time, value) points); names not given disappear.

        ``floor`` draws a dashed horizontal line at that value across the chart (a threshold)."""
        self.floor_name = floor_name
        for name in [n for n in self.series if n not in data]:
            self.chart_.removeSeries(self.series.pop(name))
        xs = [t for points in data.values() for t, _v in points]
        ys = [v for points in data.values() for _t, v in points] + ([floor] if floor is not None else [])
        for name, points in data.items():
            series = self.series.get(name)
            if series is None:
                series = QScatterSeries() if self.dots and name != "threshold" else QLineSeries()
                if isinstance(series, QScatterSeries):
                    series.setMarkerSize(7)
                series.setName(name)
                self.chart_.addSeries(series)
                series.attachAxis(self.x_axis)
                series.attachAxis(self.y_axis)
                self.series[name] = series
            series.replace([QPointF(t * 1000.0, v) for t, v in points])
        self.chart_.setTitle(self.title if xs else f"{self.title} — no data yet")
        low_x, high_x = (min(xs), max(xs)) if xs else (0.0, 0.0)
        if high_x - low_x < 60:
            low_x, high_x = (low_x or _now()) - 30, (high_x or _now()) + 30
        else:  # a margin, so that the first and last points are not cut by the chart's edge
            pad = (high_x - low_x) * 0.03
            low_x, high_x = low_x - pad, high_x + pad
        self.x_axis.setRange(
            QDateTime.fromMSecsSinceEpoch(int(low_x * 1000)), QDateTime.fromMSecsSinceEpoch(int(high_x * 1000))
        )
        self.x_axis.setFormat(
            "HH:mm:ss" if high_x - low_x < 600 else "HH:mm" if high_x - low_x < 86400 else "MMM d HH:mm"
        )
        low_y, high_y = min([*ys, 0.0]), max([*ys, 0.0])
        self.y_axis.setRange(low_y, high_y * 1.1 if high_y > 0 else 1.0)
        self.y_axis.applyNiceNumbers()
        if floor is not None and xs:
            self._threshold(floor, low_x, high_x)
        self.chart_.legend().setVisible(len(self.series) > 1)

    def _threshold(self, value: float, low_x: float, high_x: float) -> None:
        line = self.series.get("threshold")
        if line is None:
            line = QLineSeries()
            line.setName(self.floor_name)
            pen = line.pen()
            pen.setStyle(Qt.PenStyle.DashLine)
            line.setPen(pen)
            self.chart_.addSeries(line)
            line.attachAxis(self.x_axis)
            line.attachAxis(self.y_axis)
            self.series["threshold"] = line
        line.replace([QPointF(low_x * 1000.0, value), QPointF(high_x * 1000.0, value)])

    def point_count(self) -> int:
        """How many points are drawn (the threshold line aside), for tests."""
        return sum(s.count() for name, s in self.series.items() if name != "threshold")


class HistogramChart(QChartView):
    """Counts per bin, as bars."""

    def __init__(self, title: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.title = title
        self.setRenderHint(QPainter.RenderHint.Antialiasing)
        self.setMinimumHeight(190)
        self.chart_ = _chart(title, self)
        self.chart_.legend().setVisible(False)
        self.setChart(self.chart_)
        self.counts: list[int] = []

    def set_counts(self, counts: Sequence[int], labels: Sequence[str], x_title: str = "") -> None:
        self.counts = list(counts)
        self.chart_.removeAllSeries()
        for axis in self.chart_.axes():
            self.chart_.removeAxis(axis)
        bars = QBarSet("count")
        bars.append([float(c) for c in counts])
        series = QBarSeries()
        series.setBarWidth(0.9)
        series.append(bars)
        self.chart_.addSeries(series)
        x = QBarCategoryAxis()
        x.append(list(labels))
        x.setTitleText(x_title)
        y = QValueAxis()
        y.setLabelFormat("%d")
        y.setRange(0, max([*counts, 1]))
        y.applyNiceNumbers()
        self.chart_.addAxis(x, Qt.AlignmentFlag.AlignBottom)
        self.chart_.addAxis(y, Qt.AlignmentFlag.AlignLeft)
        series.attachAxis(x)
        series.attachAxis(y)
        self.chart_.setTitle(self.title if sum(counts) else f"{self.title} — no data yet")


def _now() -> float:
    return QDateTime.currentMSecsSinceEpoch() / 1000.0
