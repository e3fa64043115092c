"""Every request is one trace: real questions over real documents, real indexing, the real bundled model."""

from __future__ import annotations

import shutil
import threading

import pytest

from engine.answer import Retrieved, TextDelta
from engine.assistant import Assistant, ChatSettings
from engine.history.store import HistoryStore
from engine.models.bundled import BUNDLED_EMBEDDER_NAME, bundled_embedder_path
from engine.rag.library import DocumentLibrary
from engine.runtime.backend import BackendRegistry
from engine.runtime.runtime import Runtime
from engine.runtime.types import ModelConfig, SamplingParams
from engine.trace.monitor import Monitor
from engine.trace.store import TraceFilter, TraceStore
from engine.trace.tracing import Tracing
from tests.conftest import PDF_ODDITIES

pytestmark = pytest.mark.slow

FACTS = {
    "lighthouse.md": "# The Skerry Light\n\nThe Skerry lighthouse keeper is named Morag Finlay. She has kept the light "
    "since 1987 and winds the clockwork lens every four hours.\n",
    "bakery.txt": "Pellow's Bakery on Harbour Street opens at six in the morning. Its rye loaf uses a starter "
    "that is forty years old.\n",
}
GREEDY = SamplingParams(temperature=0.0, max_tokens=40, seed=7)


def tree(spans) -> dict[str, list[str]]:
    """span name -> names of its children, in start order."""
    by_id = {s.span_id: s for s in spans}
    out: dict[str, list[str]] = {s.name: [] for s in spans}
    for s in spans:
        if s.parent_id:
            out[by_id[s.parent_id].name].append(s.name)
    return out


class Engine:
    """A traced engine on temporary storage: runtime, history, documents, monitor."""

    def __init__(self, root, model_path, *, capture_content=True, library=True):
        self.store = TraceStore(root / "traces.sqlite3")
        self.tracing = Tracing(self.store, capture_content=capture_content, schedule_delay_ms=50)
        self.runtime = Runtime(self.tracing)
        self.runtime.load(ModelConfig(model_path, n_ctx=2048)).result(timeout=120)
        self.history = HistoryStore(root / "locus.sqlite3")
        self.library = (
            DocumentLibrary(root / "index", bundled_embedder_path(), BUNDLED_EMBEDDER_NAME, tracing=self.tracing)
            if library
            else None
        )
        self.monitor = Monitor(self.store)
        self.assistant = Assistant(
            BackendRegistry.of(self.runtime),
            self.history,
            ChatSettings("You are a helpful assistant.", GREEDY),
            library=self.library,
            tracing=self.tracing,
            monitor=self.monitor,
        )

    def traces(self, **where):
        self.tracing.flush()
        return self.store.list_traces(TraceFilter(**where))

    def close(self):
        self.assistant.close()
        self.runtime.shutdown()
        if self.library is not None:
            self.library.close()
        self.tracing.shutdown()
        self.history.close()
        self.store.close()


@pytest.fixture()
def engine(tmp_path, model_path):
    e = Engine(tmp_path, model_path)
    yield e
    e.close()


def index_folder(engine, tmp_path, extra=()):
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in FACTS.items():
        (docs / name).write_text(text, encoding="utf-8")
    for path in extra:
        shutil.copy(path, docs / path.name)
    return docs, engine.library.index([docs]).wait(300)


