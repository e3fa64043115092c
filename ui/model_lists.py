"""Pieces the model lists share (the model manager's tabs and the first-start welcome): a read-only table whose
rows are chosen one at a time, and a download's progress on a bar."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QProgressBar, QTableWidget, QWidget


def choice_table(parent: QWidget, name: str, columns: Sequence[str], on_selection: Callable[[], None]) -> QTableWidget:
    """A table of models: whole rows, one at a time, not editable; the last column takes the width left."""
    table = QTableWidget(0, len(columns), parent)
    table.setObjectName(name)
    table.setHorizontalHeaderLabels(list(columns))
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.verticalHeader().hide()
    table.horizontalHeader().setSectionResizeMode(len(columns) - 1, QHeaderView.ResizeMode.Stretch)
    table.itemSelectionChanged.connect(on_selection)
    return table


def show_download_progress(bar: QProgressBar, done: int, total: int | None) -> None:
    """Bytes so far on a bar (busy, without a percentage, while the size is unknown)."""
    bar.setRange(0, 1000 if total else 0)
    if total:
        bar.setValue(int(done * 1000 / total))
