"""One request being served: its prompt, sampler, stop matcher, text decoder, timings and outcome.

The batcher feeds it the tokens sampled for it (``on_token``); it turns them into Token events,
decides when it is finished, and builds the Done event with the request's stats. Nothing here
touches llama.cpp except through the sampler the batcher calls.
"""

from __future__ import annotations

import codecs
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.errors import EngineError
from engine.runtime.constrain import Healing, PieceIndex
from engine.runtime.native import NativeModel
from engine.runtime.sampler import SamplerChain
from engine.runtime.stops import StopMatcher
from engine.runtime.types import Done, FinishReason, GenerationEvent, GenerationRequest, GenerationStats, Token
from engine.tools.formats import CallStream
from engine.tools.grammar import ToolPlan

if TYPE_CHECKING:
    from engine.runtime.slots import Slot

Emit = Callable[[GenerationEvent], None]

# Phases: waiting (for a slot, or preempted), prefill (prompt being evaluated), decode (sampling),
# trailing (finished; its last token still goes into the cache), done.
WAITING, PREFILL, DECODE, TRAILING, DONE = "waiting", "prefill", "decode", "trailing", "done"


@dataclass(frozen=True)
class Prompt:
    """A request's prompt, ready to evaluate, and how it was made."""

    tokens: list[int]
    text: str | None  # what the tokens spell, when known (lets the next turn extend the cache verbatim)
    truncated: bool
    dropped: int
    healing: Healing | None
    build_s: float


