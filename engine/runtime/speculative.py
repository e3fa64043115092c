"""Speculative decoding, lossless: guess several tokens ahead, check them all in one llama_decode.

A *drafter* proposes the next few tokens; the step puts the sequence's pending token and the
draft into one batch with logits at every position, samples the real next token from each
position in turn with the sequence's own sampler, and keeps the draft only as far as the
sampled tokens agree with it. The first disagreement is itself a sampled token, so every step
yields at least one token (the one plain decoding would have given) and up to ``len(draft) + 1``.
The cache positions of rejected draft tokens are removed (``llama_memory_seq_rm``).

Why the output is unchanged:

* Greedy: each position's token is the argmax of the logits of the same prefix that plain
  decoding would compute, so the answer is the same token for token wherever llama.cpp's logits
  for a position are the same evaluated alone and in a batch. On a CPU they are exactly the same
  when llama.cpp is built without llamafile's tinyBLAS kernels (packaging/setup.sh builds it so)
  and flash attention is off, which "auto" becomes while speculative decoding runs on a CPU
  (kv_cache.effective_flash_attention). With tinyBLAS, CPU flash attention or a GPU's kernels
  (chosen by batch size) they differ by rounding, up to about 0.7 in a logit on the bundled model
  (docs/benchmarks.md), and a long answer can part from plain decoding at a near-tie.
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

How far to draft is chosen by ``Pace`` from measured step times: on a GPU extra rows are
nearly free and long drafts pay; on a CPU each row costs compute and drafting pays only while
drafts are mostly kept. Prompt lookup's drafts are paced by kind (the length of the match they
follow, and whether the last draft was kept whole), so a code block being copied is drafted far
while the translated sentences around it, whose 2-token matches mostly miss, are not.

Speculation runs only while one sequence is active: with several streams the batch already
fills the machine (on a CPU each extra row costs compute the other streams need; on a GPU
batching already hides the per-token latency that speculation buys back), and a rejected draft
would slow every stream in the step. It is off for recurrent/hybrid models (a state per
sequence cannot be rolled back to a position) and while token healing restricts the first
tokens. Drafting backs off when drafts are not expected to pay, so a task that copies nothing
costs at most an occasional short probe.
"""

from __future__ import annotations

import time
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
        self.matched = 0  # the length of the n-gram the last draft followed (0: none)
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
                self.matched = n
                return hist[p : p + k]
        self.matched = 0
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


@dataclass
class _Kind:
    """What Pace knows of one kind of draft."""

    a: float  # the chance a draft token is kept
    pause: int = 0  # times the kind is passed over before it is drafted again
    backoff: int = 4  # the next pause


class Pace:
    """How far to draft: the draft length that yields the most tokens a second, from measured costs.

    A step with ``k`` draft tokens costs about ``t_one + k * t_row`` (a plain step, plus the extra
    rows) and yields ``1 + a + ... + a**k`` tokens on average, ``a`` being the chance that a draft
    token is kept (each kept token is followed by the next draft's check). On a GPU an extra row
    costs next to nothing and long drafts pay; on a CPU rows cost compute, so drafting pays only
    while drafts are mostly kept. When no length is expected to beat a plain step, drafting pauses
    (longer after each pause that ended in another miss) and then tries one short draft to look again.
    """

    def __init__(self, k_max: int, alpha: float = 0.15, *, costs: tuple[float, float] | None = None):
        """``costs``: (plain step, extra row) in seconds, held fixed instead of measured (tests, known devices)."""
        self.k_max, self.alpha = k_max, alpha
        self.fixed = costs is not None
        self.t_one: float | None = costs[0] if costs else None  # seconds of a plain step
        self.t_row: float | None = costs[1] if costs else None  # extra seconds per draft row
        # Per kind of draft (``kind``: how long a match it followed, whether the last draft was kept whole;
        # None for all alike): the chance a draft token is kept, how many more times the kind is passed over
        # before it is drafted again, and the next such pause. A copied code block and a translated sentence
        # are told apart.
        self._kinds: dict[object, _Kind] = {}
        self.kind: object = None  # the kind the next choose() and observe() are about

    A0 = 0.7  # a kind's first estimate (optimistic, to try)

    @property
    def _now(self) -> _Kind:
        return self._kinds.setdefault(self.kind, _Kind(self.A0))

    @property
    def a(self) -> float:
        """The chance a draft token of the current kind is kept."""
        return self._now.a

    @property
    def pause(self) -> int:
        """How many more times the current kind is passed over (a plain step each) before it is drafted again."""
        return self._now.pause

    def restart(self) -> None:
        """A new sequence: costs carry over (same model and machine), the acceptance starts again."""
        self._kinds.clear()
        self.kind = None

    def _ema(self, old: float | None, new: float) -> float:
        return new if old is None else old + self.alpha * (new - old)

    def observe(self, rows: int, seconds: float, drafted: int, kept: int) -> None:
        """A step of ``rows`` batch rows took ``seconds``; ``kept`` of its ``drafted`` tokens were kept."""
        if self.fixed:
            seconds = self.t_one + (rows - 1) * self.t_row  # type: ignore[operator]  # both set
        if self.t_one is not None and seconds > 20 * (self.t_one + rows * (self.t_row or 0.0)):
            return  # not one step's cost: the sequence waited (other streams ran, or it was preempted)
        if rows <= 1:
            self.t_one = self._ema(self.t_one, seconds)
            return
        if self.t_one is not None:
            self.t_row = self._ema(self.t_row, max(0.0, seconds - self.t_one) / (rows - 1))
        now = self._now
        for x in [1.0] * kept + ([0.0] if kept < drafted else []):
            now.a += self.alpha * (x - now.a)
        if kept:
            now.backoff = 4

    def _rate(self, k: int) -> float:
        """Tokens a second expected from a draft of k tokens (k = 0: plain decoding)."""
        a, t_one, t_row = self.a, self.t_one or 1.0, self.t_row if self.t_row is not None else 0.0
        tokens = float(k + 1) if a >= 1.0 else (1.0 - a ** (k + 1)) / (1.0 - a)
        return tokens / (t_one + k * t_row)

    def choose(self) -> int:
        """How many tokens to draft for the next step (0: a plain step)."""
        if self.t_one is None:
            return 0  # the first step measures what a plain one costs
        now = self._now
        if now.pause > 0:
            now.pause -= 1
            return 2 if now.pause == 0 else 0  # after the pause, a short draft looks again
        best = max(range(self.k_max + 1), key=self._rate)
        if best == 0:
            now.pause, now.backoff = now.backoff, min(256, now.backoff * 2)
        return best


