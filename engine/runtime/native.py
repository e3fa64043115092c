"""Thin owning wrappers over llama-cpp-python's low-level (ctypes) API.

These objects hold native handles and are not thread-safe: the runtime's
generator thread creates, uses and frees them. Nothing here knows about
conversations or templates; see ``generator.py`` for that.
"""

from __future__ import annotations

import collections
import ctypes
import logging
import math
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import llama_cpp
import numpy as np

from engine.errors import GenerationError, InvalidRequestError, ModelLoadError
from engine.runtime.constrain import grammar_problem
from engine.runtime.types import SamplingParams

log = logging.getLogger(__name__)

_recent_log: collections.deque[str] = collections.deque(maxlen=40)
_backend_lock = threading.Lock()
_backend_ready = False


_GGML_LEVELS = {2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR}  # ggml.h: 1 DEBUG, 2 INFO, 3 WARN, 4 ERROR
_last_level = [logging.DEBUG]


@llama_cpp.llama_log_callback
def _on_llama_log(level: int, text: bytes, _user_data: ctypes.c_void_p) -> None:
    # llama.cpp logs a lot at INFO; keep that at DEBUG, out of the user's way, but
    # remember the tail so a failed load can say what llama.cpp complained about.
    line = text.decode("utf-8", errors="replace")
    _recent_log.append(line)
    if level != 5:  # 5 continues the previous line at its level
        _last_level[0] = _GGML_LEVELS.get(level, logging.DEBUG) if level >= 3 else logging.DEBUG
    log.log(_last_level[0], "%s", line.rstrip())


def ensure_backend() -> None:
    """Initialise llama.cpp once per process and route its log into Python logging."""
    global _backend_ready
    with _backend_lock:
        if not _backend_ready:
            llama_cpp.llama_log_set(_on_llama_log, ctypes.c_void_p(0))
            llama_cpp.llama_backend_init()
            _backend_ready = True


def _recent_errors() -> str:
    lines = [ln.strip() for ln in _recent_log if ln.strip()]
    interesting = [ln for ln in lines if "error" in ln.lower() or "failed" in ln.lower()]
    return "\n".join((interesting or lines)[-6:])


