"""The trace log window: real spans from a real Tracing into a real TraceStore, and the real chat window.

Set LOCUS_SCREENSHOTS to a folder (docs/screenshots) to save the viewer's screenshots while these run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt

from engine.errors import GenerationError
from engine.trace.monitor import Monitor
from engine.trace.reading import build_tree, downsample, histogram, passages_of, trace_content
from engine.trace.store import TraceStore
from engine.trace.tracing import Tracing, fail
from ui.ops import wait_for_background
from ui.traces.span_tree import BAR_ROLE
from ui.traces.window import TraceWindow

MS = 1_000_000
PROMPT = "<|im_start|>system\nAnswer from the passages.\n[1] Water boils at 100 °C at sea level.<|im_end|>"
PASSAGES = [
    {
        "number": 1,
        "title": "Physics notes",
        "path": "/docs/physics.md",
        "location": "lines 3–9",
        "score": 0.0328,
        "similarity": 0.71,
        "chunk_ids": ["c1"],
        "text": "Water boils at 100 °C at sea level.",
    },
    {
        "number": 2,
        "title": "Cooking",
        "path": "/docs/cooking.pdf",
        "location": "page 2",
        "score": 0.0161,
        "similarity": 0.42,
        "chunk_ids": ["c7", "c8"],
        "text": "Pasta goes into boiling water.",
    },
]
DOC_QA_OUTLINE = [
    (0, "ask"),
    (1, "retrieve"),
    (2, "embed_query"),
    (2, "vector_search"),
    (2, "text_search"),
    (2, "fuse"),
    (1, "chat SmolLM2"),
    (2, "queue"),
    (2, "build_prompt"),
    (2, "prompt_eval"),
    (2, "decode"),
    (1, "cite"),
]


@dataclass
class TraceServices:
    """The three services the trace window reads (the rest of app.services.Services is not needed)."""

    traces: TraceStore
    tracing: Tracing
    monitor: Monitor | None = None


def trace_id_of(span) -> str:
    return f"{span.get_span_context().trace_id:032x}"


def _span(tracing, name, parent, start, end, attributes=None):
    span = tracing.start(name, parent, attributes, start_time_ns=start)
    span.end(end_time=end)
    return span


def record_doc_question(tracing: Tracing, t0: int) -> str:
    """A document question as the engine traces it: ask > retrieve (4 stages), generation (4 stages), cite."""
    root = tracing.start(
        "ask",
        None,
        {
            "locus.task": "doc_qa",
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "SmolLM2",
            "locus.summary": "What is the boiling point of water?",
            "locus.time_to_first_token_s": 0.12,
            "locus.tokens_per_s": 42.5,
            "gen_ai.usage.input_tokens": 180,
            "gen_ai.usage.output_tokens": 24,
        },
        start_time_ns=t0,
    )
    retrieve = tracing.start(
        "retrieve",
        root,
        {"locus.retrieval.sources": ["Physics notes", "Cooking"], "locus.retrieval.scores": [0.0328, 0.0161]},
        start_time_ns=t0 + MS,
    )
    tracing.content(retrieve, "locus.retrieval.passages", PASSAGES)
    for i, stage in enumerate(("embed_query", "vector_search", "text_search", "fuse")):
        _span(tracing, stage, retrieve, t0 + (1 + 10 * i) * MS, t0 + (10 + 10 * i) * MS)
    retrieve.end(end_time=t0 + 41 * MS)
    generation = tracing.start(
        "chat SmolLM2",
        root,
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "llama.cpp",
            "gen_ai.request.model": "SmolLM2",
            "gen_ai.request.temperature": 0.7,
            "gen_ai.response.finish_reasons": ["stop"],
        },
        start_time_ns=t0 + 42 * MS,
    )
    tracing.content(generation, "locus.prompt", PROMPT)
    tracing.content(generation, "locus.response", "Water boils at 100 °C at sea level [1].")
    for name, a, b in (("queue", 42, 45), ("build_prompt", 45, 50), ("prompt_eval", 50, 160), ("decode", 160, 700)):
        _span(tracing, name, generation, t0 + a * MS, t0 + b * MS)
    generation.end(end_time=t0 + 700 * MS)
    _span(tracing, "cite", root, t0 + 701 * MS, t0 + 720 * MS, {"locus.citations.numbers": [1]})
    root.end(end_time=t0 + 725 * MS)
    return trace_id_of(root)


def record_failed_chat(tracing: Tracing, t0: int) -> str:
    root = tracing.start(
        "ask",
        None,
        {"locus.task": "chat", "gen_ai.request.model": "SmolLM2", "locus.summary": "Tell me a joke"},
        start_time_ns=t0,
    )
    generation = tracing.start("chat SmolLM2", root, {"gen_ai.provider.name": "llama.cpp"}, start_time_ns=t0 + MS)
    generation.add_event("exception", {"exception.message": "context overflow"})
    fail(generation, GenerationError("The model stopped with an error."))
    generation.end(end_time=t0 + 90 * MS)
    fail(root, GenerationError("The model stopped with an error."))
    root.end(end_time=t0 + 95 * MS)
    return trace_id_of(root)


def record_cancelled_summary(tracing: Tracing, t0: int) -> str:
    root = tracing.start(
        "summarize",
        None,
        {"locus.task": "summarize", "gen_ai.request.model": "Qwen", "locus.summary": "Summarize the report"},
        start_time_ns=t0,
    )
    _span(
        tracing,
        "chat Qwen",
        root,
        t0 + MS,
        t0 + 300 * MS,
        {"gen_ai.provider.name": "llama.cpp", "locus.cancelled": True},
    )
    root.set_attribute("locus.cancelled", True)
    root.end(end_time=t0 + 310 * MS)
    return trace_id_of(root)


def question(i: int) -> str:
    """Questions about ferries, then (the newest 40) about baking."""
    if i < 40:
        return f"When does the {('island', 'harbour', 'night')[i % 3]} ferry leave on {('Monday', 'Sunday')[i % 2]}?"
    return f"How long should I bake {('bread', 'a cheesecake', 'salmon', 'cookies')[i % 4]} at 180 °C?"


@pytest.fixture()
def filled(tmp_path):
    """A store holding three traces (a document question, a failed chat, a cancelled summary),
    process metrics with one GPU, and monitor observations whose questions drift."""
    store = TraceStore(tmp_path / "traces.sqlite3")
    tracing = Tracing(store, schedule_delay_ms=50)
    now = time.time_ns()
    ids = {
        "doc": record_doc_question(tracing, now - 600_000 * MS),
        "failed": record_failed_chat(tracing, now - 300_000 * MS),
        "cancelled": record_cancelled_summary(tracing, now - 60_000 * MS),
    }
    assert tracing.flush()
    t = time.time()
    store.add_metrics(
        [
            (t - 60 + i, name, v)
            for i in range(60)
            for name, v in (
                ("process.cpu_percent", 10 + i % 7),
                ("system.cpu_percent", 30.0),
                ("process.rss_bytes", 400 * 2**20),
                ("system.memory_percent", 55.0),
                ("gpu.0.utilization_percent", 80.0),
                ("gpu.0.memory_used_bytes", 3 * 2**30),
                ("runtime.queue_length", i % 3),
            )
        ]
    )
    rng = np.random.default_rng(0)
    for i in range(80):  # the newest 40 questions are about something else: drift
        vector = rng.normal(0, 1, 16) + (4.0 if i >= 40 else 0.0)
        store.add_observation(
            "question",
            trace_id=ids["doc"],
            value=0.1 if i % 10 == 0 else 0.6 + 0.002 * i,
            vector=vector,
            detail={"question": question(i)},
            ts=t - 80 + i,
        )
    store.add_observation(
        "answer_support",
        trace_id=ids["doc"],
        value=0.5,
        ts=t,
        detail={"unsupported": ["The ferry also stops at the lighthouse on Sundays."], "flagged": True},
    )
    yield TraceServices(store, tracing, Monitor(store, permutations=200)), ids
    tracing.shutdown()
    store.close()


@pytest.fixture()
def viewer(qtbot, filled):
    services, _ids = filled
    window = TraceWindow(services)
    qtbot.addWidget(window)
    window.filters.choose(time_range="All time")
    with qtbot.waitSignal(window.listRefreshed, timeout=10_000):
        window.show()
    yield window
    window.timer.stop()
    wait_for_background()


def listed(window) -> list[str]:
    return [t.trace_id for t in window.model.rows]


def show(qtbot, window, trace_id):
    with qtbot.waitSignal(window.traceShown, timeout=10_000):
        window.show_trace(trace_id)


def save_screenshot(qtbot, widget, name: str) -> None:
    folder = os.environ.get("LOCUS_SCREENSHOTS")
    if folder:
        qtbot.wait(300)  # charts lay their axes out on the next event-loop turn
        Path(folder).mkdir(parents=True, exist_ok=True)
        assert widget.grab().save(str(Path(folder) / name))


# Plain functions -------------------------------------------------------------------------


def test_tree_content_and_helpers_from_stored_spans(filled):
    services, ids = filled
    spans = services.traces.trace(ids["doc"])
    roots = build_tree(spans)
    assert [r.span.name for r in roots] == ["ask"] and roots[0].offset == 0 and roots[0].width == 1
    assert [c.span.name for c in roots[0].children] == ["retrieve", "chat SmolLM2", "cite"]
    content = trace_content(spans)
    assert content.prompt == PROMPT and content.response.startswith("Water boils")
    assert [p["title"] for p in content.passages] == ["Physics notes", "Cooking"]
    # Without the captured JSON, the id/source/score lists still give the passages.
    assert passages_of({"locus.retrieval.sources": ["a", "b"], "locus.retrieval.scores": [0.5, 0.25]})[1] == {
        "number": 2,
        "title": "b",
        "score": 0.25,
        "chunk_ids": [],
    }
    assert passages_of({"locus.retrieval.passages": "not json"}) == []
    assert len(downsample([(float(i), 1.0) for i in range(5000)], 100)) == 100
    assert histogram([0.05, 0.55, 0.56, 0.6, 1.5, -2], bins=10) == [2, 0, 0, 0, 0, 2, 1, 0, 0, 1]


# The viewer on a filled store ------------------------------------------------------------


def test_lists_and_filters_traces(qtbot, viewer, filled):
    _services, ids = filled
    assert listed(viewer) == [ids["cancelled"], ids["failed"], ids["doc"]]  # newest first
    statuses = {t.trace_id: t.status for t in viewer.model.rows}
    assert statuses == {ids["doc"]: "ok", ids["failed"]: "error", ids["cancelled"]: "cancelled"}
    tasks = [viewer.filters.task.itemText(i) for i in range(viewer.filters.task.count())]
    assert tasks == ["Any task", "chat", "doc_qa", "summarize"]

    def filtered(**choice):
        with qtbot.waitSignal(viewer.listRefreshed, timeout=10_000):
            viewer.filters.choose(**choice)
        return listed(viewer)

    assert filtered(task="doc_qa") == [ids["doc"]]
    assert filtered(task="", status="error") == [ids["failed"]]
    assert filtered(status="", model="Qwen") == [ids["cancelled"]]
    assert filtered(model="", text="boiling") == [ids["doc"]]
    assert filtered(text="", time_range="Last hour") == listed(viewer)  # all three are minutes old
    with qtbot.waitSignal(viewer.listRefreshed, timeout=10_000):
        qtbot.keyClicks(viewer.filters.text, "joke")  # typing settles, then one refresh
    assert listed(viewer) == [ids["failed"]]


def test_selecting_a_trace_shows_its_span_tree_waterfall_and_details(qtbot, viewer, filled):
    _services, ids = filled
    with qtbot.waitSignal(viewer.traceShown, timeout=10_000):
        viewer.list.selectRow(listed(viewer).index(ids["doc"]))
    assert viewer.tree.outline() == DOC_QA_OUTLINE
    bars = {item.text(0): item.data(2, BAR_ROLE) for item in viewer.tree.items()}
    assert bars["ask"] == (0.0, 1.0, "ok") and bars["chat SmolLM2"][2] == "generation"
    offset, width, _kind = bars["decode"]
    assert 0.2 < offset < 0.25 and 0.7 < width < 0.8  # 160 ms into 725, 540 ms long
    assert not viewer.tree.grab().isNull()  # the waterfall delegate paints

    detail = viewer.detail
    assert "<b>ask</b>" in detail.header.text()
    assert detail.attribute_rows()["locus.task"] == "doc_qa"
    assert detail.prompt.toPlainText() == PROMPT  # found on the generation span while the root is chosen
    assert detail.response.toPlainText().startswith("Water boils")
    rows = detail.passage_rows()
    assert [r[:5] for r in rows] == [
        ("1", "Physics notes", "lines 3–9", "0.033", "0.710"),
        ("2", "Cooking", "page 2", "0.016", "0.420"),
    ]
    assert "Water boils at 100" in detail.passage_text.toPlainText()  # the best passage is open at once
    detail.passages.selectRow(1)
    assert "Pasta goes into boiling water." in detail.passage_text.toPlainText()
    detail.show_span(detail.span, viewer.spans)  # what a refresh of a growing trace does
    assert "Pasta goes into boiling water." in detail.passage_text.toPlainText()
    generation = next(s for s in viewer.spans if s.name == "chat SmolLM2")
    assert viewer.tree.select_span(generation.span_id)
    assert detail.attribute_rows()["gen_ai.request.temperature"] == "0.7"
    assert detail.tabs.tabText(2) == "Retrieved (2)"
    assert viewer.export_button.isEnabled()


def test_error_and_cancelled_spans_stand_out(qtbot, viewer, filled):
    _services, ids = filled
    show(qtbot, viewer, ids["failed"])
    assert viewer.tree.outline() == [(0, "ask"), (1, "chat SmolLM2")]
    failed = viewer.tree.items()[1]
    assert failed.data(2, BAR_ROLE)[2] == "error" and failed.foreground(0).color().name() == "#c62828"
    viewer.tree.setCurrentItem(failed)
    assert "Error:" in viewer.detail.header.text() and "stopped with an error" in viewer.detail.header.text()
    assert viewer.detail.events.rowCount() == 1 and viewer.detail.events.item(0, 1).text() == "exception"
    assert viewer.detail.prompt.toPlainText() == ""  # not captured: the placeholder explains why
    assert "content capture" in viewer.detail.prompt.placeholderText()
    show(qtbot, viewer, ids["cancelled"])
    assert [item.data(2, BAR_ROLE)[2] for item in viewer.tree.items()] == ["cancelled", "cancelled"]


def test_export_writes_the_trace_as_json(qtbot, viewer, filled, tmp_path):
    _services, ids = filled
    show(qtbot, viewer, ids["doc"])
    target = tmp_path / "out" / "trace.json"
    target.parent.mkdir()
    with qtbot.waitSignal(viewer.exported, timeout=10_000) as blocker:
        viewer.export_trace(target)
    assert blocker.args == [str(target)]
    data = json.loads(target.read_text(encoding="utf-8"))
    assert data["format"] == "locus-trace/1" and data["trace_id"] == ids["doc"] and data["task"] == "doc_qa"
    assert len(data["spans"]) == len(DOC_QA_OUTLINE)
    assert {s["name"] for s in data["spans"]} == {name for _depth, name in DOC_QA_OUTLINE}


def test_opening_at_a_trace_hidden_by_the_filters_clears_them(qtbot, viewer, filled):
    _services, ids = filled
    with qtbot.waitSignal(viewer.listRefreshed, timeout=10_000):
        viewer.filters.choose(task="chat")
    show(qtbot, viewer, ids["doc"])
    qtbot.waitUntil(lambda: ids["doc"] in listed(viewer), timeout=10_000)
    assert viewer.filters.task.currentData() is None
    assert viewer.list.currentIndex().data(Qt.ItemDataRole.UserRole) == ids["doc"]


def test_performance_charts_show_requests_and_process_metrics(qtbot, viewer):
    with qtbot.waitSignal(viewer.performanceRefreshed, timeout=10_000):
        viewer.tabs.setCurrentWidget(viewer.performance)
    charts = viewer.performance.charts
    assert charts["latency"].point_count() == 3
    assert charts["ttft"].point_count() == 1 and charts["tokens_per_s"].point_count() == 1
    assert set(charts["cpu"].series) == {"Locus CPU", "System CPU", "System memory"}
    assert charts["cpu"].point_count() == 180 and charts["queue"].point_count() == 60
    assert charts["rss"].series["Resident"].at(0).y() == pytest.approx(400)  # MiB
    assert not charts["gpu"].isHidden() and charts["gpu_memory"].series["GPU 0 used"].at(0).y() == pytest.approx(3)
    assert charts["speed"].point_count() == 0 and "no data yet" in charts["speed"].chart_.title()
    save_screenshot(qtbot, viewer, "performance.png")


def test_monitoring_tab_shows_drift_flagged_questions_and_scores(qtbot, viewer, filled):
    _services, ids = filled
    with qtbot.waitSignal(viewer.monitoringRefreshed, timeout=30_000):
        viewer.tabs.setCurrentWidget(viewer.monitoring)
    panel = viewer.monitoring
    assert panel.report.drift is not None and panel.report.drift.drifted
    assert "drift detected" in panel.summary.text()
    assert panel.no_relevant.rowCount() == 8  # every tenth question scored 0.1, below the default level
    assert panel.no_relevant.item(0, 2).text() == question(70)  # newest first
    assert panel.unsupported.rowCount() == 1 and "lighthouse" in panel.unsupported.item(0, 2).text()
    assert panel.scores_chart.point_count() == 80 and sum(panel.histogram.counts) == 80
    save_screenshot(qtbot, viewer, "monitoring.png")
    with qtbot.waitSignal(viewer.traceShown, timeout=10_000):
        panel.no_relevant.cellDoubleClicked.emit(0, 0)
    assert viewer.tabs.currentIndex() == 0 and viewer.trace_id == ids["doc"]


def test_new_traces_appear_while_the_window_is_open(qtbot, viewer, filled):
    services, _ids = filled
    new = record_failed_chat(services.tracing, time.time_ns())  # not flushed: the refresh writes it out
    qtbot.waitUntil(lambda: new in listed(viewer), timeout=10_000)


def test_without_traces_the_window_says_why(qtbot):
    window = TraceWindow(TraceServices(None, Tracing.disabled()))
    qtbot.addWidget(window)
    window.show()
    assert "Tracing is off" in window.centralWidget().text()


# The real window and model -------------------------------------------------------------------


def test_show_trace_on_an_answer_opens_the_viewer_at_its_span_tree(qtbot, loaded_window, services, tmp_path):
    window = loaded_window
    qtbot.waitUntil(lambda: window.documents.library is not None, timeout=60_000)
    (tmp_path / "ferry.md").write_text(
        "# Ferry\n\nThe island ferry leaves the pier at 08:15 every weekday.\n", encoding="utf-8"
    )
    window.documents.handle_drop([str(tmp_path / "ferry.md")])
    qtbot.waitUntil(lambda: ("ferry.md", "default", "done") in window.documents.panel.rows(), timeout=120_000)
    window.documents_selector.choose([])  # answer from all documents
    chat = services.assistant.settings
    services.assistant.settings = dataclasses.replace(
        chat, sampling=dataclasses.replace(chat.sampling, temperature=0.0, max_tokens=40)
    )
    with qtbot.waitSignal(window.answerFinished, timeout=120_000):
        qtbot.keyClicks(window.composer, "What time does the island ferry leave the pier?")
        qtbot.keyClick(window.composer, Qt.Key.Key_Return)
    answer = window.chat.messages()[-1]
    qtbot.waitUntil(lambda: answer.trace_button.isVisible(), timeout=10_000)
    assert len(answer.trace_id) == 32

    qtbot.mouseClick(answer.trace_button, Qt.MouseButton.LeftButton)
    viewer = window.findChild(TraceWindow)
    assert viewer is not None and viewer.isVisible()
    viewer.timer.stop()  # the test refreshes by itself below

    def shows_the_answer() -> bool:
        outline = viewer.tree.outline()
        return (
            viewer.trace_id == answer.trace_id
            and (0, "ask") in outline
            and any(depth == 1 and name.startswith("chat ") for depth, name in outline)
        )

    qtbot.waitUntil(shows_the_answer, timeout=15_000)
    outline = viewer.tree.outline()
    assert (1, "retrieve") in outline and (2, "vector_search") in outline
    generation = next(s for s in viewer.spans if s.name.startswith("chat "))
    assert generation.attributes["gen_ai.usage.output_tokens"] > 0
    assert any("ferry" in p.get("text", "") for p in viewer.detail.content.passages)
    assert viewer.detail.prompt.toPlainText() and "08:15" in viewer.detail.prompt.toPlainText()
    qtbot.waitUntil(lambda: answer.trace_id in listed(viewer), timeout=10_000)
    assert viewer.list.currentIndex().data(Qt.ItemDataRole.UserRole) == answer.trace_id
    viewer.detail.tabs.setCurrentIndex(2)  # the retrieved passages with their scores
    viewer.detail.passages.selectRow(0)
    save_screenshot(qtbot, viewer, "traces.png")

    # Read back from history, the answer still offers its trace.
    conversation = window.conversation_id
    window.new_conversation()
    window.open_conversation(conversation)
    qtbot.waitUntil(lambda: len(window.chat.messages()) == 2, timeout=10_000)
    assert window.chat.messages()[-1].trace_id == answer.trace_id
    # Widgets added to a shown window are shown on the next turn of the event loop.
    qtbot.waitUntil(lambda: window.chat.messages()[-1].trace_button.isVisibleTo(window), timeout=5_000)
    viewer.close()