class Speculator:
    """The speculative step for the batcher: used when exactly one sequence is decoding."""

    def __init__(self, ctx: NativeContext, drafter: Drafter | None = None, *, k_max: int = 16) -> None:
        self.ctx = ctx
        self._new_lookup = drafter is None  # prompt lookup starts a fresh index for each sequence
        self.drafter: Drafter = drafter if drafter is not None else PromptLookup()
        self.k_max = max(1, min(k_max, ctx.n_batch - 1))
        self.stats = Stats()
        self._seq: Sequence | None = None
        self.pace = Pace(self.k_max)
        self._mark: tuple[float, int, int, int] | None = None  # the last step: start, rows, drafted, kept
        self._whole = False  # whether the last draft was kept whole (a copied span goes on)

    def _follow(self, seq: Sequence) -> None:
        if seq is not self._seq:
            self._seq = seq
            self._mark = None
            if self._new_lookup:
                self.drafter = PromptLookup()
            self.pace.restart()
            self._whole = False

    def _measure(self, now: float) -> None:
        """The last step's whole cost (decode, sampling, the runtime's work around it) is the time since it began."""
        if self._mark is not None:
            start, rows, drafted, kept = self._mark
            self.pace.observe(rows, now - start, drafted, kept)
            self._mark = None

    def step(self, seq: Sequence, fail: Fail) -> bool:
        """One speculative step for ``seq`` if a draft is worth trying; False: the caller does a plain step."""
        slot = seq.slot
        if slot is None or seq.phase != DECODE or seq.pending is None or seq.healing_active:
            return False
        self._follow(seq)
        now = time.perf_counter()
        self._measure(now)
        self._mark = (now, 1, 0, 0)  # a plain step, unless a draft goes in below
        pos = len(slot.tokens)  # where the pending token goes
        pace = self.pace
        if pace.t_one is None:
            return False  # the first step measures what a plain one costs
        room = min(self.k_max, seq.cells - pos - 1, seq.max_new - seq.n_gen - 1, self.ctx.n_batch - 1)
        if room <= 0:
            return False
        if isinstance(self.drafter, PromptLookup):
            draft = self.drafter.propose(slot.tokens, seq.pending, room)
            if not draft:
                return False
            pace.kind = (self.drafter.matched, self._whole)  # how well drafts of this kind have done
            draft = draft[: pace.choose()]
        else:  # a draft model's proposals cost their own decodes: ask for as many as will be checked
            pace.kind = None
            k = min(room, pace.choose())
            draft = self.drafter.propose(slot.tokens, seq.pending, k) if k > 0 else []
        if not draft:
            return False
        self._mark = (now, 1 + len(draft), len(draft), 0)
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
        self._whole = kept == len(draft)
        self.stats.drafted += len(draft)
        self.stats.accepted += kept
        seq.drafted += len(draft)
        seq.accepted += kept
        self._mark = (self._mark[0], 1 + len(draft), len(draft), kept) if self._mark else None
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

    def __init__(
        self,
        path: str,
        target: NativeModel,
        *,
        n_ctx: int,
        n_threads: int,
        n_gpu_layers: int = 0,
        flash_attention: str = "auto",
    ):
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
            self.ctx = NativeContext(
                self.model, n_ctx=n_ctx, n_threads=n_threads, n_batch=512, n_seq_max=1, flash_attention=flash_attention
            )
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
            config.draft_model,
            model,
            n_ctx=ctx.n_ctx,
            n_threads=n_threads,
            n_gpu_layers=config.n_gpu_layers,
            flash_attention=ctx.flash_attention,  # the same arithmetic as the target's: its drafts are kept
        )
        return Speculator(ctx, drafter)
    return Speculator(ctx)