class Sequence:
    """The decoding state of one request; driven by the batcher on the runtime thread."""

    def __init__(
        self,
        request: GenerationRequest,
        prompt: Prompt,
        *,
        model: NativeModel,
        sampler: SamplerChain,
        seed: int,
        n_ctx: int,
        model_name: str,
        cancel: threading.Event,
        emit: Emit,
        submitted_at: float,
        pieces: PieceIndex | None = None,
        on_finish: Callable[[Sequence], None] | None = None,
        tools: ToolPlan | None = None,
        specials: dict[int, bytes] | None = None,
    ):
        self.request = request
        self.request_id = request.request_id
        self.key = request.conversation_key
        self.priority = int(request.priority)
        self.model = model  # with last_prompt, what the generation span reads for the prompt's text
        self.prompt = prompt
        self.target = prompt.tokens  # what the KV cache must hold before sampling (goes on)
        self.sampler = sampler
        self.cancel = cancel
        self.emit = emit
        self.on_finish = on_finish
        self.healing = prompt.healing
        self.pieces = pieces
        self.max_new = min(request.sampling.max_tokens, n_ctx - len(prompt.tokens))
        self.cells = len(prompt.tokens) + self.max_new  # KV cells reserved while it runs
        self.phase = WAITING
        self.slot: Slot | None = None  # the Slot (sequence id) it runs in
        self.home: Slot | None = None  # the slot it left its cache in, once done
        self.pending: int | None = None  # sampled, shown, not yet in the cache
        self.saved: tuple[list[int], np.ndarray | None] | None = None  # its KV state while preempted
        self.preemptions = 0
        self.done: Done | None = None
        self.error: EngineError | None = None
        self._model_name = model_name
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stopper = StopMatcher(request.sampling.stop)
        self._parts: list[str] = []  # the text shown
        # With tools: which text is a call (held back, parsed at the end) and which is shown.
        self.tools = tools
        self._calls = CallStream(tools.format) if tools is not None else None
        self._specials = specials or {}  # control tokens of the call syntax, written out as text
        self._generated = bytearray()  # bytes of the generated tokens now in the cache
        self._text_matches_tokens = True
        self._prompt_in_cache = False
        self.n_gen = 0
        self.drafted = self.accepted = 0  # speculative decoding: draft tokens checked, and kept
        self.submitted_at = submitted_at
        self._t0: float | None = None
        self._t_prompt: float | None = None
        self._t_first: float | None = None
        self._t_last: float | None = None
        self._stats: dict[str, Any] = dict(
            prompt_tokens=len(prompt.tokens),
            dropped_messages=prompt.dropped,
            truncated_input=prompt.truncated,
            prompt_build_s=prompt.build_s,
            seed=seed,
            healed_text=prompt.healing.removed.decode("utf-8", "replace") if prompt.healing else "",
        )
        # The penalties should see the prompt's tail, but a grammar sampler must only see
        # generated tokens, so with a grammar the penalties start empty.
        last_n = request.sampling.repeat_last_n
        if sampler.grammar is None and last_n:
            for tok in prompt.tokens[-last_n:]:
                sampler.accept(tok)

    @property
    def last_prompt(self) -> list[int]:
        """The prompt's tokens as evaluated (for the generation span)."""
        return self.prompt.tokens

    @property
    def samples_after_prefill(self) -> bool:
        """Whether the last target token needs logits (a resumed sequence already holds its next token)."""
        return self.pending is None

    def started(self, reused: int, now: float) -> None:
        """It got a slot with ``reused`` tokens of its target already cached; prefill begins."""
        self.phase = PREFILL
        if self._t0 is None:  # the first start, not a resumption after preemption
            # The prompt was built just before; count that as part of the start, as the span shows it.
            self._t0 = now - self.prompt.build_s
            self._stats.update(reused_prompt_tokens=reused, queue_s=self._t0 - self.submitted_at)

    def prefilled(self, now: float) -> None:
        """Its whole target is in the cache: sampling (or decoding its pending token) comes next."""
        self.phase = DECODE
        if self._t_prompt is None:
            self._t_prompt = now
            self._prompt_in_cache = True

    def suspended(self, tokens: list[int], data: np.ndarray | None) -> None:
        """Preempted: its cached tokens were saved as ``data``; it waits to resume where it was."""
        if self.phase == DECODE:
            self.target = tokens  # the prompt and the answer so far, restored or recomputed on resume
        self.saved = (tokens, data)
        self.phase = WAITING
        self.slot = None
        self.preemptions += 1

    @property
    def healing_active(self) -> bool:
        return self.healing is not None and self.healing.active

    def on_token(self, tok: int) -> bool:
        """Take a sampled token: show its text, check stops and length; True when the request is finished."""
        if self.model.is_eog(tok):
            self.finish("stop")
            return True
        self.n_gen += 1
        piece = self.model.piece(tok) or self._specials.get(tok, b"")
        healing = self.healing if self.healing is not None and self.healing.active else None
        shown = healing.consume(piece) if healing is not None else piece  # the prompt holds the rest
        text, hit = self._stopper.feed(self._decoder.decode(shown))
        if self._calls is not None:
            text = self._calls.feed(text)
        now = time.perf_counter()
        self._t_last = now
        if self._t_first is None:
            self._t_first = now
        if text:
            self._parts.append(text)
            self.emit(Token(self.request_id, text, 1))
        if hit:
            self.finish("stop")
            return True
        self.pending = tok
        if self.n_gen >= self.max_new:
            self.finish("length")  # the pending token still goes into the cache: it holds the whole answer
            return True
        return False

    def cached(self, tok: int) -> None:
        """A generated token went into the cache."""
        piece = self.model.piece(tok)
        self._generated += piece
        if not piece:  # a control token: its text is not in the answer, so text and tokens part ways
            self._text_matches_tokens = False

    def cache_text(self) -> str | None:
        """The text the slot's tokens spell once this request leaves it, or None when unknown."""
        if not self._prompt_in_cache or self.prompt.text is None or not self._text_matches_tokens:
            return None
        try:
            return self.prompt.text + self._generated.decode("utf-8")
        except UnicodeDecodeError:  # a token split a character: fall back to re-tokenizing
            return None

    def finish(self, reason: FinishReason) -> None:
        """End the request: flush held text, build Done, tell the owner."""
        tail = self._stopper.flush() + self._decoder.decode(b"", final=True)  # empty after a stop string
        calls: tuple = ()
        if self._calls is not None and self.tools is not None:
            tail = self._calls.feed(tail)
            shown = "".join(self._parts) + tail
            content, calls = self.tools.format.parse(self._calls.text, self.tools.tools)
            if not calls:  # what was held back was no call after all
                tail += self._calls.held()
            elif content.startswith(shown):  # text after the calls
                tail += content[len(shown) :]
            if calls and reason == "stop":
                reason = "tool_calls"
        if tail:
            self._parts.append(tail)
            self.emit(Token(self.request_id, tail, 0))
        end = time.perf_counter()
        t0 = self._t0 if self._t0 is not None else end
        t_first, t_last, n_gen = self._t_first, self._t_last, self.n_gen
        gen_s = (t_last - t_first) if t_first is not None and t_last is not None else 0.0
        stats: dict[str, Any] = dict(reused_prompt_tokens=0, queue_s=t0 - self.submitted_at)
        stats.update(self._stats)
        text = content if calls else "".join(self._parts)
        self.done = Done(
            self.request_id,
            text,
            tool_calls=calls,
            stats=GenerationStats(
                **stats,
                prompt_eval_s=((self._t_prompt or end) - t0),
                completion_tokens=n_gen,
                time_to_first_token_s=(t_first - self.submitted_at) if t_first is not None else None,
                generation_s=gen_s,
                tokens_per_s=((n_gen - 1) / gen_s) if n_gen > 1 and gen_s > 0 else None,
                total_s=end - self.submitted_at,
                finish_reason=reason,
                model=self._model_name,
                draft_tokens=self.drafted,
                accepted_draft_tokens=self.accepted,
                sampled_on="device" if self.sampler.in_graph else "cpu",
            ),
        )
        # After length or cancel, the shown token still goes into the cache, as it would have if
        # generation had gone on (so the cache holds the whole answer for the next turn).
        keeps_token = self.pending is not None and self.phase == DECODE and reason in ("length", "cancelled")
        if not keeps_token:
            self.pending = None
        self.phase = TRAILING if keeps_token else DONE
        self.saved = None
        self.sampler.close()
        if not keeps_token:
            self.settled()

    def settled(self) -> None:
        """Done with the context too (its last token is in): the owner reports Done now, so a caller
        that goes on with the conversation finds the cache complete and the slot free."""
        self.phase = DONE
        if self.on_finish is not None:
            self.on_finish(self)

    def fail(self, error: EngineError) -> None:
        """End the request with an error (reported by the owner as Failed)."""
        self.error = error
        self.pending = None
        self.phase = DONE
        self.sampler.close()
        if self.on_finish is not None:
            self.on_finish(self)
