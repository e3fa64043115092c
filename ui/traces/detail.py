"""The detail pane: a span's attributes, status and events; the trace's prompt, passages and response."""

from __future__ import annotations

import html
from collections.abc import Sequence

from PySide6.QtCore import Qt
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QPlainTextEdit,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from engine.trace.reading import TraceContent, format_duration, format_value, span_state, trace_content
from engine.trace.store import SpanRecord
from ui.plain import literal, rich_label

NOT_CAPTURED = (
    "Not recorded for this trace. Prompts, answers and passage texts are kept only while "
    "content capture is on (Settings › Traces)."
)
PASSAGE_COLUMNS = ("#", "Source", "Location", "Score", "Similarity", "Text")


def _text_view(parent: QWidget, name: str, placeholder: str = "") -> QPlainTextEdit:
    view = QPlainTextEdit(parent)
    view.setObjectName(name)
    view.setReadOnly(True)
    view.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
    view.setPlaceholderText(placeholder)
    return view


def make_table(parent: QWidget, name: str, headers: Sequence[str]) -> QTableWidget:
    table = QTableWidget(0, len(headers), parent)
    table.setObjectName(name)
    table.setHorizontalHeaderLabels(list(headers))
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    table.verticalHeader().hide()
    table.setWordWrap(False)
    table.horizontalHeader().setStretchLastSection(True)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    return table


def make_cell(text: str, tip: str | None = None) -> QTableWidgetItem:
    item = QTableWidgetItem(text)
    if tip:
        item.setToolTip(literal(tip[:2000]))
    return item


