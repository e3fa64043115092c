"""The trace log window: the trace list, a trace's span tree and details, performance charts, monitoring.

Everything it reads comes through the one background helper: flushing pending
spans and the monitor's permutation test can take a while, and even a quick
SQLite read does not belong on the GUI thread. While the window is open it
refreshes every two seconds, so new requests appear as they finish.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QMainWindow,
    QPushButton,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from engine.trace.store import SpanRecord
from ui.errors import describe, show_error
from ui.ops import run_in_background
from ui.plain import plain_label
from ui.traces.detail import SpanDetail
from ui.traces.monitoring import MonitoringPanel
from ui.traces.performance import PerformancePanel, load_performance
from ui.traces.span_tree import SpanTree
from ui.traces.trace_list import FilterBar, TraceListModel, TraceListView

REFRESH_MS = 2000
PERFORMANCE_STALE_S = 10.0
MONITOR_STALE_S = 60.0


class TraceWindow(QMainWindow):
    """Every request's trace: filter, inspect, export; charts of latency and resources; monitoring."""

    traceShown = Signal(str)  # a trace's span tree is on screen
    listRefreshed = Signal()
    performanceRefreshed = Signal()
    monitoringRefreshed = Signal()
    exported = Signal(str)  # the path written

    def __init__(self, services, parent: QWidget | None = None):
        super().__init__(parent, Qt.WindowType.Window)
        self.setObjectName("traceWindow")
        self.setWindowTitle("Locus — Trace log")
        self.resize(1280, 820)
        self.services = services
        self.trace_id: str | None = None  # the trace whose spans are shown (or loading)
        self.spans: list[SpanRecord] = []
        self.wanted: str | None = None  # asked for by id: select it once the list has it
        self._busy: set[str] = set()  # kinds of reads in flight (list, performance, monitoring)
        self._again = False
        self._monitored_at = self._charted_at = 0.0

        self.filters = FilterBar(self)
        self.filters.changed.connect(self.refresh_all)
        self.model = TraceListModel(self)
        self.list = TraceListView(self.model, self)
        self.list.selectionModel().currentRowChanged.connect(self._row_chosen)
        self.tree = SpanTree(self)
        self.detail = SpanDetail(self)
        self.tree.spanSelected.connect(lambda span: self.detail.show_span(span, self.spans))
        self.refresh_button = self._button("Refresh", "refreshTraces", self.refresh_all)
        self.export_button = self._button("Export JSON…", "exportTrace", self._export_clicked)
        self.export_button.setEnabled(False)

        traces = QWidget(self)
        column = QVBoxLayout(traces)
        row = QHBoxLayout()
        row.addWidget(self.filters, 1)
        row.addWidget(self.refresh_button)
        row.addWidget(self.export_button)
        column.addLayout(row)
        below = QSplitter(Qt.Orientation.Horizontal, self)
        below.addWidget(self.tree)
        below.addWidget(self.detail)
        below.setSizes([560, 680])
        split = QSplitter(Qt.Orientation.Vertical, self)
        split.addWidget(self.list)
        split.addWidget(below)
        split.setSizes([260, 520])
        column.addWidget(split, 1)

        self.performance = PerformancePanel(self)
        self.monitoring = MonitoringPanel(self)
        self.monitoring.refreshRequested.connect(self.refresh_monitoring)
        self.monitoring.traceRequested.connect(self.show_trace)
        self.tabs = QTabWidget(self)
        self.tabs.setObjectName("traceTabs")
        self.tabs.addTab(traces, "Traces")
        self.tabs.addTab(self.performance, "Performance")
        self.tabs.addTab(self.monitoring, "Monitoring")
        self.tabs.currentChanged.connect(lambda _i: self._refresh_visible_tab(force=False))
        self.setCentralWidget(self.tabs)
        self.count_label = plain_label("", self, name="traceCount")
        self.statusBar().addPermanentWidget(self.count_label)
        self.timer = QTimer(self, interval=REFRESH_MS)
        self.timer.timeout.connect(self._tick)
        if self.store is None:
            self._disable("Tracing is off, so there are no traces to show. Turn it on in Settings › Traces.")

    # Read at each use: changing the trace settings replaces the app's tracing and monitor.
    @property
    def store(self):
        return getattr(self.services, "traces", None)

    @property
    def tracing(self):
        return getattr(self.services, "tracing", None)

    @property
    def monitor(self):
        return getattr(self.services, "monitor", None)

    def _button(self, text: str, name: str, slot) -> QPushButton:
        button = QPushButton(text, self)
        button.setObjectName(name)
        button.clicked.connect(slot)
        return button

    def _disable(self, text: str) -> None:
        label = plain_label(text, self, name="tracesOff", wrap=True)
        label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setCentralWidget(label)

    @classmethod
    def open_for(cls, parent: QWidget, services, trace_id: str | None = None) -> TraceWindow:
        """Show the parent's trace window (made on first use), at ``trace_id`` when given."""
        window = parent.findChild(cls)
        if window is None:
            window = cls(services, parent)
        window.show()
        window.raise_()
        window.activateWindow()
        if trace_id:
            window.show_trace(trace_id)
        return window

    # Refreshing ----------------------------------------------------------------------

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self.store is not None:
            self.timer.start()
            self.refresh_all()

    def hideEvent(self, event) -> None:
        self.timer.stop()
        super().hideEvent(event)

    def refresh_all(self, _checked: bool = False, *, force: bool = True) -> None:
        self.refresh()
        self._refresh_visible_tab(force)

    def _tick(self) -> None:
        self.refresh_all(force=False)

    def _refresh_visible_tab(self, force: bool = True) -> None:
        """Charts are re-read now and then, not every tick: a week of samples is a lot of rows."""
        since = self.filters.since()
        chart_stale = PERFORMANCE_STALE_S if since is not None and time.time() - since <= 86400 else MONITOR_STALE_S
        now = time.time()
        if self.tabs.currentWidget() is self.performance and (force or now - self._charted_at > chart_stale):
            self.refresh_performance()
        elif self.tabs.currentWidget() is self.monitoring and (
            not self._monitored_at or now - self._monitored_at > MONITOR_STALE_S
        ):
            self.refresh_monitoring()

    def _start(self, kind: str, work, done) -> bool:
        """Run ``work`` off the GUI thread unless a read of this kind is already running."""
        if self.store is None or kind in self._busy:
            return False
        self._busy.add(kind)

        def succeeded(result) -> None:
            self._busy.discard(kind)
            done(result)

        def failed(exc: BaseException) -> None:
            self._busy.discard(kind)
            self.statusBar().showMessage(describe(exc), 10000)
            if kind == "monitoring":
                self.monitoring.set_busy(False)

        run_in_background(work, succeeded, failed, owner=self)
        return True

    def refresh(self) -> None:
        """Read the trace list for the current filters (pending spans are written first)."""
        where, store, tracing = self.filters.current(), self.store, self.tracing

        def work():
            if tracing is not None:
                tracing.flush()
            return (
                store.list_traces(where),
                (store.distinct("task"), store.distinct("model"), store.distinct("status")),
            )

        if not self._start("list", work, self._listed):
            self._again = "list" in self._busy

    def _listed(self, result) -> None:
        rows, (tasks, models, statuses) = result
        self.filters.set_choices(tasks, models, statuses)
        if self.model.set_rows(rows):
            self.list.select_trace(self.wanted or self.trace_id)
        self.count_label.setText(
            f"{len(rows)} trace{'s' * (len(rows) != 1)}" + (" (the newest 500)" if len(rows) >= 500 else "")
        )
        if self.wanted and self.model.row_of(self.wanted) >= 0:
            self.wanted = None
        elif self.wanted and self.spans and self.spans[0].trace_id == self.wanted:
            self.wanted = None  # it exists but the filters hide it: show everything
            self.filters.choose(time_range="All time", task="", model="", status="", text="")
        shown = next((t for t in rows if t.trace_id == self.trace_id), None)
        if shown is not None and (shown.n_spans != len(self.spans) or shown.status == "running"):
            self.load_spans(shown.trace_id)  # still growing: spans arrived since it was read
        self.listRefreshed.emit()
        if self._again:
            self._again = False
            self.refresh()

    def refresh_performance(self) -> None:
        store, since, task = self.store, self.filters.since(), self.filters.task.currentData()

        def shown(data) -> None:
            self._charted_at = time.time()
            self.performance.show_data(data)
            self.performanceRefreshed.emit()

        self._start("performance", lambda: load_performance(store, since, task), shown)

    def refresh_monitoring(self) -> None:
        """Run the monitor's checks (a permutation test: seconds, never on the GUI thread)."""
        if self.monitor is None:
            self.monitoring.show_unavailable("Monitoring is not available: it needs traces to be on.")
            return
        monitor = self.monitor
        self.monitoring.set_busy(True)

        def shown(report) -> None:
            self._monitored_at = time.time()
            self.monitoring.set_busy(False)
            self.monitoring.show_report(report)
            self.monitoringRefreshed.emit()

        self._start("monitoring", lambda: monitor.report(), shown)

    # One trace -----------------------------------------------------------------------

    def show_trace(self, trace_id: str) -> None:
        """Open at this trace: select it in the list (once listed) and show its spans."""
        self.tabs.setCurrentIndex(0)
        self.wanted = trace_id
        self.list.select_trace(trace_id)
        self.load_spans(trace_id)
        self.refresh()

    def _row_chosen(self, current, _previous) -> None:
        trace_id = current.data(Qt.ItemDataRole.UserRole) if current.isValid() else None
        if trace_id and trace_id != self.trace_id:
            self.wanted = None
            self.load_spans(trace_id)

    def load_spans(self, trace_id: str) -> None:
        if self.store is None:
            return
        self.trace_id = trace_id
        store, tracing = self.store, self.tracing

        def work():
            if tracing is not None:
                tracing.flush()
            return store.trace(trace_id)

        def failed(exc: BaseException) -> None:
            if self.trace_id == trace_id:
                self.spans = []
                self.tree.show_spans([])
                self.detail.show_message(describe(exc))
                self.export_button.setEnabled(False)

        run_in_background(work, lambda spans: self._spans_loaded(trace_id, spans), failed, owner=self)

    def _spans_loaded(self, trace_id: str, spans: list[SpanRecord]) -> None:
        if trace_id != self.trace_id:
            return  # another trace was chosen meanwhile
        self.trace_id = spans[0].trace_id if spans else trace_id
        self.spans = spans
        self.tree.show_spans(spans)
        self.export_button.setEnabled(bool(spans))
        self.traceShown.emit(self.trace_id)

    # Export --------------------------------------------------------------------------

    def _export_clicked(self) -> None:
        if not self.trace_id:
            return
        default = str(Path.home() / f"trace-{self.trace_id[:12]}.json")
        path, _filter = QFileDialog.getSaveFileName(self, "Export trace", default, "JSON (*.json)")
        if path:
            self.export_trace(path)

    def export_trace(self, path: str | Path, trace_id: str | None = None) -> None:
        """Write a trace (the shown one by default) as JSON to ``path``, off the GUI thread."""
        store, trace_id, target = self.store, trace_id or self.trace_id, Path(path)
        if store is None or not trace_id:
            return

        def work() -> str:
            text = json.dumps(store.export(trace_id), ensure_ascii=False, indent=2)
            target.write_text(text + "\n", encoding="utf-8")
            return str(target)

        def written(where: str) -> None:
            self.statusBar().showMessage(f"Trace exported to {where}", 8000)
            self.exported.emit(where)

        run_in_background(work, written, lambda exc: show_error(self, "Trace not exported", exc), owner=self)