def test_document_question_is_one_trace_with_the_expected_tree(engine, tmp_path):
    index_folder(engine, tmp_path)
    engine.runtime.reset_token_counts()
    answer = engine.assistant.ask("Who is the keeper of the Skerry lighthouse?", collections=[])
    events = list(answer.events())
    done = events[-1]
    assert done.complete, done
    after = engine.runtime.diagnostics()
    evaluated, generated = after.prompt_tokens_evaluated, after.tokens_generated

    traces = engine.traces(task="doc_qa")
    assert len(traces) == 1 and traces[0].trace_id == answer.started.trace_id == done.trace_id
    assert traces[0].status == "ok" and traces[0].summary == "Who is the keeper of the Skerry lighthouse?"
    spans = engine.store.trace(done.trace_id)
    shape = tree(spans)
    generation = f"chat {engine.runtime.model_info.name}"
    assert shape["ask"] == ["retrieve", generation, "cite"]
    assert shape["retrieve"] == ["embed_query", "vector_search", "text_search", "fuse"]
    assert shape[generation] == ["queue", "build_prompt", "prompt_eval", "decode"]
    assert {s.trace_id for s in spans} == {done.trace_id}

    by_name = {s.name: s for s in spans}
    gen, retrieve = by_name[generation].attributes, by_name["retrieve"].attributes
    # Token counts are llama.cpp's own: its perf counters saw exactly these prompt and generated tokens.
    assert (
        gen["gen_ai.usage.input_tokens"]
        == done.stats.prompt_tokens
        == evaluated + generated - done.stats.completion_tokens
    )
    assert gen["gen_ai.usage.output_tokens"] == done.stats.completion_tokens == generated
    assert engine.runtime.count_tokens(gen["locus.prompt"], special=True) == gen["gen_ai.usage.input_tokens"]
    assert "Morag Finlay" in gen["locus.prompt"] and gen["locus.response"] == done.text
    assert gen["gen_ai.operation.name"] == "chat" and gen["gen_ai.provider.name"] == "llama.cpp"
    assert gen["gen_ai.request.temperature"] == 0.0 and gen["gen_ai.request.seed"] == 7
    assert gen["locus.sampled_on"] == "cpu"  # a CPU model: sampled from the logits row (test_backend_sampling.py)
    assert gen["gen_ai.response.finish_reasons"] == [done.stats.finish_reason]
    assert gen["locus.time_to_first_token_s"] == pytest.approx(done.stats.time_to_first_token_s)
    # Retrieval: the chunks given to the model, with their sources and scores.
    passages = next(e for e in events if isinstance(e, Retrieved)).passages
    assert retrieve["locus.retrieval.chunk_ids"] == [c for p in passages for c in p.chunk_ids]
    assert retrieve["locus.retrieval.sources"][0].startswith("The Skerry Light")
    assert retrieve["locus.retrieval.scores"] == sorted(retrieve["locus.retrieval.scores"], reverse=True)
    assert 0.3 < retrieve["locus.retrieval.top_similarity"] <= 1.0
    root = by_name["ask"].attributes
    assert root["locus.task"] == "doc_qa" and root["locus.monitor.no_relevant_documents"] is False
    assert root["locus.backend"] == answer.started.backend == "local"
    assert root["gen_ai.usage.output_tokens"] == done.stats.completion_tokens
    # The saved answer knows its trace, for "Show trace".
    assert engine.history.message(answer.started.assistant_message_id).stats["trace_id"] == done.trace_id
    # Children sit inside their parents in time.
    for s in spans:
        if s.parent_id:
            parent = next(p for p in spans if p.span_id == s.parent_id)
            assert parent.start_ns <= s.start_ns and s.end_ns <= parent.end_ns + 1_000_000, s.name


def test_indexing_run_has_one_span_per_file_with_failures(engine, tmp_path):
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4\n this is not a real pdf")
    _docs, result = index_folder(
        engine, tmp_path, [PDF_ODDITIES / "encrypted-file.pdf", PDF_ODDITIES / "crazyones.pdf", broken]
    )
    assert result.indexed == 3 and result.failed == 2
    (trace,) = engine.traces(task="index")
    assert trace.status == "error"  # two files failed
    spans = engine.store.trace(trace.trace_id)
    files = [s for s in spans if s.name == "index_file"]
    assert len(files) == 5 and all(s.parent_id == spans[0].span_id for s in files)
    by_file = {s.attributes["locus.document.path"].rsplit("/", 1)[-1]: s for s in files}
    assert set(by_file) == {"lighthouse.md", "bakery.txt", "encrypted-file.pdf", "crazyones.pdf", "broken.pdf"}
    encrypted = by_file["encrypted-file.pdf"]
    assert encrypted.status == "error" and "password" in encrypted.status_message.lower()
    assert encrypted.attributes["locus.document.status"] == "failed"
    assert by_file["broken.pdf"].status == "error" and by_file["broken.pdf"].status_message
    good = by_file["crazyones.pdf"]
    assert good.status != "error" and good.attributes["locus.document.chunks"] >= 1
    assert [e["name"] for e in good.events] == ["parsing", "parsed", "embedding"]
    root = spans[0].attributes
    assert (root["locus.index.indexed"], root["locus.index.failed"]) == (3, 2)


