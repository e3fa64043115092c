"""A trace's span tree with a timing waterfall: one painted bar per span, placed on the trace's timeline."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import (
    QApplication,
    QHeaderView,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTreeWidget,
    QTreeWidgetItem,
    QWidget,
)

from engine.trace.reading import SpanNode, build_tree, format_duration, span_state, walk
from engine.trace.store import SpanRecord
from ui.plain import literal

SPAN_ROLE = Qt.ItemDataRole.UserRole
BAR_ROLE = Qt.ItemDataRole.UserRole + 1
BAR_COLOURS = {
    "ok": QColor("#4f7fe0"),
    "generation": QColor("#8e5bd6"),
    "error": QColor("#d32f2f"),
    "cancelled": QColor("#ef8c00"),
}
TEXT_COLOURS = {"error": QColor("#c62828"), "cancelled": QColor("#ef6c00")}


def bar_kind(span: SpanRecord) -> str:
    """The bar's colour key: the span's state, with model generation set apart from the rest."""
    state = span_state(span)
    attributes = span.attributes or {}
    if state == "ok" and ("gen_ai.provider.name" in attributes or "gen_ai.request.temperature" in attributes):
        return "generation"
    return state


class WaterfallDelegate(QStyledItemDelegate):
    """Paints a span's bar: where it starts and how long it takes, relative to the whole trace."""

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index) -> None:
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        opt.text = ""
        style = option.widget.style() if option.widget is not None else QApplication.style()
        style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, option.widget)
        bar = index.data(BAR_ROLE)
        if not bar:
            return
        offset, width, kind = bar
        area = QRectF(option.rect).adjusted(4, 5, -4, -5)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        track = QColor(
            option.palette.color(option.palette.ColorRole.HighlightedText if selected else option.palette.ColorRole.Mid)
        )
        track.setAlpha(90 if selected else 40)
        painter.setBrush(track)
        painter.drawRect(area)
        if selected:  # outlined, so that a bar stays visible on the highlight colour
            painter.setPen(QPen(option.palette.color(option.palette.ColorRole.HighlightedText), 1))
        painter.setBrush(BAR_COLOURS.get(kind, BAR_COLOURS["ok"]))
        x = area.left() + min(max(offset, 0.0), 1.0) * area.width()
        w = max(2.0, min(width, 1.0) * area.width())
        painter.drawRoundedRect(QRectF(min(x, area.right() - 2), area.top(), w, area.height()), 2, 2)
        painter.restore()


class SpanTree(QTreeWidget):
    """Spans as a tree (name, duration, waterfall); ``spanSelected`` gives the chosen SpanRecord."""

    spanSelected = Signal(object)  # SpanRecord | None

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("spanTree")
        self.setColumnCount(3)
        self.setHeaderLabels(["Span", "Duration", "Timeline"])
        self.setItemDelegateForColumn(2, WaterfallDelegate(self))
        self.setUniformRowHeights(True)
        self.setAlternatingRowColors(True)
        header = self.header()
        header.setStretchLastSection(True)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        self.setColumnWidth(0, 250)
        self.setColumnWidth(1, 80)
        self.spans: dict[str, SpanRecord] = {}
        self.roots: list[SpanNode] = []
        self.currentItemChanged.connect(self._current_changed)

    def show_spans(self, spans: Sequence[SpanRecord]) -> None:
        """Show a trace's spans, keeping the chosen span chosen when it is still there."""
        keep = self.current_span_id()
        self.blockSignals(True)
        self.clear()
        self.spans = {s.span_id: s for s in spans}
        self.roots = build_tree(spans)
        total = max((s.end_ns for s in spans), default=0) - min((s.start_ns for s in spans), default=0)
        self.headerItem().setText(2, f"Timeline ({format_duration(total / 1e9)})" if spans else "Timeline")
        for node in self.roots:
            self.addTopLevelItem(self._item(node))
        self.expandAll()
        self.blockSignals(False)
        chosen = self.item_for(keep) if keep else None
        if chosen is None and self.topLevelItemCount():
            chosen = self.topLevelItem(0)
        if chosen is not None:
            self.setCurrentItem(chosen)
        else:
            self.spanSelected.emit(None)

    def _item(self, node: SpanNode) -> QTreeWidgetItem:
        s = node.span
        kind = bar_kind(s)
        item = QTreeWidgetItem(
            [s.name + ("  (parent not stored yet)" if node.orphan else ""), format_duration(s.duration_s), ""]
        )
        item.setData(0, SPAN_ROLE, s.span_id)
        item.setData(2, BAR_ROLE, (node.offset, node.width, kind))
        item.setTextAlignment(1, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if (colour := TEXT_COLOURS.get(span_state(s))) is not None:
            item.setForeground(0, colour)
        tip = f"{s.name} ({s.kind})\n{format_duration(s.duration_s)}, status {s.status}"
        if s.status_message:
            tip += f": {s.status_message}"
        for column in range(3):
            item.setToolTip(column, literal(tip))
        for child in node.children:
            item.addChild(self._item(child))
        return item

    def current_span_id(self) -> str | None:
        item = self.currentItem()
        return item.data(0, SPAN_ROLE) if item is not None else None

    def item_for(self, span_id: str) -> QTreeWidgetItem | None:
        for item in self.items():
            if item.data(0, SPAN_ROLE) == span_id:
                return item
        return None

    def items(self) -> list[QTreeWidgetItem]:
        """Every item, depth first."""
        out: list[QTreeWidgetItem] = []

        def visit(item: QTreeWidgetItem) -> None:
            out.append(item)
            for i in range(item.childCount()):
                visit(item.child(i))

        for i in range(self.topLevelItemCount()):
            visit(self.topLevelItem(i))
        return out

    def outline(self) -> list[tuple[int, str]]:
        """(depth, span name) of every span in tree order: what the tree shows, for tests."""
        depths: dict[str, int] = {}
        out = []
        for node in walk(self.roots):
            depth = depths.get(node.span.parent_id, -1) + 1 if not node.orphan else 0
            depths[node.span.span_id] = depth
            out.append((depth, node.span.name))
        return out

    def select_span(self, span_id: str) -> bool:
        item = self.item_for(span_id)
        if item is not None:
            self.setCurrentItem(item)
        return item is not None

    def _current_changed(self, current: QTreeWidgetItem | None, _previous) -> None:
        span_id = current.data(0, SPAN_ROLE) if current is not None else None
        self.spanSelected.emit(self.spans.get(span_id))
