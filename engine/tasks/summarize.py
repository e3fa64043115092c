"""Summaries of text of any length: one pass when it fits the context window, map-reduce when not.

A text that fits (with its prompt and room for the answer) is summarized in one
streamed pass. A longer one is split at paragraph, then sentence, then word
boundaries into parts that each fit; each part is summarized on its own (map),
then the part summaries are merged (reduce): in groups, recursively, while they
are still too long for one prompt. Only the final pass, in the chosen length,
is streamed. Every budget is counted in the loaded model's own tokens.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.errors import InvalidRequestError

if TYPE_CHECKING:  # the CLI reads LENGTHS to build its parser; importing the runtime would slow every command
    from engine.tasks.base import TaskContext

LENGTHS: dict[str, str] = {"one_line": "One line", "short": "Short", "detailed": "Detailed", "bullets": "Bullet points"}

# How the final prompt asks for each length ("Summarize the text above ..."), and the most
# tokens that answer may take. Instruction after the text: small models follow it far better there.
_ASK = {
    "one_line": ("in one sentence", 64),
    "short": ("in a short paragraph", 200),
    "detailed": ("in detail, in several paragraphs that cover every main point", 600),
    "bullets": ("as a list of its main points, one bullet point per line", 400),
}

FINAL_TEMPLATE = "summarize"
PART_TEMPLATE = "summarize_part"
PART_STAGE = "Summarizing part"
MERGE_STAGE = "Merging summaries"
FINAL_STAGE = "Writing the summary"

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")
_SENTENCE_END = re.compile(r"(?<=[.!?;:。！？])\s+|\n\s*")
_SPACE = re.compile(r"\s+")
_JOIN = "\n\n"

Count = Callable[[str], int]


@dataclass(frozen=True)
class Budget:
    """How many tokens of text each kind of prompt can carry, and how long each answer may be."""

    part_input: int  # text per map (or intermediate merge) prompt
    part_answer: int  # max_tokens of each part summary
    final_input: int  # text the final (or only) prompt can carry
    final_answer: int  # max_tokens of the final summary


def check_text(text: str) -> str:
    """The text to summarize, refused when empty."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidRequestError("There is no text to summarize.")
    return text


def check_length(length: str) -> str:
    """The length preset, refused with the allowed names when unknown."""
    if length not in LENGTHS:
        raise InvalidRequestError(f"'{length}' is not a summary length.", hint=f"Choose one of: {', '.join(LENGTHS)}.")
    return length


def summary_task(text: str, length: str = "short") -> Callable[[TaskContext], str]:
    """A task function for Assistant.run_task; bad input is refused now, not in the task."""
    check_text(text)
    check_length(length)
    return lambda ctx: summarize(ctx, text, length)


def summarize(ctx: TaskContext, text: str, length: str = "short") -> str:
    """Summarize ``text`` in the ``length`` preset (a key of LENGTHS), streaming the final pass."""
    text = check_text(text).strip()
    check_length(length)
    budget = plan_budget(ctx, length)
    count = _counter(ctx)
    if count(text) <= budget.final_input:
        return _final(ctx, text, length, budget)

    parts = split_text(text, budget.part_input, count)
    summaries = _summarize_each(ctx, parts, PART_STAGE, budget, count)
    # Each summary fits in half a part prompt, so every group holds two or more: the list shrinks.
    while len(summaries) > 1 and count(_JOIN.join(summaries)) > budget.final_input:
        groups = group_texts(summaries, budget.part_input, count)
        summaries = _summarize_each(ctx, [_JOIN.join(g) for g in groups], MERGE_STAGE, budget, count)
    merged = _JOIN.join(summaries)
    if count(merged) > budget.final_input:  # one summary longer than a tiny window's final prompt
        merged = split_text(merged, budget.final_input, count)[0]
    ctx.progress(FINAL_STAGE, 0, 1)  # what streams next is the summary; the answer's end ends the stage
    return _final(ctx, merged, length, budget)


def join_documents(documents: Sequence[tuple[object, str]]) -> str:
    """Several documents' texts as one, each under a heading with its title (to summarize a collection)."""
    blocks = []
    for record, text in documents:
        title = getattr(record, "title", "") or getattr(record, "path", "") or "Untitled"
        blocks.append(f"# {title}\n\n{text.strip()}")
    return _JOIN.join(blocks)


# Budget ---------------------------------------------------------------------------------