def default_threads() -> int:
    """One thread per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class NativeModel:
    """A loaded llama_model and its vocabulary."""

    def __init__(
        self,
        path: str | Path,
        *,
        n_gpu_layers: int = 0,
        progress: Callable[[float], bool] | None = None,
    ):
        ensure_backend()
        self.path = str(path)
        if not os.path.isfile(self.path):
            raise ModelLoadError(f"The model file '{self.path}' does not exist.")
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = 999 if n_gpu_layers < 0 else n_gpu_layers
        params.use_mmap = True
        self._progress_cb = None
        if progress is not None:
            # Kept on self: llama.cpp calls it during load, the ctypes object must outlive that.
            self._progress_cb = llama_cpp.llama_progress_callback(
                lambda fraction, _ud: bool(progress(float(fraction)))
            )
            params.progress_callback = self._progress_cb
        _recent_log.clear()
        model = llama_cpp.llama_model_load_from_file(self.path.encode("utf-8"), params)
        if not model:
            raise ModelLoadError(
                f"llama.cpp could not load '{Path(self.path).name}': the file is corrupt, "
                "truncated, or not a GGUF model this version of llama.cpp supports.",
                detail=_recent_errors(),
            )
        self.model = model
        self.vocab = llama_cpp.llama_model_get_vocab(model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self._pieces: dict[int, bytes] = {}
        self._all_pieces: tuple[bytes, ...] | None = None
        self._piece_buf = ctypes.create_string_buffer(256)

    # Metadata ----------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        """A GGUF metadata value as text, or None if the key is absent."""
        size = 4096
        while True:
            buf = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_model_meta_val_str(self.model, key.encode(), buf, size)
            if n < 0:
                return None
            if n < size:
                return buf.value.decode("utf-8", errors="replace")
            size = n + 1

    def chat_template(self) -> str | None:
        raw = llama_cpp.llama_model_chat_template(self.model, None)
        return raw.decode("utf-8", errors="replace") if raw else None

    def description(self) -> str:
        buf = ctypes.create_string_buffer(256)
        llama_cpp.llama_model_desc(self.model, buf, 256)
        return buf.value.decode("utf-8", errors="replace")

    @property
    def n_params(self) -> int:
        return int(llama_cpp.llama_model_n_params(self.model))

    @property
    def size_bytes(self) -> int:
        return int(llama_cpp.llama_model_size(self.model))

    @property
    def n_ctx_train(self) -> int:
        return int(llama_cpp.llama_model_n_ctx_train(self.model))

    # Vocabulary --------------------------------------------------------------------

    @property
    def bos(self) -> int:
        return llama_cpp.llama_vocab_bos(self.vocab)

    @property
    def eos(self) -> int:
        return llama_cpp.llama_vocab_eos(self.vocab)

    @property
    def adds_bos(self) -> bool:
        return bool(llama_cpp.llama_vocab_get_add_bos(self.vocab))

    def token_text(self, token: int) -> str:
        raw = llama_cpp.llama_vocab_get_text(self.vocab, token)
        return raw.decode("utf-8", errors="replace") if raw else ""

    def is_eog(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self.vocab, token))

    def tokenize(self, text: str, *, add_special: bool, parse_special: bool) -> list[int]:
        data = text.encode("utf-8")
        n_max = len(data) + 8
        buf = (llama_cpp.llama_token * n_max)()
        n = llama_cpp.llama_tokenize(self.vocab, data, len(data), buf, n_max, add_special, parse_special)
        if n < 0:
            n_max = -n
            buf = (llama_cpp.llama_token * n_max)()
            n = llama_cpp.llama_tokenize(self.vocab, data, len(data), buf, n_max, add_special, parse_special)
            if n < 0:
                raise GenerationError("The text could not be tokenized.", detail=f"llama_tokenize returned {n}")
        return buf[:n]

    def all_pieces(self) -> tuple[bytes, ...]:
        """Every token's bytes, indexed by token id (built on the first call, about 60 ms, then kept)."""
        if self._all_pieces is None:
            self._all_pieces = tuple(self.piece(token) for token in range(self.n_vocab))
        return self._all_pieces

    def piece(self, token: int) -> bytes:
        """The bytes a token stands for (control tokens render as nothing); cached."""
        cached = self._pieces.get(token)
        if cached is not None:
            return cached
        n = llama_cpp.llama_token_to_piece(self.vocab, token, self._piece_buf, 256, 0, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, -n, 0, False)
            value = buf.raw[:n]
        else:
            value = self._piece_buf.raw[:n]
        self._pieces[token] = value
        return value

    def detokenize(self, tokens: Sequence[int]) -> str:
        """The text of tokens with special tokens written out (e.g. '<|im_start|>'), as the model saw them."""
        if not tokens:
            return ""
        array = (llama_cpp.llama_token * len(tokens))(*tokens)
        size = max(64, len(tokens) * 16)
        for _ in range(2):
            buf = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_detokenize(self.vocab, array, len(tokens), buf, size, False, True)
            if n >= 0:
                return buf.raw[:n].decode("utf-8", "replace")
            size = -n + 1
        raise GenerationError("The prompt could not be turned back into text.")

    def close(self) -> None:
        if getattr(self, "model", None):
            llama_cpp.llama_model_free(self.model)
            self.model = None

    def __del__(self) -> None:
        self.close()


