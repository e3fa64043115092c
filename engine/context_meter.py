"""How much of the model's context the next turn of a conversation takes: system prompt, history (the branch
shown, from its latest summary on) and documents, counted with the loaded model's tokenizer and chat template.

A prompt in a chat template is its frame (what the template writes around the first question and after it)
plus, for each message, the message's own tokens and its role's wrapping. The frame and each role's wrapping
are measured once per model by rendering tiny conversations; each message's tokens are counted once and
cached by (model, message id, text), so measuring after every turn tokenizes only the new messages.

What happens when it does not fit is engine/runtime/budget.py's ``fit_prompt``: the prompt may take
``prompt_budget(n_ctx, max_tokens)`` tokens (the answer keeps room for ``max_tokens``, at most half the
window); above that the oldest exchanges are left out of what the model sees (down to three quarters of
that room, whole exchanges at a time; the system prompt always stays). They stay in the history.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, cast

from engine.history.models import Message
from engine.runtime.backend import Backend
from engine.runtime.budget import context_window, prompt_budget
from engine.runtime.types import ChatMessage, Role
from engine.tasks import doc_qa

WARN_AT = 0.7  # of the prompt's room: the meter turns amber
COMPACT_AT = 0.8  # of the prompt's room: automatic compaction summarizes older turns
SOURCE_BUDGET_TOKENS = 1500  # engine/assistant.py's: at most this much of the prompt goes to sources
SOURCE_SHARE = 0.35  # ... and at most this share of the window

Level = Literal["ok", "warn", "full"]


def source_budget(n_ctx: int) -> int:
    """Tokens the document path reserves for a question's sources (engine/assistant.py ``_retrieve``)."""
    return min(SOURCE_BUDGET_TOKENS, int(n_ctx * SOURCE_SHARE))


@dataclass(frozen=True)
class ContextUsage:
    """The next turn's prompt, in tokens, against the model's window."""

    n_ctx: int  # the model's context window
    room: int  # what the prompt may take before the oldest messages are left out (prompt_budget)
    system: int  # system prompt and the template's frame around the next question
    history: int  # the saved turns the model sees
    documents: int  # sources reserved, citation rules and the worked example (0 without documents)
    messages: int  # saved messages counted in history
    summarized: int = 0  # messages a summary stands for (not counted: the summary is)

    @property
    def used(self) -> int:
        return self.system + self.history + self.documents

    @property
    def fraction(self) -> float:
        """Of the whole window."""
        return self.used / self.n_ctx if self.n_ctx else 0.0

    @property
    def level(self) -> Level:
        if self.used >= self.room:
            return "full"
        return "warn" if self.used >= WARN_AT * self.room else "ok"

    @property
    def wants_compaction(self) -> bool:
        """The next turn passes COMPACT_AT of the prompt's room."""
        return self.used >= COMPACT_AT * self.room

    def sentence(self, auto_compact: bool = False) -> str:
        """What the level means for the user, true to how the runtime fits a prompt (empty when all is well).
        ``auto_compact``: the setting is on, so the older turns are summarized at COMPACT_AT."""
        if not auto_compact:
            advice = "Compact the conversation to keep their gist."
        elif self.wants_compaction:
            advice = "Automatic compaction will summarize the older turns after the next answer."
        else:
            advice = f"Automatic compaction summarizes the older turns after an answer once {COMPACT_AT:.0%} is used."
        if self.level == "full":
            return (
                "The context is full: the model no longer sees the oldest messages. Each turn Locus leaves out "
                f"the oldest exchanges until the rest fits (they stay in the history). {advice}"
            )
        if self.level == "warn":
            left = self.room - self.used
            return (
                f"The context is filling up: after about {left:,} more tokens the oldest messages stop fitting "
                f"and are left out of what the model sees (they stay in the history). {advice}"
            )
        return ""

    def split(self) -> str:
        """The parts, one a line, for a tooltip."""
        lines = [
            f"{self.used:,} of {self.n_ctx:,} tokens ({self.fraction:.0%}) for the next question",
            f"System prompt and template: {self.system:,}",
            f"History: {self.history:,} ({self.messages} message{'' if self.messages == 1 else 's'})",
        ]
        if self.summarized:
            lines.append(f"  (a summary stands for {self.summarized} earlier messages)")
        if self.documents:
            lines.append(f"Documents (sources reserved): {self.documents:,}")
        lines.append(f"Room for the prompt before the oldest messages are left out: {self.room:,}")
        lines.append(f"Kept for the answer: {self.n_ctx - self.room:,}")
        return "\n".join(lines)


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


