"""The source viewer's fallback for a citation whose chunks are gone (the index rebuilt since): rows of a
sheet found by their numbers, also past a run of empty rows that split the sheet into several sections."""

from __future__ import annotations

from engine.rag.loaders.sheets import rows_sections
from ui.source_text import build_source_text, cited_lines


def test_rows_after_a_gap_are_found_by_their_numbers():
    rows = [
        (1, ["Item", "Price"]),
        (2, ["apples", "3"]),
        (3, ["pears", "4"]),
        (20, ["figs", "9"]),
        (21, ["kiwis", "7"]),
    ]
    sections = rows_sections(rows, "prices.csv", "Prices", 1)
    assert [(s.line_start, s.line_end) for s in sections] == [(2, 3), (20, 21)]  # the gap starts a new section
    stored = [
        {
            "chunk_id": f"c{i}",
            "chunk_index": i,
            "text": s.text,
            "page": s.page,
            "place": s.place,
            "place_label": s.label,
            "place_within": s.within,
            "line_start": s.line_start,
            "line_end": s.line_end,
            "heading": s.heading,
        }
        for i, s in enumerate(sections)
    ]
    built = build_source_text(stored)
    lines = built.text.split("\n")
    cite = {"chunk_ids": ["gone"], "page": 1, "place": "rows", "place_label": "Prices", "place_within": None}
    first, last = cited_lines({**cite, "line_start": 20, "line_end": 21}, built)
    assert lines[first - 1 : last] == ["figs | 9", "kiwis | 7"]
    first, last = cited_lines({**cite, "line_start": 3, "line_end": 3}, built)
    assert lines[first - 1 : last] == ["pears | 4"]
