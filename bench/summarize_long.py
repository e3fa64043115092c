"""Summarizing a long document: map-reduce over all of it beside one pass over the part that fits.

The document is the text of the PDFs in ../shared/corpus/pdf-oddities joined into
one (each distinct text once, scraps under 200 characters left out), several
times the context window. It is summarized with the real task
(engine.tasks.summarize) on the bundled model, greedily, two ways: map-reduce
over the whole text, and a single pass over its beginning cut to fit the window
(what a summarizer without map-reduce can do). For each: wall time, model calls,
tokens processed (prompt + generated) and how much of the document the model read.

    .venv/bin/python bench/summarize_long.py [--n-ctx 4096] [--threads N] [--length short] [--folder DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.answer import AnswerEnded
from engine.assistant import Assistant
from engine.history.store import HistoryStore
from engine.models.bundled import BUNDLED_LLM_NAME, bundled_llm_path
from engine.rag.loaders import DocumentError, load
from engine.runtime.backend import BackendRegistry
from engine.runtime.native import default_threads
from engine.runtime.runtime import Runtime
from engine.runtime.types import ModelConfig, SamplingParams
from engine.tasks.summarize import LENGTHS, plan_budget, split_text, summarize
from engine.tasks.templates import TemplateLibrary
from resources import resource_path

DEFAULT_FOLDER = REPO.parent / "shared" / "corpus" / "pdf-oddities"


def long_document(folder: Path) -> tuple[str, int]:
    """The distinct PDF texts of a folder, longest first, as one document; and how many went in."""
    texts = []
    for pdf in sorted(folder.glob("*.pdf")):
        try:
            text = "\n\n".join(s.text for s in load(pdf).sections).strip()
        except DocumentError:
            continue  # password-protected, empty: nothing to summarize
        if len(text) >= 200:
            texts.append(text)
    kept: list[str] = []
    for text in sorted(texts, key=len, reverse=True):
        if not any(text in other for other in kept):  # copies and pages merged into other files
            kept.append(text)
    return "\n\n".join(kept), len(kept)


def run(assistant: Assistant, fn) -> tuple[AnswerEnded, float]:
    """The task run as the terminal runs it (an answer that is not saved); how it ended and its wall time."""
    t = time.perf_counter()
    done = assistant.run_task(
        fn, "bench", name="bench", save=False, sampling=SamplingParams(temperature=0.0, seed=1)
    ).wait()
    elapsed = time.perf_counter() - t
    if not done.complete:
        raise SystemExit(f"summarizing failed: {done.error.user_text() if done.error else done.outcome}")
    return done, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, default=DEFAULT_FOLDER)
    parser.add_argument("--n-ctx", type=int, default=4096, help="context window (the app's default: 4096)")
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--length", choices=list(LENGTHS), default="short")
    args = parser.parse_args()

    text, n_docs = long_document(args.folder)
    runtime = Runtime()
    runtime.load(ModelConfig(str(bundled_llm_path()), n_ctx=args.n_ctx, n_threads=args.threads)).result()
    templates = TemplateLibrary(resource_path("prompts"))
    scratch = tempfile.TemporaryDirectory(prefix="locus-bench-")
    history = HistoryStore(Path(scratch.name) / "unused.sqlite3")  # nothing is saved in it
    assistant = Assistant(BackendRegistry.of(runtime), history, templates=templates)
    doc_tokens = runtime.count_tokens(text)
    head: list[str] = []

    def truncated(ctx) -> str:
        cut = split_text(text, plan_budget(ctx, args.length).final_input, ctx.count_tokens)[0]
        head.append(cut)
        return summarize(ctx, cut, args.length)

    try:
        single = ("single truncated pass", *run(assistant, truncated), None)
        results = [("map-reduce", *run(assistant, lambda ctx: summarize(ctx, text, args.length)), 1.0), single]
        read_head = runtime.count_tokens(head[0]) / doc_tokens
    finally:
        assistant.close()
        runtime.shutdown()
        history.close()
        scratch.cleanup()

    print(
        f"document: {n_docs} distinct PDF texts from {args.folder.name}, {len(text):,} characters, "
        f"{doc_tokens:,} tokens ({doc_tokens / args.n_ctx:.1f}x the window)"
    )
    print(f"model: {BUNDLED_LLM_NAME}, n_ctx {args.n_ctx}, threads {args.threads}, length {args.length}, greedy")
    print()
    print(
        f"{'method':<22} {'wall s':>7} {'calls':>6} {'prompt tok':>11} {'generated':>10} {'total tok':>10} "
        f"{'tok/s':>7} {'read':>6}"
    )
    for name, done, elapsed, read in results:
        s = done.stats
        total = s.prompt_tokens + s.completion_tokens
        read = read_head if read is None else read
        print(
            f"{name:<22} {elapsed:7.1f} {s.generations:6d} {s.prompt_tokens:11,} {s.completion_tokens:10,} "
            f"{total:10,} {total / elapsed:7.0f} {read:6.0%}"
        )
    for name, done, _, _ in results:
        summary = " ".join(done.text.split())
        print(f"\n{name} summary ({len(summary)} characters):\n  {summary[:400]}{'…' if len(summary) > 400 else ''}")


if __name__ == "__main__":
    main()
