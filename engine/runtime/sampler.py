"""llama.cpp's native sampler chain, built from SamplingParams and optionally led by a GBNF grammar.

Sampling runs in llama.cpp's own samplers; only a grammar that refuses the freely sampled
token makes Python hand them the whole vocabulary. Three steps are done here instead, with
the same float32 arithmetic, because llama.cpp's generic versions cost more than the rest
of a small model's token (on a GPU, a large share of it):

* the repeat penalty touches only the (at most repeat_last_n) recent tokens rather than
  looking up every token of the vocabulary, in preallocated buffers;
* greedy decoding is an argmax over the logits row rather than a copy of the whole
  vocabulary into a candidate array;
* with top-k, the chain is handed only the tokens whose logit is within a margin of the
  highest, a set that holds the k best (the margin widens until it does): top-k keeps the same
  k tokens from it as from the whole vocabulary, and everything after top-k (top-p, min-p,
  temperature, dist) only ever sees those k, so the token drawn is the same.
  ``llama_sampler_sample`` instead copies the whole vocabulary into a candidate array for
  every token (about 100 µs for a 49k vocabulary, 250 µs for 128k), which is most of the
  sampling cost. The chain runs on that short array through ``llama_sampler_apply`` and
  ``llama_sampler_accept``, exactly the calls ``llama_sampler_sample`` makes.

On the device (``on_device``): llama.cpp can run the whole chain, penalties included, inside
the decode's own graph (its backend sampling), so a sequence's token comes back instead of its
logits row: on a GPU neither the row's copy to the host nor any sampling on the CPU is left.
The chain is then llama.cpp's own (the penalties sampler first, fed the prompt's tail like the
Python one), attached to the sequence id the sequence runs in while it runs (``attach`` and
``detach``; llama.cpp's server does the same per request), and sampled with
``llama_sampler_sample``, which reads the token the graph drew and accepts it. A chain that
the device cannot run whole is not attached: it then samples on the CPU, in llama.cpp. The
generator puts only greedy and top-k chains there (generator.sampled_briefly).
"""

from __future__ import annotations

import ctypes
import logging
import math
from collections import Counter, deque

import llama_cpp
import numpy as np

from engine.errors import GenerationError, InvalidRequestError
from engine.runtime.constrain import grammar_problem
from engine.runtime.context import NativeContext
from engine.runtime.grammar_check import check_limits
from engine.runtime.native import NativeModel, clear_recent_log, recent_errors, recent_log
from engine.runtime.types import SamplingParams

log = logging.getLogger(__name__)

_sample = llama_cpp.llama_sampler_sample  # looked up once: these run for every token
_apply = llama_cpp.llama_sampler_apply
_accept = llama_cpp.llama_sampler_accept
_byref = ctypes.byref
_flatnonzero = np.flatnonzero
_REFUSED = "does not have support for op"  # llama.cpp's warning for a sampler the device cannot run
_FIRST_MARGIN = 8.0  # logits within this of the highest hold the top 40 of a typical row