class SpanDetail(QWidget):
    """Everything known about the chosen span, and the request's content wherever the trace holds it."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("spanDetail")
        self.span: SpanRecord | None = None
        self.content = TraceContent()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        # Rich text for the layout; every value in it is escaped (span names and errors come from requests).
        self.header = rich_label(
            "Choose a trace to see its spans.", self, name="spanHeader", wrap=True, selectable=True
        )
        layout.addWidget(self.header)
        self.tabs = QTabWidget(self)
        self.tabs.setObjectName("detailTabs")
        layout.addWidget(self.tabs, 1)

        self.attributes = make_table(self, "attributeTable", ("Attribute", "Value"))
        self.attributes.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.attribute_value = _text_view(self, "attributeValue", "Choose an attribute to see all of its value.")
        self.attributes.itemSelectionChanged.connect(self._attribute_chosen)
        self.passages = make_table(self, "passageTable", PASSAGE_COLUMNS)
        self.passages.horizontalHeader().setSectionResizeMode(5, QHeaderView.ResizeMode.Stretch)
        self.passage_text = _text_view(self, "passageText", "Choose a passage to read it.")
        self.passages.itemSelectionChanged.connect(self._passage_chosen)
        self.prompt = _text_view(self, "promptView", NOT_CAPTURED)
        self.response = _text_view(self, "responseView", NOT_CAPTURED)
        self.events = make_table(self, "eventTable", ("At", "Event", "Attributes"))
        for title, top, bottom in (
            ("Attributes", self.attributes, self.attribute_value),
            ("Prompt", self.prompt, None),
            ("Retrieved", self.passages, self.passage_text),
            ("Response", self.response, None),
            ("Events", self.events, None),
        ):
            if bottom is None:
                self.tabs.addTab(top, title)
                continue
            split = QSplitter(Qt.Orientation.Vertical, self)
            split.addWidget(top)
            split.addWidget(bottom)
            split.setSizes([300, 120])
            self.tabs.addTab(split, title)

    # Showing -------------------------------------------------------------------------

    def show_span(self, span: SpanRecord | None, spans: Sequence[SpanRecord] = ()) -> None:
        """Show ``span`` (None: nothing chosen) with the content found in its trace ``spans``."""
        self.span = span
        self.content = trace_content(spans, prefer=span.span_id if span else None) if spans else TraceContent()
        self.header.setText(self._header(span, spans))
        self._fill_attributes(span)
        self._fill_events(span)
        self._fill_passages(self.content.passages)
        self.prompt.setPlainText(self.content.prompt or "")
        self.response.setPlainText(self.content.response or "")
        titles = (
            f"Attributes ({len(span.attributes) if span else 0})",
            "Prompt",
            f"Retrieved ({len(self.content.passages)})",
            "Response",
            f"Events ({len(span.events) if span else 0})",
        )
        for i, title in enumerate(titles):
            self.tabs.setTabText(i, title)

    @staticmethod
    def _header(span: SpanRecord | None, spans: Sequence[SpanRecord]) -> str:
        if span is None:
            return "Choose a span in the tree."
        start = min((s.start_ns for s in spans), default=span.start_ns)
        text = (
            f"<b>{html.escape(span.name)}</b> &nbsp;·&nbsp; {html.escape(span.kind)} &nbsp;·&nbsp; "
            f"{format_duration(span.duration_s)} &nbsp;·&nbsp; "
            + (
                f"starts at +{format_duration((span.start_ns - start) / 1e9)}"
                if span.start_ns > start
                else "starts the trace"
            )
            + "<br>"
            f"<small>span {html.escape(span.span_id)} · trace {html.escape(span.trace_id)}</small>"
        )
        state = span_state(span)
        if state == "error":
            message = html.escape(span.status_message or "no message")
            text += f"<br><span style='color:#c62828'><b>Error:</b> {message}</span>"
        elif state == "cancelled":
            text += "<br><span style='color:#ef6c00'><b>Cancelled</b> by the user</span>"
        return text

    def show_message(self, text: str) -> None:
        """Say something (a failure to read the trace) where the span header goes."""
        self.header.setText(html.escape(text))

    def _fill_attributes(self, span: SpanRecord | None) -> None:
        items = sorted((span.attributes or {}).items()) if span else []
        self.attributes.setRowCount(len(items))
        for row, (key, value) in enumerate(items):
            self.attributes.setItem(row, 0, make_cell(key))
            self.attributes.setItem(row, 1, make_cell(format_value(value, limit=200)))
        self.attribute_value.setPlainText("")
        self._attribute_chosen()  # the same span shown again (a refresh): keep its chosen value shown

    def _attribute_chosen(self) -> None:
        row = self.attributes.currentRow()
        if self.span is None or not 0 <= row < self.attributes.rowCount():
            return
        key = self.attributes.item(row, 0).text()
        self.attribute_value.setPlainText(format_value(self.span.attributes.get(key)))

    def _fill_events(self, span: SpanRecord | None) -> None:
        events = list(span.events or ()) if span else []
        self.events.setRowCount(len(events))
        for row, event in enumerate(events):
            at = event.get("time_ns") if isinstance(event, dict) else None
            offset = format_duration((at - span.start_ns) / 1e9) if isinstance(at, int) else ""
            attributes = event.get("attributes", {}) if isinstance(event, dict) else {}
            shown = ", ".join(f"{k}={format_value(v, limit=80)}" for k, v in attributes.items())
            self.events.setItem(row, 0, make_cell(f"+{offset}" if offset else ""))
            name = event.get("name", "") if isinstance(event, dict) else event
            self.events.setItem(row, 1, make_cell(str(name)))
            self.events.setItem(row, 2, make_cell(shown, shown))

    def _fill_passages(self, passages: list[dict]) -> None:
        keep = self.passages.currentRow()
        self.passages.setRowCount(len(passages))
        for row, p in enumerate(passages):
            title = str(p.get("title") or p.get("path") or "")
            values = (
                str(p.get("number", row + 1)),
                title,
                str(p.get("location") or ""),
                _score(p.get("score")),
                _score(p.get("similarity")),
                " ".join(str(p.get("text") or "").split())[:200],
            )
            for column, value in enumerate(values):
                self.passages.setItem(row, column, make_cell(value, str(p.get("path") or "") if column == 1 else None))
        self.passage_text.setPlainText("")
        if passages:  # the passage chosen before a refresh, else the best one, readable at once
            self.passages.selectRow(keep if 0 <= keep < len(passages) else 0)
            self._passage_chosen()

    def _passage_chosen(self) -> None:
        row = self.passages.currentRow()
        if not 0 <= row < len(self.content.passages):
            return
        p = self.content.passages[row]
        ids = ", ".join(str(i) for i in p.get("chunk_ids") or ())
        head = f"[{p.get('number', row + 1)}] {p.get('title') or ''} {p.get('location') or ''}".strip()
        where = f"{p.get('path') or ''}" + (f"\nchunks: {ids}" if ids else "")
        self.passage_text.setPlainText(f"{head}\n{where}\n\n{p.get('text') or '(text not captured)'}")

    def passage_rows(self) -> list[tuple[str, ...]]:
        """What the passages table shows, for tests."""
        return [
            tuple(self.passages.item(r, c).text() for c in range(self.passages.columnCount()))
            for r in range(self.passages.rowCount())
        ]

    def attribute_rows(self) -> dict[str, str]:
        return {
            self.attributes.item(r, 0).text(): self.attributes.item(r, 1).text()
            for r in range(self.attributes.rowCount())
        }


def _score(value) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else ""