class NativeContext:
    """A llama_context (the KV cache) for one model, with a reusable batch."""

    def __init__(self, model: NativeModel, *, n_ctx: int, n_threads: int, n_batch: int = 512, n_seq_max: int = 1):
        self.model = model
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = n_batch
        params.n_ubatch = n_batch
        params.n_seq_max = n_seq_max
        params.n_threads = n_threads
        params.n_threads_batch = n_threads
        params.no_perf = True
        _recent_log.clear()
        ctx = llama_cpp.llama_init_from_model(model.model, params)
        if not ctx:
            raise ModelLoadError(
                f"llama.cpp could not create a context of {n_ctx} tokens for this model; "
                "try a smaller context size.",
                detail=_recent_errors(),
            )
        self.ctx = ctx
        self.memory = llama_cpp.llama_get_memory(ctx)
        self.n_ctx = int(llama_cpp.llama_n_ctx(ctx))
        self.n_batch = n_batch
        self.n_threads = n_threads
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, n_seq_max)
        self._neg_inf = None  # a row of -inf logits, made on first use by restrict_logits

    def decode(self, tokens: Sequence[int], start_pos: int, seq_id: int = 0) -> None:
        """Evaluate tokens at positions start_pos.. in one sequence; logits for the last one."""
        n = len(tokens)
        if n == 0 or n > self.n_batch:
            raise ValueError(f"decode takes 1..{self.n_batch} tokens, got {n}")
        b = self._batch
        b.n_tokens = n
        for i, tok in enumerate(tokens):
            b.token[i] = tok
            b.pos[i] = start_pos + i
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = seq_id
            b.logits[i] = 0
        b.logits[n - 1] = 1
        rc = llama_cpp.llama_decode(self.ctx, b)
        if rc != 0:
            reason = {1: "no room left in the KV cache", 2: "aborted"}.get(rc, f"error code {rc}")
            raise GenerationError(
                "llama.cpp failed while evaluating the prompt.", detail=f"llama_decode: {reason}"
            )

    def restrict_logits(self, allowed: Sequence[int]) -> None:
        """Make every token outside ``allowed`` impossible for the next sample (last decoded position)."""
        n_vocab = self.model.n_vocab
        logits = llama_cpp.llama_get_logits_ith(self.ctx, -1)
        if not logits:
            raise GenerationError("There are no logits to sample from.", detail="llama_get_logits_ith failed")
        keep = [(t, logits[t]) for t in allowed]
        if self._neg_inf is None:
            self._neg_inf = (ctypes.c_float * n_vocab)(*([float("-inf")] * n_vocab))
        ctypes.memmove(logits, self._neg_inf, ctypes.sizeof(self._neg_inf))
        for t, value in keep:
            logits[t] = value

    def remove_from(self, pos: int, seq_id: int = 0) -> bool:
        """Drop a sequence's cached tokens at positions >= pos; False if the model cannot."""
        return bool(llama_cpp.llama_memory_seq_rm(self.memory, seq_id, pos, -1))

    def clear(self) -> None:
        llama_cpp.llama_memory_clear(self.memory, True)

    def close(self) -> None:
        if getattr(self, "ctx", None):
            llama_cpp.llama_batch_free(self._batch)
            llama_cpp.llama_free(self.ctx)
            self.ctx = None

    def __del__(self) -> None:
        self.close()