class SamplerChain:
    """llama.cpp's native sampler chain built from SamplingParams, optionally checked by a GBNF grammar.

    The grammar is kept out of the chain, as llama.cpp's own common sampler does: the chain
    samples freely, the grammar checks just that token, and only when it refuses is the
    whole vocabulary filtered (which costs tens of milliseconds a token). Its state only
    ever sees generated tokens the grammar allows: llama.cpp aborts the process on any other
    (an end-of-generation token it does not allow, or any token once it allows none).
    """

    def __init__(
        self,
        model: NativeModel,
        params: SamplingParams,
        seed: int,
        *,
        grammar: str | None = None,
        on_device: bool = False,
    ):
        if on_device and grammar is not None:
            raise ValueError("a grammar is checked on the CPU: its chain cannot run on the device")
        self.chain = self.grammar = None
        self.on_device = on_device  # llama.cpp's whole chain, run in the decode's graph once attached
        self._attached: tuple[NativeContext, int] | None = None  # (context, sequence id) while attached
        self.in_graph = False  # whether a token of it was drawn in the graph (for the request's stats)
        self.n_vocab = model.n_vocab
        self._greedy = params.temperature <= 0.0
        penalised = params.repeat_penalty != 1.0 and params.repeat_last_n > 0
        python_penalty = penalised and not on_device  # on the device, llama.cpp's penalties sampler leads the chain
        self._penalty = np.float32(params.repeat_penalty) if python_penalty else None
        self._recent: deque[int] = deque(maxlen=params.repeat_last_n if python_penalty else 1)
        self._counts: Counter[int] = Counter()  # how often each token occurs in _recent
        # The distinct tokens of _recent, packed at the front of _pen_ids (_pen_at: token -> index),
        # and scratch rows for penalising their logits without allocating.
        size = max(1, params.repeat_last_n if python_penalty else 1)
        self._pen_ids = np.zeros(size, dtype=np.intp)
        self._pen_at: dict[int, int] = {}
        self._pen_vals = np.zeros(size, dtype=np.float32)
        self._pen_mul = np.zeros(size, dtype=np.float32)
        self._pen_neg = np.zeros(size, dtype=bool)
        # Candidates cut by top-k (see the module's docstring); 0: the whole vocabulary goes to the chain.
        self._top_k = params.top_k if not self._greedy and 0 < params.top_k < self.n_vocab else 0
        self._margin = _FIRST_MARGIN
        self._top: np.ndarray | None = None
        self._top_array: llama_cpp.llama_token_data_array | None = None
        if grammar is not None:
            check_limits(grammar)  # llama.cpp's parser recurses per group: a deep one overflows the stack
            clear_recent_log()
            self.grammar = llama_cpp.llama_sampler_init_grammar(model.vocab, grammar.encode("utf-8"), b"root")
            if not self.grammar:
                problem = grammar_problem(grammar)
                raise InvalidRequestError(
                    f"The grammar could not be parsed{': ' + problem if problem else ''}.",
                    hint="Check it against llama.cpp's GBNF syntax; it needs a 'root' rule.",
                    detail=recent_errors(),
                )
            self._cur = np.zeros(self.n_vocab, dtype=_TOKEN_DATA)
            self._ids = np.arange(self.n_vocab, dtype=np.intc)
            self._one = (llama_cpp.llama_token_data * 1)()
        chain_params = llama_cpp.llama_sampler_chain_default_params()
        chain_params.no_perf = True
        self.chain = llama_cpp.llama_sampler_chain_init(chain_params)
        if on_device and penalised:
            penalties = llama_cpp.llama_sampler_init_penalties(
                model.n_vocab, params.repeat_last_n, params.repeat_penalty, 0.0, 0.0
            )
            llama_cpp.llama_sampler_chain_add(self.chain, penalties)
        for sampler in _samplers(model, params, seed):
            llama_cpp.llama_sampler_chain_add(self.chain, sampler)

    def accept(self, token: int) -> None:
        """Feed a token that is already in the context (the prompt) to the penalties; not with a grammar."""
        if self.grammar is not None:
            raise ValueError("a grammar's state must only see generated tokens")
        if self.on_device:
            _accept(self.chain, token)
        else:
            self._remember(token)

    @property
    def attached(self) -> bool:
        return self._attached is not None

    def attach(self, ctx: NativeContext, seq_id: int) -> bool:
        """Run the chain in ``ctx``'s graph for sequence ``seq_id`` (on_device chains only; the runtime thread,
        between decodes). False when the device cannot run it whole: it then samples on the CPU, in llama.cpp."""
        if not self.on_device or not ctx.backend_sampling:
            return False
        self.detach()
        clear_recent_log()
        ok = llama_cpp.llama_set_sampler(ctx.ctx, seq_id, self.chain)
        refused = [line.strip() for line in recent_log() if _REFUSED in line]
        if ok and not refused:
            self._attached = (ctx, seq_id)
            return True
        # A chain the device runs only in part would leave the rest without logits to work on.
        llama_cpp.llama_set_sampler(ctx.ctx, seq_id, None)
        self._renew()
        if not ctx.backend_sampling_refused:
            ctx.backend_sampling_refused = "; ".join(refused) or "llama.cpp did not take the sampler chain"
            log.warning("sampling runs on the CPU: %s", ctx.backend_sampling_refused)
        return False

    def detach(self) -> None:
        """Take the chain out of the context's graph (before the sequence id changes hands); it keeps its state
        (the penalties' recent tokens, the random generator) and samples on the CPU until attached again."""
        if self._attached is None:
            return
        self._let_go()
        self._renew()

    def _let_go(self) -> None:
        attached, self._attached = getattr(self, "_attached", None), None  # (a half-made chain has none)
        if attached is not None and attached[0].ctx:  # (a closed context has let go of it already)
            llama_cpp.llama_set_sampler(attached[0].ctx, attached[1], None)

    def _renew(self) -> None:
        # llama.cpp sets a chain up for one context once: a copy of it (state and all) can be attached again.
        copy = llama_cpp.llama_sampler_clone(self.chain)
        llama_cpp.llama_sampler_free(self.chain)
        self.chain = copy

    def _remember(self, token: int) -> None:
        # llama.cpp's penalties sampler: a ring of the last repeat_last_n tokens and their counts.
        if self._penalty is None:
            return
        recent, counts = self._recent, self._counts
        if len(recent) == recent.maxlen:
            old = recent[0]
            counts[old] -= 1
            if not counts[old]:
                del counts[old]
                self._forget_id(old)
        recent.append(token)
        if not counts[token]:
            self._pen_at[token] = len(self._pen_at)
            self._pen_ids[len(self._pen_at) - 1] = token
        counts[token] += 1

    def _forget_id(self, token: int) -> None:
        at, ids = self._pen_at, self._pen_ids
        i, last = at.pop(token), len(at)
        if i != last:  # the last one takes its place
            moved = int(ids[last])
            ids[i] = moved
            at[moved] = i

    def _penalise(self, logits: np.ndarray) -> None:
        """Apply the repeat penalty to the recent tokens' logits in place, as the penalties sampler
        would on the candidates (v * p where v <= 0, else v / p), with no allocation."""
        n = len(self._pen_at)
        ids, vals, mul, neg = self._pen_ids[:n], self._pen_vals[:n], self._pen_mul[:n], self._pen_neg[:n]
        penalty = self._penalty
        assert penalty is not None  # only called with tokens to penalise
        logits.take(ids, out=vals)
        np.less_equal(vals, 0, out=neg)
        np.multiply(vals, penalty, out=mul)
        np.divide(vals, penalty, out=vals)
        np.copyto(vals, mul, where=neg)
        logits.put(ids, vals)

    def _sample_top(self, logits: np.ndarray) -> int:
        """The chain's token, drawn from the tokens within a margin of the best that include the top k."""
        k = self._top_k
        best = logits.max()
        margin = self._margin
        while True:
            ids = _flatnonzero(logits >= best - margin)
            n = len(ids)
            if n >= k or margin > 1e30:
                break
            margin *= 4.0
        if n > 8 * k and margin > 1.0:  # far more than needed: start narrower next time
            margin *= 0.5
        self._margin = margin
        top, array = self._top, self._top_array
        if top is None or array is None:
            top = self._top = np.zeros(self.n_vocab, dtype=_TOKEN_DATA)
            array = self._top_array = llama_cpp.llama_token_data_array(
                data=top.ctypes.data_as(llama_cpp.llama_token_data_p), size=0, selected=-1, sorted=False
            )
        cand = top[:n]
        cand["id"] = ids
        cand["logit"] = logits[ids]
        cand["p"] = 0.0
        array.data = top.ctypes.data_as(llama_cpp.llama_token_data_p)  # type: ignore[assignment]  # (a sampler may move it)
        array.size, array.selected, array.sorted = n, -1, False
        _apply(self.chain, _byref(array))
        if not 0 <= array.selected < array.size:
            raise GenerationError("No token could be sampled.", detail=f"selected index {array.selected}")
        token = int(array.data[array.selected].id)
        _accept(self.chain, token)  # as llama_sampler_sample does
        return token

    def sample(self, ctx: NativeContext, index: int = -1) -> int:
        """Sample the next token from the logits of batch position ``index`` (default: the last one
        decoded) and accept it (into the grammar too)."""
        if self.on_device:  # the token the graph drew, once attached; else llama.cpp's chain on the logits row
            if self._attached is not None:
                self.in_graph = True
            return _sample(self.chain, ctx.ctx, index)
        logits = None
        if self._pen_at:  # penalise in place, as the penalties sampler would on the candidates
            logits = ctx.logits_row(index)
            self._penalise(logits)
        if self.grammar is None:
            if self._greedy:  # llama.cpp's greedy sampler: the first highest logit
                if logits is None:
                    logits = ctx.logits_row(index)
                token = int(logits.argmax())
            elif self._top_k:
                token = self._sample_top(ctx.logits_row(index) if logits is None else logits)
            else:
                token = _sample(self.chain, ctx.ctx, index)  # reads the penalised logits
        else:
            if logits is None:
                logits = ctx.logits_row(index)
            token = self._pick(logits, constrained=False)
            if not self._grammar_allows(token):
                token = self._pick(logits, constrained=True)
            llama_cpp.llama_sampler_accept(self.grammar, token)  # allowed: _grammar_allows or _pick checked it
        self._remember(token)
        return token

    def _pick(self, logits, *, constrained: bool) -> int:
        cur = self._cur
        cur["id"] = self._ids
        cur["logit"] = logits
        cur["p"] = 0.0
        array = llama_cpp.llama_token_data_array(
            data=cur.ctypes.data_as(llama_cpp.llama_token_data_p), size=self.n_vocab, selected=-1, sorted=False
        )
        if constrained:
            llama_cpp.llama_sampler_apply(self.grammar, ctypes.byref(array))
            if not np.isfinite(cur["logit"]).any():
                raise _dead_end()
        llama_cpp.llama_sampler_apply(self.chain, ctypes.byref(array))
        if not 0 <= array.selected < array.size:
            raise GenerationError("No token could be sampled.", detail=f"selected index {array.selected}")
        chosen = array.data[array.selected]
        if constrained and not math.isfinite(chosen.logit):  # the chain fell back on a refused token
            raise _dead_end()
        return int(chosen.id)

    def _grammar_allows(self, token: int) -> bool:
        one = self._one
        one[0].id, one[0].logit, one[0].p = token, 0.0, 0.0  # type: ignore[assignment]  # ctypes takes an int
        array = llama_cpp.llama_token_data_array(
            data=ctypes.cast(one, llama_cpp.llama_token_data_p), size=1, selected=-1, sorted=False
        )
        llama_cpp.llama_sampler_apply(self.grammar, ctypes.byref(array))
        return math.isfinite(one[0].logit)

    def close(self) -> None:
        self._let_go()  # the context must not keep a freed chain
        if getattr(self, "chain", None):
            llama_cpp.llama_sampler_free(self.chain)
            self.chain = None
        if getattr(self, "grammar", None):
            llama_cpp.llama_sampler_free(self.grammar)
            self.grammar = None

    def __del__(self) -> None:
        self.close()


