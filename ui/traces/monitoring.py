"""The Monitoring tab: drift of the questions, questions without relevant documents, top retrieval
scores over time, and answers with sentences their sources do not support."""

from __future__ import annotations

import html
import math
from datetime import datetime

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QPushButton,
    QTableWidget,
    QVBoxLayout,
    QWidget,
)

from engine.trace.monitor import DEFAULT_RELEVANCE_LEVEL
from engine.trace.reading import histogram
from ui.plain import plain_label, rich_label
from ui.traces.charts import HistogramChart, TimeChart
from ui.traces.detail import make_cell, make_table
from ui.traces.trace_list import format_start

TRACE_ROLE = Qt.ItemDataRole.UserRole


def _when(ts: float | None) -> str:
    return format_start(ts) if ts else "—"


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' * (count != 1)}"


def drift_text(report) -> str:
    """The drift test and the counts, in words and figures (rich text)."""
    drift = getattr(report, "drift", None)
    note = html.escape(getattr(report, "drift_note", "") or "")
    if drift is None:
        head = "<b>Question drift:</b> not tested yet"
    else:
        verdict = (
            "<span style='color:#c62828'><b>drift detected</b></span>"
            if drift.drifted
            else "<span style='color:#2e7d32'><b>no significant drift</b></span>"
        )
        head = (
            f"<b>Question drift:</b> {verdict} &nbsp;·&nbsp; baseline: {drift.n_baseline} questions "
            f"{_when(drift.baseline_start)} – {_when(drift.baseline_end)}; recent: {drift.n_recent} "
            f"{_when(drift.recent_start)} – {_when(drift.recent_end)}"
        )
    lines = [head]
    if note:
        lines.append(note)
    questions, answers = getattr(report, "questions", 0), getattr(report, "answers_checked", 0)
    counts = (
        f"{_n(questions, 'question')} observed · {len(report.no_relevant)} without relevant documents · "
        f"{_n(answers, 'answer')} checked · {len(report.unsupported)} with unsupported sentences"
    )
    calibration = getattr(report, "calibration", None)
    if calibration is not None:
        counts += (
            f" · relevance level {calibration.relevance_level:.3f}, support level "
            f"{calibration.support_level:.3f} (calibrated on {calibration.n_pairs} pairs from "
            f"{calibration.n_chunks} chunks)"
        )
    lines.append(f"<small>{counts}</small>")
    return "<br>".join(lines)


class MonitoringPanel(QWidget):
    """Shows a MonitoringReport; double-click a flagged row to open its trace."""

    refreshRequested = Signal()
    traceRequested = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("monitoringPanel")
        self.report = None
        layout = QVBoxLayout(self)
        top = QHBoxLayout()
        self.computed = plain_label("Monitoring", self, name="monitorComputed", bold=True)
        self.refresh_button = QPushButton("Recompute", self)
        self.refresh_button.setObjectName("monitorRefresh")
        self.refresh_button.setToolTip("Run the drift test and the checks again on what is stored now")
        self.refresh_button.clicked.connect(self.refreshRequested)
        top.addWidget(self.computed, 1)
        top.addWidget(self.refresh_button)
        layout.addLayout(top)
        # Rich text for the verdict's colour; drift_text escapes every value it shows.
        self.summary = rich_label("Monitoring has not run yet.", self, name="driftSummary", wrap=True, selectable=True)
        layout.addWidget(self.summary)
        grid = QGridLayout()
        self.scores_chart = TimeChart("Top retrieval score per question", "similarity", self, dots=True)
        self.scores_chart.setObjectName("topScoreChart")
        self.histogram = HistogramChart("Distribution of top scores", self)
        self.histogram.setObjectName("topScoreHistogram")
        self.no_relevant = make_table(self, "noRelevantTable", ("Asked", "Top similarity", "Question"))
        self.unsupported = make_table(self, "unsupportedTable", ("Answered", "Support", "Unsupported sentences"))
        for table in (self.no_relevant, self.unsupported):
            table.setWordWrap(True)
            table.setToolTip("Double-click a row to open its trace")
            table.cellDoubleClicked.connect(lambda row, _c, t=table: self._open(t, row))
        grid.addWidget(self.scores_chart, 0, 0)
        grid.addWidget(self.histogram, 0, 1)
        grid.addWidget(self._titled("Questions flagged 'no relevant documents'", self.no_relevant), 1, 0)
        grid.addWidget(self._titled("Answers with unsupported sentences", self.unsupported), 1, 1)
        grid.setRowStretch(0, 1)
        grid.setRowStretch(1, 1)
        layout.addLayout(grid, 1)

    def _titled(self, title: str, table: QTableWidget) -> QWidget:
        box = QWidget(self)
        column = QVBoxLayout(box)
        column.setContentsMargins(0, 0, 0, 0)
        label = plain_label(title, box, bold=True)
        column.addWidget(label)
        column.addWidget(table, 1)
        return box

    def set_busy(self, busy: bool) -> None:
        self.refresh_button.setEnabled(not busy)
        self.refresh_button.setText("Computing…" if busy else "Recompute")

    def show_unavailable(self, text: str) -> None:
        self.report = None
        self.summary.setText(html.escape(text))
        self.refresh_button.setEnabled(False)

    def show_report(self, report) -> None:
        """Fill the tab from a MonitoringReport (engine/trace/monitor.py)."""
        self.report = report
        self.computed.setText(f"Monitoring  ·  computed at {datetime.now():%H:%M:%S}")
        self.summary.setText(drift_text(report))
        scores = [(t, v) for t, v in report.top_scores if v is not None and math.isfinite(v)]
        calibration = getattr(report, "calibration", None)
        level = calibration.relevance_level if calibration is not None else DEFAULT_RELEVANCE_LEVEL
        self.scores_chart.set_series({"top score": scores}, floor=level, floor_name=f"no-relevant level {level:.2f}")
        values = [v for _t, v in scores]
        low = min(0.0, math.floor(min(values, default=0.0) * 10) / 10)
        bins = round((1.0 - low) * 10)
        counts = histogram(values, bins=bins, low=low, high=1.0)
        self.histogram.set_counts(
            counts,
            [f"{low + i / 10:.1f}" for i in range(bins)],
            "top similarity (each bar: from its label to the next)",
        )
        rows = sorted(report.no_relevant, key=lambda q: q.ts, reverse=True)
        self.no_relevant.setRowCount(len(rows))
        for r, q in enumerate(rows):
            self._row(self.no_relevant, r, q.trace_id, _when(q.ts), f"{q.top_similarity:.3f}", q.question)
        answers = sorted(report.unsupported, key=lambda a: a.ts, reverse=True)
        self.unsupported.setRowCount(len(answers))
        for r, a in enumerate(answers):
            sentences = "\n".join(f"• {s}" for s in a.unsupported)
            self._row(self.unsupported, r, a.trace_id, _when(a.ts), f"{a.support:.2f}", sentences)
        for table in (self.no_relevant, self.unsupported):
            table.resizeRowsToContents()

    @staticmethod
    def _row(table: QTableWidget, row: int, trace_id: str | None, *texts: str) -> None:
        for column, text in enumerate(texts):
            item = make_cell(text, text if column == len(texts) - 1 else None)
            item.setData(TRACE_ROLE, trace_id)
            table.setItem(row, column, item)

    def _open(self, table: QTableWidget, row: int) -> None:
        item = table.item(row, 0)
        trace_id = item.data(TRACE_ROLE) if item is not None else None
        if trace_id:
            self.traceRequested.emit(trace_id)