class SamplerChain:
    """llama.cpp's native sampler chain built from SamplingParams, optionally checked by a GBNF grammar.

    The grammar is kept out of the chain, as llama.cpp's own common sampler does: the chain
    samples freely, the grammar checks just that token, and only when it refuses is the
    whole vocabulary filtered (which costs tens of milliseconds a token). Its state only
    ever sees generated tokens: llama.cpp aborts on one the grammar does not allow.
    """

    def __init__(self, model: NativeModel, params: SamplingParams, seed: int, *, grammar: str | None = None):
        self.chain = self.grammar = None
        self.n_vocab = model.n_vocab
        if grammar is not None:
            _recent_log.clear()
            self.grammar = llama_cpp.llama_sampler_init_grammar(model.vocab, grammar.encode("utf-8"), b"root")
            if not self.grammar:
                problem = grammar_problem(grammar)
                raise InvalidRequestError(f"The grammar could not be parsed{': ' + problem if problem else ''}.",
                                          hint="Check it against llama.cpp's GBNF syntax; it needs a 'root' rule.",
                                          detail=_recent_errors())
            self._cur = np.zeros(self.n_vocab, dtype=_TOKEN_DATA)
            self._ids = np.arange(self.n_vocab, dtype=np.intc)
            self._one = (llama_cpp.llama_token_data * 1)()
        chain_params = llama_cpp.llama_sampler_chain_default_params()
        chain_params.no_perf = True
        self.chain = llama_cpp.llama_sampler_chain_init(chain_params)
        for sampler in _samplers(model, params, seed):
            llama_cpp.llama_sampler_chain_add(self.chain, sampler)

    def accept(self, token: int) -> None:
        """Feed a token that is already in the context (the prompt) to the penalties; not with a grammar."""
        if self.grammar is not None:
            raise ValueError("a grammar's state must only see generated tokens")
        llama_cpp.llama_sampler_accept(self.chain, token)

    def sample(self, ctx: NativeContext) -> int:
        """Sample the next token from the last logits and accept it (into the grammar too)."""
        if self.grammar is None:
            return int(llama_cpp.llama_sampler_sample(self.chain, ctx.ctx, -1))  # accepts it as well
        ptr = llama_cpp.llama_get_logits_ith(ctx.ctx, -1)
        if not ptr:
            raise GenerationError("There are no logits to sample from.", detail="llama_get_logits_ith failed")
        logits = np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))
        token = self._pick(logits, constrained=False)
        if not self._grammar_allows(token):
            token = self._pick(logits, constrained=True)
        llama_cpp.llama_sampler_accept(self.grammar, token)
        llama_cpp.llama_sampler_accept(self.chain, token)
        return token

    def _pick(self, logits, *, constrained: bool) -> int:
        cur = self._cur
        cur["id"] = self._ids
        cur["logit"] = logits
        cur["p"] = 0.0
        array = llama_cpp.llama_token_data_array(
            data=cur.ctypes.data_as(llama_cpp.llama_token_data_p), size=self.n_vocab, selected=-1, sorted=False)
        if constrained:
            llama_cpp.llama_sampler_apply(self.grammar, ctypes.byref(array))
        llama_cpp.llama_sampler_apply(self.chain, ctypes.byref(array))
        if not 0 <= array.selected < array.size:
            raise GenerationError("No token could be sampled.", detail=f"selected index {array.selected}")
        return int(array.data[array.selected].id)

    def _grammar_allows(self, token: int) -> bool:
        one = self._one
        one[0].id, one[0].logit, one[0].p = token, 0.0, 0.0
        array = llama_cpp.llama_token_data_array(
            data=ctypes.cast(one, llama_cpp.llama_token_data_p), size=1, selected=-1, sorted=False)
        llama_cpp.llama_sampler_apply(self.grammar, ctypes.byref(array))
        return math.isfinite(one[0].logit)

    def close(self) -> None:
        if getattr(self, "chain", None):
            llama_cpp.llama_sampler_free(self.chain)
            self.chain = None
        if getattr(self, "grammar", None):
            llama_cpp.llama_sampler_free(self.grammar)
            self.grammar = None

    def __del__(self) -> None:
        self.close()


# llama_token_data as numpy sees it (int32 id, float logit, float p), to hand llama.cpp a whole vocabulary.
_TOKEN_DATA = np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)], align=True)


def _samplers(model: NativeModel, params: SamplingParams, seed: int) -> list:
    """The chain's samplers for these settings, in llama.cpp's usual order."""
    out = []
    if params.repeat_penalty != 1.0 and params.repeat_last_n != 0:
        out.append(llama_cpp.llama_sampler_init_penalties(
            model.n_vocab, params.repeat_last_n, params.repeat_penalty, 0.0, 0.0))
    if params.temperature <= 0.0:
        return out + [llama_cpp.llama_sampler_init_greedy()]
    if params.top_k > 0:
        out.append(llama_cpp.llama_sampler_init_top_k(params.top_k))
    if params.top_p < 1.0:
        out.append(llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
    if params.min_p > 0.0:
        out.append(llama_cpp.llama_sampler_init_min_p(params.min_p, 1))
    out.append(llama_cpp.llama_sampler_init_temp(params.temperature))
    out.append(llama_cpp.llama_sampler_init_dist(seed))
    return out