def _dead_end() -> InvalidRequestError:
    """The grammar allows no token (accepting one anyway would abort the process)."""
    return InvalidRequestError(
        "The grammar allows nothing here: after what the model has written so far, it "
        "accepts neither more text nor the end of the answer.",
        hint="Check the grammar: every way through its rules must be able to end.",
    )


# llama_token_data as numpy sees it (int32 id, float logit, float p), to hand llama.cpp a whole vocabulary.
_TOKEN_DATA = np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)], align=True)


def _samplers(model: NativeModel, params: SamplingParams, seed: int) -> list:
    """The chain's samplers for these settings, in llama.cpp's usual order; the repeat penalty, which
    comes first there, is applied by SamplerChain.sample before the chain runs."""
    out = []
    if params.temperature <= 0.0:
        return [llama_cpp.llama_sampler_init_greedy()]
    if params.top_k > 0:
        out.append(llama_cpp.llama_sampler_init_top_k(params.top_k))
    if params.top_p < 1.0:
        out.append(llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
    if params.min_p > 0.0:
        out.append(llama_cpp.llama_sampler_init_min_p(params.min_p, 1))
    out.append(llama_cpp.llama_sampler_init_temp(params.temperature))
    out.append(llama_cpp.llama_sampler_init_dist(seed))
    return out
