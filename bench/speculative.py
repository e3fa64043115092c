"""Speculative decoding: tokens/s and acceptance, plain decoding against prompt lookup, greedy answers compared.

Three tasks on the bundled model (or --model), one request at a time as a user runs them:
translate a code-heavy Markdown file (asked in chat, code included: the app's translation task
masks code blocks so they never reach the model, but a chat request for a translation that keeps
code copies it), summarize a long text, and answer a question over a passage in the shape of
the app's document questions (numbered sources, the worked example). Each task runs in
interleaved pairs on one Generator (plain, then prompt lookup, the order alternating), from a cold
cache, greedy; the pair's ratio of generation tokens/s is taken inside the pair so machine load
hits both sides. The greedy answers are compared token for token (prompt + answer in the cache).

    python bench/speculative.py                    # 3 pairs a task, 256 tokens
    python bench/speculative.py --pairs 5 --tokens 384 --threads 2
    python bench/speculative.py --draft bundled    # also a draft model (here the bundled model itself)

"x lookup" is the median over pairs of lookup t/s / plain t/s; "kept" is the share of drafted tokens
the model accepted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.models.bundled import bundled_llm_path
from engine.runtime.generator import Generator
from engine.runtime.types import ChatMessage, Done, GenerationRequest, ModelConfig, SamplingParams
from engine.tasks.doc_qa import DOC_SYSTEM_PROMPT, EXAMPLE

MARKDOWN = '''# Working with the cache

The cache keeps results of expensive calls in memory. Create one with a size limit and
wrap the function you want to speed up.

```python
from functools import lru_cache


@lru_cache(maxsize=256)
def load_user(user_id: int) -> dict:
    """Read one user record from the database."""
    row = db.execute("SELECT id, name, email FROM users WHERE id = ?", (user_id,)).fetchone()
    return {"id": row[0], "name": row[1], "email": row[2]}
```

To clear the cache after the data changed, call `cache_clear()`:

```python
def rename_user(user_id: int, name: str) -> None:
    db.execute("UPDATE users SET name = ? WHERE id = ?", (name, user_id))
    db.commit()
    load_user.cache_clear()
```

## Configuration

Settings are read from `config.toml` when the program starts:

```toml
[cache]
max_entries = 256
ttl_seconds = 600
```

If the file is missing, the defaults above are used.
'''

ARTICLE = (
    "The printing press, developed by Johannes Gutenberg around 1440 in Mainz, changed how "
    "knowledge spread across Europe. Before it, books were copied by hand, mostly in monasteries, "
    "and a single Bible could take a scribe more than a year. Gutenberg combined several existing "
    "technologies: a screw press adapted from wine making, oil-based inks, and above all movable "
    "metal type cast in a hand mould, which let a printer compose a page from reusable letters. "
    "Within fifty years, presses were working in more than two hundred cities, and an estimated "
    "twenty million volumes had been printed. The price of books fell sharply, literacy rose among "
    "merchants and artisans, and scholars could compare identical copies of a text for the first "
    "time, which helped standardise spelling and made errors easier to correct. The Reformation "
    "owed much to the press: Martin Luther's pamphlets were printed in hundreds of thousands of "
    "copies within a few years, carrying arguments faster than authorities could suppress them. "
    "Scientists such as Copernicus and Vesalius relied on printed diagrams that could be "
    "reproduced exactly, something hand copying never achieved. Governments and the church soon "
    "responded with licensing and censorship, and lists of forbidden books appeared in the "
    "sixteenth century. Newspapers followed in the seventeenth century, first as weekly news "
    "sheets in German cities and then across the continent. Historians still debate how quickly "
    "these changes took hold outside cities, since rural literacy remained low for centuries, but "
    "most agree that the press made the scientific revolution and the modern public sphere possible."
)

PASSAGE = (
    "The Locus runtime keeps one llama.cpp context per loaded model. Requests are queued by "
    "priority: interactive chat first, then the local API, then background tasks such as "
    "summaries. Up to four requests are decoded together in one batch by default; the setting "
    "'Parallel requests' changes this number. When the KV cache is full, a lower-priority request "
    "is preempted: its cache is saved to memory and it resumes later where it stopped. Idle "
    "conversations keep their cache in RAM up to 512 MB, and states pushed out of memory are "
    "written to disk up to 2048 MB, in the data folder, and removed when the program exits."
)

SYSTEM = ChatMessage("system", "You are a helpful assistant.")
TASKS: dict[str, tuple[ChatMessage, ...]] = {
    "translate code-heavy Markdown": (
        SYSTEM,
        ChatMessage(
            "user",
            "Translate the following Markdown document into French. Keep the code blocks exactly as "
            "they are.\n\n" + MARKDOWN,
        ),
    ),
    "summarize a long text": (SYSTEM, ChatMessage("user", ARTICLE + "\n\nSummarize the text above in a paragraph.")),
    "answer over a passage": (
        ChatMessage("system", DOC_SYSTEM_PROMPT),
        *EXAMPLE,
        ChatMessage(
            "user",
            "Sources:\n\n[1] runtime.md, lines 12–18\n"
            + PASSAGE
            + "\n\nQuestion: What happens when the KV cache is full, and where do saved states go?",
        ),
    ),
}


def run(gen: Generator, messages: tuple[ChatMessage, ...], speculate: bool, tokens: int) -> tuple[Done, tuple]:
    spec = gen.batcher.speculator
    gen.batcher.speculator = spec if speculate else None
    try:
        gen.forget_cache()
        request = GenerationRequest(messages, SamplingParams(temperature=0.0, repeat_penalty=1.0, max_tokens=tokens))
        done = gen.generate(request, threading.Event(), lambda _event: None)
        return done, gen.cached_tokens
    finally:
        gen.batcher.speculator = spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="GGUF file (default: the bundled model)")
    parser.add_argument(
        "--draft",
        default=None,
        help="also draft-model speculation with this GGUF ('bundled': the bundled model as its own draft, "
        "a plumbing check that keeps every draft but cannot be faster)",
    )
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--threads", type=int, default=0, help="0: one per core (the app's default)")
    parser.add_argument("--gpu-layers", type=int, default=0)
    parser.add_argument("--flash-attention", default="auto", choices=("auto", "on", "off"))
    args = parser.parse_args()
    path = args.model or str(bundled_llm_path())
    config = ModelConfig(
        path,
        n_ctx=4096,
        n_threads=args.threads,
        n_gpu_layers=args.gpu_layers,
        speculative="prompt_lookup",
        flash_attention=args.flash_attention,
    )
    gen = Generator(config)
    sides: dict[str, tuple[Generator, bool]] = {"plain": (gen, False), "lookup": (gen, True)}
    if args.draft:
        draft = str(bundled_llm_path()) if args.draft == "bundled" else args.draft
        drafting = Generator(replace(config, speculative="draft", draft_model=draft))
        sides["draft"] = (drafting, True)
    # Speculation on a CPU turns flash attention "auto" off (engine/runtime/kv_cache.py); what a user
    # compares is plain decoding with the setting off, on a context made as it then is.
    usual = None
    if gen.ctx.flash_attention != args.flash_attention:
        usual = Generator(replace(config, speculative="off"))
        sides["usual"] = (usual, False)
    print(
        f"model {Path(path).name}, {gen.info.n_threads} threads, {args.tokens} tokens, flash attention "
        f"{args.flash_attention} (with speculation: {gen.ctx.flash_attention}), load {_load()}"
    )
    if usual is not None:
        print(f"'usual': plain decoding with speculation off (flash attention {usual.ctx.flash_attention})")
    head = "".join(f"{side + ' t/s':>12}" for side in sides)
    spec_sides = [side for side in sides if side not in ("plain", "usual")]
    rest = "".join(f"{'x ' + side:>9}{'kept':>6}" for side in spec_sides)
    rest += f"{'lookup/usual':>13}" if usual is not None else ""
    print(f"{'task':30}{head}{rest}  same   (pair ratios)")
    all_same = True
    for name, messages in TASKS.items():
        tps: dict[str, list[float]] = {side: [] for side in sides}
        ratios: dict[str, list[float]] = {side: [] for side in sides}
        drafted = dict.fromkeys(sides, 0)
        kept = dict.fromkeys(sides, 0)
        same = True
        for pair in range(args.pairs):
            order = list(sides) if pair % 2 == 0 else list(reversed(sides))
            results = {side: run(sides[side][0], messages, sides[side][1], args.tokens) for side in order}
            plain = results["plain"][0].stats.tokens_per_s or 0.0
            for side, (done, cache) in results.items():
                if side != "usual":  # (other arithmetic: the same answer is not expected)
                    same &= cache == results["plain"][1]
                tps[side].append(done.stats.tokens_per_s or 0.0)
                ratios[side].append((done.stats.tokens_per_s or 0.0) / plain if plain else 0.0)
                drafted[side] += done.stats.draft_tokens
                kept[side] += done.stats.accepted_draft_tokens
        all_same &= same
        cols = "".join(f"{statistics.median(tps[side]):12.1f}" for side in sides)
        cols += "".join(
            f"{statistics.median(ratios[side]):9.2f}{(kept[side] / drafted[side] if drafted[side] else 0):6.0%}"
            for side in spec_sides
        )
        if usual is not None:
            cols += f"{statistics.median(a / b for a, b in zip(tps['lookup'], tps['usual'], strict=True)):13.2f}"
        spread = "; ".join(f"{side} " + ", ".join(f"{r:.2f}" for r in ratios[side]) for side in spec_sides)
        print(f"{name:30}{cols}  {'yes' if same else 'NO':4}   ({spread})")
    print(f"load {_load()}; greedy answers identical token for token: {'yes' if all_same else 'NO'}")
    for generator in {id(g): g for g, _ in sides.values()}.values():
        generator.close()
    sys.exit(0 if all_same else 1)


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