def plan_budget(ctx: TaskContext, length: str) -> Budget:
    """Budgets for the loaded model's context window and these templates."""
    n_ctx = ctx.n_ctx
    # Tokens counted piece by piece differ a little from the rendered prompt's; keep a margin.
    margin = 8 + n_ctx // 32
    final_answer = min(_ASK[length][1], n_ctx // 4)
    part_answer = max(32, min(200, n_ctx // 8))
    final_input = n_ctx - final_answer - margin - _overhead(ctx, FINAL_TEMPLATE, length=_ASK[length][0])
    part_input = n_ctx - part_answer - margin - _overhead(ctx, PART_TEMPLATE)
    if final_input < 32 or part_input < 2 * (part_answer + 16):
        raise InvalidRequestError(
            f"The model's context window ({n_ctx} tokens) is too small for the summary prompts.",
            hint="Choose a larger context size in Settings, or shorten the prompt templates.",
        )
    return Budget(part_input, part_answer, final_input, final_answer)


def _overhead(ctx: TaskContext, template: str, **values: str) -> int:
    """Tokens a template's prompt takes without its text: instructions, examples, turn markers."""
    messages = ctx.render(template, text="", **values)
    return sum(ctx.count_tokens(m.content) for m in messages) + 6 * len(messages) + 8


def _counter(ctx: TaskContext) -> Count:
    """Token counting that also notices a cancel (splitting a book takes a moment)."""

    def count(text: str) -> int:
        ctx.check_cancel()
        return ctx.count_tokens(text)

    return count


# Steps ----------------------------------------------------------------------------------


def _final(ctx: TaskContext, text: str, length: str, budget: Budget) -> str:
    messages = ctx.render(FINAL_TEMPLATE, text=text, length=_ASK[length][0])
    return ctx.generate(messages, stream=True, max_tokens=budget.final_answer)


def _summarize_each(ctx: TaskContext, texts: list[str], stage: str, budget: Budget, count: Count) -> list[str]:
    """One short summary per text (not streamed), with progress after each."""
    ctx.progress(stage, 0, len(texts))
    limit = budget.part_input // 2 - 8
    summaries = []
    for i, text in enumerate(texts, 1):
        text = text.strip()
        summary = ctx.generate(ctx.render(PART_TEMPLATE, text=text), max_tokens=budget.part_answer).strip()
        # A model that answers nothing still passes the part on: its opening stands in for it.
        summary = summary or text
        if count(summary) > limit:
            summary = split_text(summary, limit, count)[0].strip()
        summaries.append(summary)
        ctx.progress(stage, i, len(texts))
    return summaries


# Splitting ------------------------------------------------------------------------------


def split_text(text: str, budget: int, count: Count) -> list[str]:
    """Consecutive pieces of ``text`` (joined, they give it back exactly) of at most ``budget`` tokens each,
    cut at a paragraph break where one fills at least half a piece, else at a sentence, a word or a character.
    """
    if budget < 1:
        raise ValueError("budget must be at least one token")
    parts, start = [], 0
    while start < len(text):
        end = _piece_end(text, start, budget, count)
        parts.append(text[start:end])
        start = end
    return parts


def _piece_end(text: str, start: int, budget: int, count: Count) -> int:
    window = _window_end(text, start, budget, count)
    if window is None:
        return len(text)
    best = None
    for pattern in (_PARAGRAPH_BREAK, _SENTENCE_END, _SPACE):
        cuts = [m.end() for m in pattern.finditer(text, start, window) if m.end() > start]
        found = _last_fitting(text, start, cuts, budget, count)
        if found is not None:
            if found[1] >= budget // 2:
                return found[0]
            best = found[0] if best is None else max(best, found[0])
    # No boundary fills half a piece: a very long word or a run without spaces; cut between characters.
    found = _last_fitting(text, start, range(start + 1, window + 1), budget, count)
    if found is not None:
        return max(found[0], best or 0)
    return best or start + 1  # not even one character fits: take it anyway rather than stall


def _window_end(text: str, start: int, budget: int, count: Count) -> int | None:
    """An end past the piece that starts at ``start`` (None when the rest of the text fits), kept small
    so that each trial count tokenizes about a piece's worth of text, not the whole document."""
    sample = text[start : start + 4000]
    chars_per_token = len(sample) / max(1, count(sample))
    size = int(budget * chars_per_token * 1.5) + 64
    while True:
        end = min(len(text), start + size)
        if count(text[start:end]) > budget:
            return end
        if end == len(text):
            return None
        size *= 2


def _last_fitting(text: str, start: int, cuts: Sequence[int], budget: int, count: Count) -> tuple[int, int] | None:
    """The last cut (ascending) whose piece fits, with its token count; binary search."""
    lo, hi, best = 0, len(cuts) - 1, None
    while lo <= hi:
        mid = (lo + hi) // 2
        tokens = count(text[start : cuts[mid]])
        if tokens <= budget:
            best, lo = (cuts[mid], tokens), mid + 1
        else:
            hi = mid - 1
    return best


def group_texts(texts: Sequence[str], budget: int, count: Count) -> list[list[str]]:
    """Consecutive texts packed into groups whose joined text fits ``budget`` tokens (in order)."""
    separator = count(_JOIN)
    groups: list[list[str]] = []
    used = 0
    for text in texts:
        n = count(text)
        if groups and used + separator + n <= budget:
            groups[-1].append(text)
            used += separator + n
        else:
            groups.append([text])
            used = n
    return groups