def test_content_capture_off_keeps_timings_and_counts_only(tmp_path, model_path):
    engine = Engine(tmp_path, model_path, capture_content=False, library=False)
    try:
        answer = engine.assistant.ask("Say something about the sea.")
        done = answer.wait(120)
        (trace,) = engine.traces()
        assert trace.summary == "" and trace.output_tokens == done.stats.completion_tokens
        for span in engine.store.trace(trace.trace_id):
            leaked = {
                k
                for k in span.attributes
                if k
                in (
                    "locus.prompt",
                    "locus.response",
                    "gen_ai.input.messages",
                    "gen_ai.output.messages",
                    "locus.summary",
                    "locus.question",
                )
            }
            assert not leaked, (span.name, leaked)
        raw = b"".join(p.read_bytes() for p in tmp_path.glob("traces.sqlite3*"))
        assert b"about the sea" not in raw and done.text.encode()[:40] not in raw
    finally:
        engine.close()


def test_cancelled_failed_and_task_requests_are_traced(tmp_path, model_path, templates):
    engine = Engine(tmp_path, model_path, library=False)
    try:
        started = threading.Event()
        answer = engine.assistant.ask(
            "Write a long story about a dragon.", on_event=lambda e: started.set() if isinstance(e, TextDelta) else None
        )
        assert started.wait(60)
        answer.cancel()
        stopped = answer.wait(60)
        assert stopped.cancelled and stopped.stats.finish_reason == "cancelled"

        def two_steps(ctx):
            ctx.progress("Step", 1, 2)
            first = ctx.generate(
                ctx.render("summarize", text="Tides rise and fall twice a day.", length="in one line"), max_tokens=8
            )
            ctx.progress("Step", 2, 2)
            return first + ctx.generate(prompt="The sea is", max_tokens=4)

        engine.assistant.templates = templates
        task = engine.assistant.run_task(two_steps, "Summarize the tides", name="summarize")
        done = task.wait(120)
        assert done.complete and done.trace_id == task.started.trace_id
        assert engine.history.message(task.started.assistant_message_id).stats["trace_id"] == done.trace_id

        engine.runtime.shutdown()  # nothing can answer now: the request fails and its trace says why
        failed = engine.assistant.ask("Anyone there?").wait(30)
        assert failed.failed

        traces = {t.summary: t for t in engine.traces()}
        assert traces["Write a long story about a dragon."].status == "cancelled"
        task_trace = traces["Summarize the tides"]
        assert (task_trace.name, task_trace.task, task_trace.status) == ("summarize", "summarize", "ok")
        spans = engine.store.trace(task_trace.trace_id)
        assert [s.attributes["gen_ai.operation.name"] for s in spans if s.name.startswith(("chat ", "text_"))] == [
            "chat",
            "text_completion",
        ]
        assert [e["attributes"]["done"] for e in spans[0].events if e["name"] == "progress"] == [1, 2]
        assert traces["Anyone there?"].status == "error"
        root = engine.store.trace(traces["Anyone there?"].trace_id)[0]
        assert root.status == "error" and "shut" in root.status_message.lower()
    finally:
        engine.close()


def test_an_answer_that_is_not_saved_keeps_no_text_in_its_trace(tmp_path, model_path, templates):
    """``save=False`` (``locus ask --no-history``, the terminal's tasks): timings and counts are traced, no text,
    while the answers saved beside them keep theirs."""
    engine = Engine(tmp_path, model_path, library=False)
    engine.assistant.templates = templates
    try:
        quiet = engine.assistant.ask("Say something about the marsh.", save=False).wait(120)
        task = engine.assistant.run_task(
            lambda ctx: ctx.generate(prompt="Herons are", max_tokens=6, stream=True),
            "Complete: herons",
            name="summarize",
            save=False,
        ).wait(120)
        saved = engine.assistant.ask("Say something about the moor.").wait(120)
        assert quiet.complete and task.complete and saved.complete and engine.history.conversations()
        content = {
            "locus.prompt",
            "locus.response",
            "gen_ai.input.messages",
            "gen_ai.output.messages",
            "locus.summary",
            "locus.question",
        }
        for ended in (quiet, task):
            spans = engine.store.trace(ended.trace_id) if engine.traces() else []
            assert len(spans) >= 2 and any(s.attributes.get("gen_ai.usage.output_tokens") for s in spans)
            assert not [(s.name, k) for s in spans for k in s.attributes if k in content]
        kept = {k for s in engine.store.trace(saved.trace_id) for k in s.attributes}
        assert {"locus.prompt", "locus.response", "locus.question"} <= kept
        raw = b"".join(p.read_bytes() for p in tmp_path.glob("traces.sqlite3*"))
        assert b"about the marsh" not in raw and b"Complete: herons" not in raw and b"about the moor" in raw
    finally:
        engine.close()
