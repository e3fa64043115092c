"""Compaction: older turns of a conversation summarized by the model into one note, instead of being dropped.

A summary is a saved message (kind 'summary', role 'system') whose parent is the last message it
summarizes; the turns kept after it have it as their parent. The originals stay in the history. The model
sees the latest summary on the branch shown in place of everything before it: ``context_messages`` picks
the messages from it on, and ``fold_summary`` adds its note to the system prompt (templates that allow one
system message at the start still work).

Compacting is a request like an answer: its own thread, traced (a "compact" root span and the model's
generation under it), cancellable (``CompactionHandle.cancel``), its failure reported in words, nothing saved
unless it completes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace

from engine.answer import AnswerEnded, AnswerStats, Outcome
from engine.errors import EngineError, InvalidRequestError
from engine.history.models import CONTEXT_STATUSES, Message
from engine.history.store import HistoryStore
from engine.runtime.backend import Backend
from engine.runtime.budget import context_window
from engine.runtime.generator import wrap_unexpected
from engine.runtime.types import ChatMessage, Done, Failed, GenerationRequest, Priority, SamplingParams
from engine.trace import spans
from engine.trace.tracing import Tracing

log = logging.getLogger(__name__)

SUMMARY = "summary"
SUMMARY_HEADING = "Summary of the earlier conversation (written when it grew too long for the context):"
SUMMARIZER_PROMPT = "You write short, faithful notes summarizing conversations. You never invent anything."
INSTRUCTION = (
    "Summarize the conversation below in a short note that keeps what later questions may need: facts, "
    "names, numbers, decisions and open questions. Write only the note."
)
ROLE_NAMES = {"user": "User", "assistant": "Assistant", "system": "Earlier summary", "tool": "Tool"}


def is_summary(message: Message) -> bool:
    return message.kind == SUMMARY


def _latest_summary(messages: Sequence[Message]) -> int | None:
    for index in range(len(messages) - 1, -1, -1):
        if is_summary(messages[index]):
            return index
    return None


def _seen(message: Message) -> bool:
    return message.status in CONTEXT_STATUSES and bool(message.content.strip())


def context_messages(messages: Sequence[Message]) -> list[Message]:
    """The saved messages the model sees next: from the latest summary on the branch shown (everything
    before it is what it summarizes), finished (or partial) ones with text."""
    start = _latest_summary(messages)
    return [m for m in messages[start or 0 :] if _seen(m)]


def summarized_count(messages: Sequence[Message]) -> int:
    """How many messages (not summaries) the latest summary on the branch stands for."""
    start = _latest_summary(messages)
    return 0 if start is None else sum(1 for m in messages[:start] if not is_summary(m))


def summary_mark(messages: Sequence[Message]) -> tuple[int, ...]:
    """For the runtime's key of a branch (engine/turns.py ``branch_key``): the latest summary on it, negated
    (none: empty). The prompt of a compacted branch starts anew (its system prompt holds the note), so it
    gets a key of its own, and the runtime's remembered trimming point of the longer prompt is not applied
    to the shorter one."""
    start = _latest_summary(messages)
    return () if start is None else (-messages[start].id,)


def as_chat(message: Message) -> ChatMessage:
    """A saved message as the model sees it (a summary: a system note with its heading)."""
    if is_summary(message):
        return ChatMessage("system", f"{SUMMARY_HEADING}\n{message.content}")
    return ChatMessage(message.role, message.content)  # type: ignore[arg-type]


def fold_summary(system_prompt: str, earlier: Sequence[ChatMessage]) -> tuple[str, tuple[ChatMessage, ...]]:
    """The system prompt with a leading summary note folded in, and the turns after it."""
    if earlier and earlier[0].role == "system":
        note = earlier[0].content
        return (f"{system_prompt}\n\n{note}" if system_prompt else note), tuple(earlier[1:])
    return system_prompt, tuple(earlier)


# Deciding what to summarize ---------------------------------------------------------------


@dataclass(frozen=True)
class CompactionPlan:
    conversation_id: int
    summarize: tuple[Message, ...]  # what the note replaces (an earlier summary first, when there is one)
    last: Message  # the last message summarized: the summary's parent
    keep: Message | None  # the first message kept after it (it will follow the summary)
    originals: int  # messages (not summaries) the new summary stands for, earlier summaries' included


def plan(messages: Sequence[Message], keep_exchanges: int = 1) -> CompactionPlan | None:
    """What to summarize on the branch shown (``messages``): everything from its latest summary up to the
    last ``keep_exchanges`` exchanges (a question and what follows it); with nothing to summarize then, all
    of it. None when there is nothing new to summarize."""
    if not messages:
        return None
    start = _latest_summary(messages) or 0
    tail = list(messages[start:])
    questions = [i for i, m in enumerate(tail) if m.role == "user" and not is_summary(m)]
    for keep in (keep_exchanges, 0):
        cut = questions[-keep] if 0 < keep <= len(questions) else len(tail)
        part = tail[:cut]
        if any(_seen(m) and not is_summary(m) for m in part):
            break
    else:
        return None
    originals = sum(1 for m in messages[: start + cut] if not is_summary(m))
    return CompactionPlan(
        messages[0].conversation_id,
        tuple(m for m in part if _seen(m)),
        part[-1],
        tail[cut] if cut < len(tail) else None,
        originals,
    )


def transcript(messages: Sequence[Message]) -> str:
    return "\n\n".join(f"{ROLE_NAMES.get(m.role, m.role)}: {m.content.strip()}" for m in messages)


def summary_request(plan: CompactionPlan, n_ctx: int, sampling: SamplingParams) -> GenerationRequest:
    """The model's request: the transcript and the instruction; the note gets up to a quarter of the window
    (the runtime shortens a transcript too long for the rest, keeping its start and end)."""
    max_tokens = max(64, min(512, n_ctx // 4))
    return GenerationRequest(
        (
            ChatMessage("system", SUMMARIZER_PROMPT),
            ChatMessage("user", f"{INSTRUCTION}\n\n---\n{transcript(plan.summarize)}\n---"),
        ),
        replace(sampling, max_tokens=max_tokens, temperature=min(sampling.temperature, 0.3)),
        priority=Priority.INTERACTIVE,
    )


# Saving -------------------------------------------------------------------------------------


def save_summary(history: HistoryStore, plan: CompactionPlan, text: str) -> Message:
    """The note as a summary message after the last message it summarizes, in one transaction: the messages
    that followed that one (read now: a turn may have been added meanwhile) follow the summary instead, and
    the branch shown stays the one that was shown."""
    shown = history.messages(plan.conversation_id)
    ids = [m.id for m in shown]
    on_path = plan.last.id in ids
    keep = shown[ids.index(plan.last.id) + 1].id if on_path and ids[-1] != plan.last.id else None
    now = time.time()
    with history.transaction() as db:
        cur = db.execute(
            "INSERT INTO messages(conversation_id, role, content, status, created_at, parent_id, kind)"
            " VALUES (?, 'system', ?, 'complete', ?, ?, ?)",
            (plan.conversation_id, text, now, plan.last.id, SUMMARY),
        )
        summary_id = cur.lastrowid
        assert summary_id is not None  # an INSERT's row id
        # Every message that followed the last one summarized follows the summary: the kept turn and its other
        # versions (they share what the note summarizes), so they stay versions of one another.
        db.execute(
            "UPDATE messages SET parent_id = ? WHERE parent_id = ? AND id != ?", (summary_id, plan.last.id, summary_id)
        )
        leaf = summary_id if on_path and keep is None else (ids[-1] if ids else summary_id)
        db.execute(
            "UPDATE conversations SET updated_at = ?, current_leaf = ? WHERE id = ?", (now, leaf, plan.conversation_id)
        )
    return history.message(summary_id)


# Running ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompactionResult:
    conversation_id: int
    outcome: Outcome  # "complete", "cancelled" or "failed"
    summary: Message | None  # the saved note (complete only)
    originals: int  # messages it stands for
    trace_id: str | None
    error: EngineError | None = None


class CompactionHandle:
    """A compaction on its way: ``cancel()`` stops it (nothing is saved); ``future`` resolves to its result."""

    def __init__(self) -> None:
        self.future: Future[CompactionResult] = Future()
        self._cancelled = threading.Event()
        self._request = None
        self._lock = threading.Lock()

    def cancel(self) -> None:
        with self._lock:
            self._cancelled.set()
            if self._request is not None:
                self._request.cancel()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def _attach(self, request) -> bool:
        with self._lock:
            self._request = request
            if self._cancelled.is_set():
                request.cancel()
            return not self._cancelled.is_set()


def compact(
    history: HistoryStore,
    backend: Backend,
    tracing: Tracing,
    conversation_id: int,
    *,
    sampling: SamplingParams | None = None,
    backend_name: str = "",
    keep_exchanges: int = 1,
    lock: AbstractContextManager | None = None,
    on_done: Callable[[CompactionResult], None] | None = None,
) -> CompactionHandle:
    """Summarize the older turns of a conversation's branch shown, on a thread of its own (returns at once).
    ``lock``: held around the save (the conversation's turn lock, so a question recorded meanwhile is not lost).
    """
    handle = CompactionHandle()

    def run() -> None:
        result = _run(
            handle,
            history,
            backend,
            tracing,
            conversation_id,
            sampling or SamplingParams(),
            backend_name,
            keep_exchanges,
            lock or nullcontext(),
        )
        handle.future.set_result(result)
        if on_done is not None:
            try:
                on_done(result)
            except Exception:
                log.exception("a compaction's callback failed")

    threading.Thread(target=run, name=f"locus-compact-{conversation_id}", daemon=True).start()
    return handle


def _run(
    handle: CompactionHandle,
    history: HistoryStore,
    backend: Backend,
    tracing: Tracing,
    conversation_id: int,
    sampling: SamplingParams,
    backend_name: str,
    keep_exchanges: int,
    lock: AbstractContextManager,
) -> CompactionResult:
    info = backend.model_info
    try:
        found = plan(history.messages(conversation_id), keep_exchanges)
    except Exception as exc:  # noqa: BLE001 - reported in words
        unread = exc if isinstance(exc, EngineError) else wrap_unexpected(exc)
        return CompactionResult(conversation_id, "failed", None, 0, None, unread)
    if found is None:
        refused = InvalidRequestError("There is nothing to compact yet.", hint="Compact after a few more turns.")
        return CompactionResult(conversation_id, "failed", None, 0, None, refused)
    with spans.answer(
        tracing,
        "compact",
        task="compact",
        conversation_id=conversation_id,
        backend=backend_name,
        model=info.name if info else None,
        summary=f"Summarize {found.originals} earlier messages",
    ) as root:
        stats, text = AnswerStats(), ""
        error: EngineError | None = None
        outcome: Outcome = "failed"
        try:
            request = summary_request(found, context_window(info), sampling)
            generation = backend.submit(request, trace_parent=root.context)
            if not handle._attach(generation):
                outcome = "cancelled"
            for event in generation.events():
                if isinstance(event, Done):
                    stats, text = stats.plus(event.stats), event.text.strip()
                    cancelled = event.stats.finish_reason == "cancelled" or handle.cancelled
                    outcome = "cancelled" if cancelled else "complete"
                elif isinstance(event, Failed):
                    outcome, error = "failed", event.error
            if outcome == "complete" and not text:
                outcome = "failed"
                error = EngineError("The model wrote an empty summary; nothing was changed.")
            summary = None
            if outcome == "complete":
                with lock:
                    summary = save_summary(history, found, text)
        except Exception as exc:
            log.exception("compaction of conversation %s failed", conversation_id)
            outcome, error = "failed", exc if isinstance(exc, EngineError) else wrap_unexpected(exc)
            summary = None
        root.finish(AnswerEnded(0, outcome, text, stats, root.trace_id, error))
        return CompactionResult(conversation_id, outcome, summary, found.originals, root.trace_id, error)
