"""Speculative decoding, lossless: guess several tokens ahead, check them all in one llama_decode.

A *drafter* proposes the next few tokens; the step puts the sequence's pending token and the
draft into one batch with logits at every position, samples the real next token from each
position in turn with the sequence's own sampler, and keeps the draft only as far as the
sampled tokens agree with it. The first disagreement is itself a sampled token, so every step
yields at least one token (the one plain decoding would have given) and up to ``len(draft) + 1``.
The cache positions of rejected draft tokens are removed (``llama_memory_seq_rm``).

Why the output is unchanged:

* Greedy: each position's token is the argmax of the logits that plain decoding would compute
  for the same prefix, so the answer is the same token for token (llama.cpp gives bit-identical
  logits for a position whether it is decoded alone or in a batch of up to n_batch tokens on the
  CPU backend; the test checks the answers on the bundled model).
* Sampling: the drafts here are deterministic (an n-gram continuation, or a draft model's greedy
  choice), i.e. a draft distribution q that puts all its mass on one token d. The standard rule
  (Leviathan et al. 2023; Chen et al. 2023) accepts d with probability min(1, p(d)/q(d)) = p(d)
  and otherwise samples from the residual max(0, p - q), normalised, which is p with d removed
  and renormalised. Drawing x from p (the target's distribution after the whole chain: penalties,
  top-k, top-p, min-p, temperature) and accepting when x == d realises exactly that: acceptance
  has probability p(d), and given x != d, x is distributed as p restricted to the other tokens.
  So the step simply samples from each position with the sequence's sampler, which also keeps
  the repeat-penalty history, the grammar's state and the random stream in the same order as
  plain decoding (same seed, same tokens, as long as the logits are the same).

Speculation runs only while one sequence is active: with several streams the batch already
fills the machine (on a CPU each extra row costs compute the other streams need; on a GPU
batching already hides the per-token latency that speculation buys back), and a rejected draft
would slow every stream in the step. It is off for recurrent/hybrid models (a state per
sequence cannot be rolled back to a position) and while token healing restricts the first
tokens. Drafting adapts its length to how much was accepted and backs off when drafts keep
failing, so a task that copies nothing costs at most an occasional one-token draft.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from engine.errors import EngineError, GenerationError, ModelLoadError
from engine.runtime.context import NO_ROOM, NativeContext, decode_error
from engine.runtime.native import NativeModel
from engine.runtime.sequence import DECODE, Sequence
from engine.runtime.types import ModelConfig

if TYPE_CHECKING:
    from engine.runtime.slots import Slot

SpeculativeMode = Literal["off", "prompt_lookup", "draft"]
MODES: tuple[str, ...] = ("off", "prompt_lookup", "draft")

Fail = Callable[[Sequence, EngineError], None]


def verify(sample_at: Callable[[int], int], draft: list[int], take: Callable[[int, bool], bool]) -> int:
    """Check a draft: how many of its tokens were kept.

    ``sample_at(i)`` samples the real token after draft position i (position 0: after the pending
    token); ``take(token, matches_draft)`` hands it on and says whether the sequence has ended.
    Sampling stops at the first token that differs from the draft, which is handed on too: it is
    the residual sample of the acceptance rule (see the module's docstring).
    """
    for i in range(len(draft) + 1):
        tok = sample_at(i)
        hit = i < len(draft) and tok == draft[i]
        if take(tok, hit) or not hit:
            return i
    raise AssertionError("unreachable")  # position len(draft) is never a hit


class Drafter(Protocol):
    """Where drafts come from."""

    def propose(self, tokens: list[int], pending: int, k: int) -> list[int]: ...

    def close(self) -> None: ...


class PromptLookup:
    """Drafts by n-gram lookup over one sequence's tokens (its prompt and its answer so far).

    The latest earlier occurrence of the last n tokens (the longest n that occurs, from ``n_max``
    down to ``n_min``) and the tokens that followed it are the draft. An index from each n-gram to
    the position after its latest occurrence is kept up to date as tokens come, so a lookup costs
    a few dictionary probes however long the prompt is.
    """

    def __init__(self, n_min: int = 2, n_max: int = 4):
        self.n_min, self.n_max = n_min, n_max
        self.history: list[int] = []
        self._index: dict[tuple[int, ...], int] = {}
        self._indexed = 0  # positions p < _indexed have their n-grams ending at p - 1 in the index

    def extend(self, tokens: list[int]) -> None:
        """The sequence's tokens are now ``tokens`` (which extend what it held before)."""
        hist = self.history
        n_old = len(hist)
        if len(tokens) < n_old or tokens[: min(n_old, 8)] != hist[: min(n_old, 8)]:
            self.__init__(self.n_min, self.n_max)  # type: ignore[misc]  # another sequence: start over
            hist, n_old = self.history, 0
        hist.extend(tokens[n_old:])
        index, n_min, n_max = self._index, self.n_min, self.n_max
        for p in range(max(self._indexed, n_min), len(hist)):
            for n in range(n_min, min(n_max, p) + 1):
                index[tuple(hist[p - n : p])] = p
        self._indexed = len(hist)

    def propose(self, tokens: list[int], pending: int, k: int) -> list[int]:
        """Up to ``k`` tokens to follow ``tokens`` (those in the cache) and ``pending`` (sampled, not yet in)."""
        self.extend(tokens)
        self.history.append(pending)  # the pending token is the history's end for the lookup
        try:
            return self.draft(k)
        finally:
            self.history.pop()

    def close(self) -> None:
        pass

    def draft(self, k: int) -> list[int]:
        """Up to ``k`` tokens that may follow the history (none when its ending occurred nowhere before)."""
        hist = self.history
        end = len(hist)
        for n in range(min(self.n_max, end - 1), self.n_min - 1, -1):
            p = self._index.get(tuple(hist[end - n :]))
            if p is not None and p < end:
                return hist[p : p + k]
        return []


@dataclass
class Stats:
    """What speculation did, since the context was made (for tests and benchmarks)."""

    steps: int = 0  # verification steps (each one llama_decode)
    drafted: int = 0  # draft tokens put into batches
    accepted: int = 0  # of them, kept

    @property
    def acceptance(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0


class Speculator:
    """The speculative step for the batcher: used when exactly one sequence is decoding."""

    def __init__(
        self, ctx: NativeContext, drafter: Drafter | None = None, *, k_max: int = 16, k_start: int = 8
    ) -> None:
        self.ctx = ctx
        self._new_lookup = drafter is None  # prompt lookup starts a fresh index for each sequence
        self.drafter: Drafter = drafter if drafter is not None else PromptLookup()
        self.k_max = max(1, min(k_max, ctx.n_batch - 1))
        self.k_start = max(1, min(k_start, self.k_max))
        self.stats = Stats()
        self._seq: Sequence | None = None
        self._k = self.k_start
        self._misses = 0  # drafts in a row of which nothing was kept
        self._pause = 0  # steps left without drafting
        self._backoff = 4  # the next pause's length

    def _follow(self, seq: Sequence) -> None:
        if seq is not self._seq:
            self._seq = seq
            if self._new_lookup:
                self.drafter = PromptLookup()
            self._k, self._misses, self._pause, self._backoff = self.k_start, 0, 0, 4

    def _adapt(self, drafted: int, kept: int) -> None:
        """Longer drafts while they are kept whole, shorter when not; a pause after repeated misses."""
        if kept == drafted:
            self._k = min(self.k_max, self._k * 2)
        else:
            self._k = max(1, min(self._k, kept + 1))
        if kept:
            self._misses, self._backoff = 0, 4
            return
        self._misses += 1
        if self._misses >= 3:
            self._pause, self._backoff, self._misses = self._backoff, min(256, self._backoff * 2), 0

    def step(self, seq: Sequence, fail: Fail) -> bool:
        """One speculative step for ``seq`` if a draft is worth trying; False: the caller does a plain step."""
        slot = seq.slot
        if slot is None or seq.phase != DECODE or seq.pending is None or seq.healing_active:
            return False
        self._follow(seq)
        if self._pause > 0:
            self._pause -= 1
            return False
        pos = len(slot.tokens)  # where the pending token goes
        room = min(self._k, seq.cells - pos - 1, seq.max_new - seq.n_gen - 1, self.ctx.n_batch - 1)
        if room <= 0:
            return False
        draft = self.drafter.propose(slot.tokens, seq.pending, room)
        if not draft:
            return False
        return self._run(seq, slot, pos, draft, fail)

    def _run(self, seq: Sequence, slot: Slot, pos: int, draft: list[int], fail: Fail) -> bool:
        ctx, batch, sid = self.ctx, self.ctx.batch, slot.seq_id
        pending = seq.pending
        assert pending is not None  # checked by step()
        batch.clear()
        batch.add_one(pending, pos, sid, True)
        for i, tok in enumerate(draft):
            batch.add_one(tok, pos + 1 + i, sid, True)
        rc = ctx.decode_batch()
        if rc == NO_ROOM:
            return False  # nothing went in (one ubatch per decode); the plain step has its own remedy
        self.stats.steps += 1
        if rc:
            ctx.remove_from(pos, sid)
            fail(seq, decode_error(rc))
            return True
        seq.pending = None
        slot.tokens.append(pending)
        seq.cached(pending)
        kept = 0

        def take(tok: int, hit: bool) -> bool:
            if seq.on_token(tok):
                return True
            if hit:  # a kept draft token is in the cache already
                seq.pending = None
                slot.tokens.append(tok)
                seq.cached(tok)
            return False

        try:
            kept = verify(lambda i: seq.sampler.sample(ctx, i), draft, take)
        except EngineError as exc:
            fail(seq, exc)
        except Exception as exc:  # noqa: BLE001 - native trouble fails this sequence only
            fail(seq, GenerationError("Sampling failed.", detail=f"{type(exc).__name__}: {exc}"))
        finally:
            if len(slot.tokens) < pos + 1 + len(draft) and seq.slot is slot:
                ctx.remove_from(len(slot.tokens), sid)  # the rejected draft's positions
        self.stats.drafted += len(draft)
        self.stats.accepted += kept
        seq.drafted += len(draft)
        seq.accepted += kept
        self._adapt(len(draft), kept)
        return True

    def close(self) -> None:
        self.drafter.close()


class DraftModel:
    """Drafts with a second, smaller model of the same vocabulary: its greedy continuation.

    It keeps its own context with the sequence's tokens; each proposal removes what no longer
    agrees with them (the last rejected draft), evaluates what is new, then decodes ``k`` tokens
    one by one. The bundled model can serve as its own draft, which checks the plumbing (every
    draft is kept) but is no faster: the draft costs as much as the target.
    """

    def __init__(self, path: str, target: NativeModel, *, n_ctx: int, n_threads: int, n_gpu_layers: int = 0):
        self.model = NativeModel(path, n_gpu_layers=n_gpu_layers)
        try:
            if self.model.n_vocab != target.n_vocab or self.model.one_state_per_sequence:
                raise ModelLoadError(
                    f"The draft model '{path}' cannot draft for this model: "
                    + (
                        "its vocabulary differs."
                        if self.model.n_vocab != target.n_vocab
                        else "its state cannot be rolled back."
                    ),
                    hint="Choose a smaller model of the same family, or set speculative decoding to prompt_lookup.",
                )
            self.ctx = NativeContext(self.model, n_ctx=n_ctx, n_threads=n_threads, n_batch=512, n_seq_max=1)
        except BaseException:
            self.model.close()
            raise
        self.tokens: list[int] = []  # what its cache holds

    def propose(self, tokens: list[int], pending: int, k: int) -> list[int]:
        ctx, have = self.ctx, self.tokens
        want = len(tokens) + 1
        n = 0
        limit = min(len(have), want - 1)  # the last token is evaluated again, for its logits
        while n < limit and have[n] == (tokens[n] if n < len(tokens) else pending):
            n += 1
        if n < len(have):
            ctx.remove_from(n)
            del have[n:]
        while len(have) < want:
            start = len(have)
            chunk = [*tokens[start : start + ctx.n_batch], pending][: min(ctx.n_batch, want - start)]
            ctx.decode(chunk, start)
            have.extend(chunk)
        out: list[int] = []
        while True:
            tok = int(ctx.logits_row(-1).argmax())
            out.append(tok)
            if len(out) >= k or len(have) + 1 >= ctx.n_ctx:
                return out
            ctx.decode([tok], len(have))
            have.append(tok)

    def close(self) -> None:
        self.ctx.close()
        self.model.close()


def speculator(config: ModelConfig, model: NativeModel, ctx: NativeContext, n_threads: int) -> Speculator:
    """The speculator the model's settings ask for (``config.speculative`` is not "off")."""
    if config.speculative == "draft" and config.draft_model:
        drafter = DraftModel(
            config.draft_model, model, n_ctx=ctx.n_ctx, n_threads=n_threads, n_gpu_layers=config.n_gpu_layers
        )
        return Speculator(ctx, drafter)
    return Speculator(ctx)