class ContextMeter:
    """Measures ``ContextUsage`` (any thread but the GUI's: it tokenizes); per-message counts are cached."""

    def __init__(self, cache_size: int = 20_000):
        self._cache: OrderedDict[tuple, int] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self.counted = 0  # messages tokenized (not taken from the cache): for tests

    def measure(
        self,
        backend: Backend,
        system_prompt: str,
        messages: Sequence[Message],
        *,
        collections: list[str] | None = None,
        max_tokens: int = 512,
    ) -> ContextUsage:
        """The next turn's prompt for ``messages`` (the branch shown, as the store gives it)."""
        from engine.compaction import as_chat, context_messages, fold_summary, is_summary, summarized_count

        info = backend.model_info
        n_ctx = context_window(info)
        model = (info.name, info.n_ctx) if info is not None else (type(backend).__name__, n_ctx)
        shown = context_messages(messages)
        plain_system = system_prompt
        if shown and is_summary(shown[0]):  # the prompt folds the summary into the system prompt
            system_prompt, _ = fold_summary(system_prompt, (as_chat(shown[0]),))
            turns = shown[1:]
        else:
            turns = shown
        documents = collections is not None
        system = system_prompt
        if documents:
            system = f"{system_prompt}\n\n{doc_qa.DOC_SYSTEM_PROMPT}" if system_prompt else doc_qa.DOC_SYSTEM_PROMPT
        history = 0
        for m in turns:
            history += self._message(backend, model, bool(system), m.id, m.role, m.content)
        frame = self._frame(backend, model, system)
        doc_tokens = 0
        if documents:
            doc_tokens = sum(
                self._message(backend, model, True, None, e.role, e.content) for e in doc_qa.EXAMPLE
            ) + self._cached(backend, model, ("sources-wrapper",), lambda: self._wrapper(backend))
            doc_tokens += source_budget(n_ctx)
            plain = self._frame(backend, model, system_prompt)
            doc_tokens += frame - plain  # the citation rules added to the system prompt
            frame = plain
        if system_prompt != plain_system:  # the summary's tokens are history's, not the system prompt's
            bare = self._frame(backend, model, plain_system)
            history += frame - bare
            frame = bare
        return ContextUsage(
            n_ctx,
            prompt_budget(n_ctx, max_tokens),
            frame,
            history,
            doc_tokens,
            len(shown),  # a summary counts as one (its tokens are in history)
            summarized_count(messages),
        )

    # Pieces ------------------------------------------------------------------------------

    def _cached(self, backend: Backend, model: tuple, key: tuple, compute) -> int:
        full = (model, *key)
        with self._lock:
            if full in self._cache:
                self._cache.move_to_end(full)
                return self._cache[full]
        value = int(compute())
        with self._lock:
            self._cache[full] = value
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return value

    def _count(self, backend: Backend, messages: tuple[ChatMessage, ...]) -> int:
        return backend.render_prompt(messages)[1]

    def _frame(self, backend: Backend, model: tuple, system: str) -> int:
        """System prompt and the template's frame around an empty next question (with the answer's start)."""
        head = (ChatMessage("system", system),) if system else ()
        return self._cached(
            backend, model, ("frame", _digest(system)), lambda: self._count(backend, (*head, ChatMessage("user", "")))
        )

    def _wrapping(self, backend: Backend, model: tuple, with_system: bool, role: str) -> int:
        """Tokens a message of ``role`` adds beyond its text, after a question."""

        def measure() -> int:
            head = (ChatMessage("system", "a"),) if with_system else ()
            base = (*head, ChatMessage("user", "x"))
            try:
                grown = self._count(backend, (*base, ChatMessage(cast(Role, role), "y")))
            except Exception:  # a template that refuses this order: the user's wrapping stands in
                if role == "user":
                    raise
                return self._wrapping(backend, model, with_system, "user")
            return grown - self._count(backend, base) - backend.count_tokens("y")

        return self._cached(backend, model, ("wrap", with_system, role), measure)

    def _message(
        self, backend: Backend, model: tuple, with_system: bool, message_id: int | None, role: str, content: str
    ) -> int:
        def measure() -> int:
            self.counted += 1
            return backend.count_tokens(content) if content else 0

        own = self._cached(backend, model, ("text", message_id, _digest(content)), measure)
        return own + self._wrapping(backend, model, with_system, role)

    def _wrapper(self, backend: Backend) -> int:
        """The question's 'Sources: … Question:' wrapping, without the sources themselves."""
        return backend.count_tokens(doc_qa.question_with_sources("", [])) - backend.count_tokens(doc_qa.NO_SOURCES_NOTE)
