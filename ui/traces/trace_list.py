"""The trace list and its filters: time range, task, model, status and free text."""

from __future__ import annotations

import time
from datetime import datetime

from PySide6.QtCore import QAbstractTableModel, QDateTime, QItemSelectionModel, QModelIndex, Qt, QTimer, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDateTimeEdit,
    QHBoxLayout,
    QHeaderView,
    QLineEdit,
    QTableView,
    QWidget,
)

from engine.trace.reading import format_duration
from engine.trace.store import TraceFilter, TraceSummary
from ui.plain import literal, plain_label

STATE_COLOURS = {"error": QColor("#c62828"), "cancelled": QColor("#ef6c00"), "running": QColor("#757575")}
TIME_RANGES = (
    ("Last hour", 3600.0),
    ("Last 24 hours", 86400.0),
    ("Last 7 days", 7 * 86400.0),
    ("All time", None),
    ("Custom range…", "custom"),
)
TEXT_DEBOUNCE_MS = 300
COLUMN_WIDTHS = (80, 120, 320, 150, 70, 70, 80, 70, 90)


class FilterBar(QWidget):
    """Which traces to list; ``changed`` fires when any choice changes (typing settles first)."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("traceFilters")
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        self.time_range = QComboBox(self)
        self.time_range.setObjectName("timeRange")
        for label, value in TIME_RANGES:
            self.time_range.addItem(label, value)
        self.time_range.setCurrentIndex(1)
        now = QDateTime.currentDateTime()
        self.since_edit = self._date_edit(now.addDays(-1), "sinceEdit")
        self.until_edit = self._date_edit(now.addSecs(3600), "untilEdit")
        self.task = self._choice("Any task", "taskFilter")
        self.model = self._choice("Any model", "modelFilter")
        self.status = self._choice("Any status", "statusFilter")
        self.text = QLineEdit(self)
        self.text.setObjectName("traceSearch")
        self.text.setPlaceholderText("Search questions, span names, attributes, ids…")
        self.text.setClearButtonEnabled(True)
        self._debounce = QTimer(self, singleShot=True, interval=TEXT_DEBOUNCE_MS)
        self._debounce.timeout.connect(self.changed)
        self.text.textChanged.connect(lambda _t: self._debounce.start())
        self.time_range.currentIndexChanged.connect(self._range_chosen)
        for widget in (self.since_edit, self.until_edit):
            widget.dateTimeChanged.connect(lambda _d: self.changed.emit())
        for label, widget in (
            ("Time", self.time_range),
            (None, self.since_edit),
            (None, self.until_edit),
            ("Task", self.task),
            ("Model", self.model),
            ("Status", self.status),
        ):
            if label:
                row.addWidget(plain_label(label, self))
            row.addWidget(widget)
        row.addWidget(self.text, 1)
        self._range_chosen()

    def _date_edit(self, value: QDateTime, name: str) -> QDateTimeEdit:
        edit = QDateTimeEdit(value, self)
        edit.setObjectName(name)
        edit.setCalendarPopup(True)
        edit.setDisplayFormat("yyyy-MM-dd HH:mm")
        return edit

    def _choice(self, anything: str, name: str) -> QComboBox:
        combo = QComboBox(self)
        combo.setObjectName(name)
        combo.addItem(anything, None)
        combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(12)  # a long model name must not squeeze the search field
        combo.currentIndexChanged.connect(lambda _i: self.changed.emit())
        return combo

    def _range_chosen(self, *_args) -> None:
        custom = self.time_range.currentData() == "custom"
        self.since_edit.setVisible(custom)
        self.until_edit.setVisible(custom)
        self.changed.emit()

    def set_choices(self, tasks: list[str], models: list[str], statuses: list[str]) -> None:
        """Offer the tasks, models and statuses that occur, keeping what is chosen."""
        for combo, values in ((self.task, tasks), (self.model, models), (self.status, statuses)):
            current = combo.currentData()
            wanted = sorted(set(values) | ({current} if current else set()))
            if [combo.itemData(i) for i in range(1, combo.count())] == wanted:
                continue
            combo.blockSignals(True)
            while combo.count() > 1:
                combo.removeItem(1)
            for value in wanted:
                combo.addItem(value, value)
            combo.setCurrentIndex(max(0, combo.findData(current)) if current else 0)
            combo.blockSignals(False)

    def choose(
        self,
        *,
        time_range: str | None = None,
        task: str | None = None,
        status: str | None = None,
        model: str | None = None,
        text: str | None = None,
    ) -> None:
        """Set filters from code (tests, 'open at this trace'); one ``changed`` follows."""
        self.blockSignals(True)
        if time_range is not None:
            self.time_range.setCurrentIndex(self.time_range.findText(time_range))
        for combo, value in ((self.task, task), (self.status, status), (self.model, model)):
            if value is not None:
                if value and combo.findData(value) < 0:
                    combo.addItem(value, value)
                combo.setCurrentIndex(combo.findData(value) if value else 0)
        if text is not None:
            self.text.setText(text)
        self._debounce.stop()
        self.blockSignals(False)
        self.changed.emit()

    def since(self) -> float | None:
        """The start of the chosen time range (seconds since the epoch), None for all time."""
        value = self.time_range.currentData()
        if value == "custom":
            return self.since_edit.dateTime().toSecsSinceEpoch()
        return None if value is None else time.time() - value

    def current(self, limit: int = 500) -> TraceFilter:
        until = self.until_edit.dateTime().toSecsSinceEpoch() if self.time_range.currentData() == "custom" else None
        return TraceFilter(
            since=self.since(),
            until=until,
            task=self.task.currentData(),
            model=self.model.currentData(),
            status=self.status.currentData(),
            text=self.text.text().strip() or None,
            limit=limit,
        )


def request_label(t: TraceSummary) -> str:
    """'ask · doc_qa', 'summarize', or 'running…' for a trace whose root has not ended."""
    if not t.name:
        return t.task or "running…"
    return f"{t.name} · {t.task}" if t.task and t.task != t.name else t.name


def format_start(ts: float) -> str:
    when = datetime.fromtimestamp(ts)
    return when.strftime("%H:%M:%S" if when.date() == datetime.now().date() else "%Y-%m-%d %H:%M")


class TraceListModel(QAbstractTableModel):
    """One row per trace, newest first; Qt.UserRole gives the trace id."""

    COLUMNS = (
        "Started",
        "Request",
        "Question / summary",
        "Model",
        "Status",
        "Duration",
        "First token",
        "Tokens/s",
        "Tokens in/out",
    )

    def __init__(self, parent=None):
        super().__init__(parent)
        self.rows: list[TraceSummary] = []

    def set_rows(self, rows: list[TraceSummary]) -> bool:
        """Show these traces; False (and nothing redrawn) when they are what is shown already."""
        if rows == self.rows:
            return False
        self.beginResetModel()
        self.rows = list(rows)
        self.endResetModel()
        return True

    def row_of(self, trace_id: str) -> int:
        return next((i for i, t in enumerate(self.rows) if t.trace_id == trace_id), -1)

    def rowCount(self, parent: QModelIndex | None = None) -> int:
        return 0 if parent is not None and parent.isValid() else len(self.rows)

    def columnCount(self, parent: QModelIndex | None = None) -> int:
        return 0 if parent is not None and parent.isValid() else len(self.COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.COLUMNS[section]
        return None

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        t = self.rows[index.row()]
        column = index.column()
        if role == Qt.ItemDataRole.UserRole:
            return t.trace_id
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(t, column)
        if role == Qt.ItemDataRole.ToolTipRole:
            return literal(f"Trace {t.trace_id}\n{t.n_spans} spans" + (f"\n{t.summary}" if t.summary else ""))
        if role == Qt.ItemDataRole.ForegroundRole and column == 4:
            return STATE_COLOURS.get(t.status)
        if role == Qt.ItemDataRole.TextAlignmentRole and column >= 5:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    @staticmethod
    def _text(t: TraceSummary, column: int) -> str:
        if column == 0:
            return format_start(t.start)
        if column == 1:
            return request_label(t)
        if column == 2:
            return " ".join(t.summary.split())[:160]
        if column == 3:
            return t.model
        if column == 4:
            return t.status
        if column == 5:
            return format_duration(t.duration_s)
        if column == 6:
            return format_duration(t.ttft_s)
        if column == 7:
            return "" if t.tokens_per_s is None else f"{t.tokens_per_s:.1f}"
        if t.input_tokens is None and t.output_tokens is None:
            return ""
        return f"{t.input_tokens or 0} / {t.output_tokens or 0}"


class TraceListView(QTableView):
    """The trace list: one row selected at a time."""

    def __init__(self, model: TraceListModel, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("traceList")
        self.setModel(model)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.verticalHeader().hide()
        self.setWordWrap(False)
        self.setAlternatingRowColors(True)
        for column, width in enumerate(COLUMN_WIDTHS):
            self.setColumnWidth(column, width)
        self.horizontalHeader().setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)

    def select_trace(self, trace_id: str | None) -> None:
        """Select this trace's row (none when it is not listed) without announcing a new choice."""
        model = self.model()
        row = model.row_of(trace_id) if trace_id else -1
        selection = self.selectionModel()
        selection.blockSignals(True)
        if row >= 0:
            selection.setCurrentIndex(
                model.index(row, 0),
                QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows,
            )
        else:
            selection.clearSelection()
        selection.blockSignals(False)
        self.viewport().update()  # the view repaints on the signals held back above
