"""The llama_context: one KV cache shared by several sequences, a numpy-backed batch, and the
per-sequence operations (remove, copy, save, restore) that continuous batching and saved
conversation states are built on. Not thread-safe: the runtime's thread owns it.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence

import llama_cpp
import numpy as np

from engine.errors import GenerationError, ModelLoadError
from engine.runtime.kv_cache import FLASH_ATTN_TYPES, GGML_TYPE_IDS, QUANTIZED_V_NEEDS_FA, combination_problem
from engine.runtime.native import NativeModel, clear_recent_log, recent_errors

# Looked up once: these run for every decode step.
_decode = llama_cpp.llama_decode
_logits_ith = llama_cpp.llama_get_logits_ith
NO_ROOM = 1  # llama_decode's code for "no free cells in the KV cache for this batch"


class Batch:
    """A llama_batch whose arrays numpy owns, so runs of tokens are written at numpy speed.

    Every token belongs to exactly one sequence; ``seq_id[i]`` points at row i of a fixed
    array, so writing the sequence ids is a numpy slice too.
    """

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.token = np.zeros(capacity, dtype=np.int32)
        self.pos = np.zeros(capacity, dtype=np.int32)
        self.n_seq_id = np.ones(capacity, dtype=np.int32)
        self.seq = np.zeros(capacity, dtype=np.int32)
        self.logits = np.zeros(capacity, dtype=np.int8)
        int_p = ctypes.POINTER(ctypes.c_int32)
        base = self.seq.ctypes.data
        self._seq_rows = (int_p * capacity)(*[ctypes.cast(base + 4 * i, int_p) for i in range(capacity)])
        self.struct = llama_cpp.llama_batch(
            n_tokens=0,
            token=self.token.ctypes.data_as(int_p),
            embd=None,
            pos=self.pos.ctypes.data_as(int_p),
            n_seq_id=self.n_seq_id.ctypes.data_as(int_p),
            seq_id=self._seq_rows,
            logits=self.logits.ctypes.data_as(ctypes.POINTER(ctypes.c_int8)),
        )
        self.n = 0

    @property
    def room(self) -> int:
        return self.capacity - self.n

    def clear(self) -> None:
        self.n = 0

    def add_one(self, token: int, pos: int, seq_id: int, logits: bool) -> int:
        """Append one token; returns its index in the batch (where its logits are, if asked for)."""
        i = self.n
        self.token[i] = token
        self.pos[i] = pos
        self.seq[i] = seq_id
        self.logits[i] = logits
        self.n = i + 1
        return i

    def add(self, tokens: Sequence[int], start_pos: int, seq_id: int, logits_last: bool) -> int:
        """Append a run of one sequence's tokens at positions start_pos..; returns the last one's index."""
        i, n = self.n, len(tokens)
        if n == 0 or i + n > self.capacity:
            raise ValueError(f"a batch of {self.capacity} tokens has room for {self.capacity - i}, not {n}")
        end = i + n
        self.token[i:end] = tokens
        self.pos[i:end] = np.arange(start_pos, start_pos + n, dtype=np.int32)
        self.seq[i:end] = seq_id
        self.logits[i:end] = 0
        self.logits[end - 1] = logits_last
        self.n = end
        return end - 1


class NativeContext:
    """A llama_context (the KV cache) for one model, shared by up to ``n_seq_max`` sequences.

    With ``kv_unified`` every sequence draws on one pool of ``n_ctx`` cells, so a single long
    conversation can still use the whole window while several short ones run together.
    """

    def __init__(
        self,
        model: NativeModel,
        *,
        n_ctx: int,
        n_threads: int,
        n_batch: int = 512,
        n_seq_max: int = 1,
        kv_unified: bool = True,
        kv_cache_type: str = "f16",
        flash_attention: str = "auto",
        backend_sampling: bool = False,
    ):
        problem = combination_problem(kv_cache_type, flash_attention)
        if problem:
            raise ModelLoadError(problem)
        self.model = model
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = n_batch
        params.n_ubatch = n_batch  # one ubatch per decode: a failed decode never leaves half a batch behind
        params.n_seq_max = n_seq_max
        params.kv_unified = kv_unified
        params.n_threads = n_threads
        params.n_threads_batch = n_threads
        params.no_perf = True
        params.type_k = params.type_v = GGML_TYPE_IDS[kv_cache_type]
        params.flash_attn_type = FLASH_ATTN_TYPES[flash_attention]
        if backend_sampling:  # (llama.cpp's default) its penalties sampler runs in the graph only with this
            params.n_outputs_max_per_seq = 1  # limit, which holds only for sequence ids with a chain attached
        clear_recent_log()
        ctx = llama_cpp.llama_init_from_model(model.model, params)
        if not ctx and QUANTIZED_V_NEEDS_FA in recent_errors():  # "auto" found no flash attention on this device
            raise ModelLoadError(
                f"A {kv_cache_type} KV cache needs flash attention, which llama.cpp cannot use for this model "
                "on this device.",
                hint="Set the KV cache type to f16 in Settings › Model.",
                detail=recent_errors(),
            )
        if not ctx:
            raise ModelLoadError(
                f"llama.cpp could not create a context of {n_ctx} tokens for this model; try a smaller context size.",
                detail=recent_errors(),
            )
        self.ctx = ctx
        self.memory = llama_cpp.llama_get_memory(ctx)
        self.n_ctx = int(llama_cpp.llama_n_ctx(ctx))
        self.n_seq_max = int(llama_cpp.llama_n_seq_max(ctx))
        self.n_batch = n_batch
        self.n_threads = n_threads
        self.kv_cache_type = kv_cache_type
        self.flash_attention = flash_attention
        self.backend_sampling = backend_sampling  # sequences' sampler chains may run in the graph (sampler.py)
        self.backend_sampling_refused = ""  # why the device would not run a chain (sampling is then on the CPU)
        self.batch = Batch(n_batch)
        self._neg_inf: ctypes.Array[ctypes.c_float] | None = None  # a row of -inf logits, made on first use
        self._rows: dict[int, np.ndarray] = {}  # numpy views of logits rows, by address

    # Decoding ----------------------------------------------------------------------

    def decode(self, tokens: Sequence[int], start_pos: int, seq_id: int = 0) -> None:
        """Evaluate tokens at positions start_pos.. in one sequence; logits for the last one."""
        n = len(tokens)
        if n == 0 or n > self.n_batch:
            raise ValueError(f"decode takes 1..{self.n_batch} tokens, got {n}")
        self.batch.clear()
        self.batch.add(tokens, start_pos, seq_id, True)
        rc = self.decode_batch()
        if rc:
            raise decode_error(rc)

    def decode_batch(self) -> int:
        """Evaluate ``self.batch`` (filled by the caller); 0 on success, else llama_decode's code."""
        b = self.batch
        b.struct.n_tokens = b.n
        return _decode(self.ctx, b.struct)

    def logits(self, index: int = -1):
        """The logits row of batch position ``index`` (a ctypes float pointer), or a GenerationError."""
        row = _logits_ith(self.ctx, index)
        if not row:
            raise GenerationError("There are no logits to sample from.", detail="llama_get_logits_ith failed")
        return row

    def logits_row(self, index: int = -1) -> np.ndarray:
        """The logits of batch position ``index`` as a numpy view (writable: changes reach the samplers).

        llama.cpp keeps its output buffer between decodes, so the views are made once per row
        address and kept: making one costs more than sampling from it.
        """
        address = _address(self.logits(index))
        row = self._rows.get(address)
        if row is None:
            if len(self._rows) > 4 * self.n_seq_max + 16:  # the buffer moved (it grew): forget old rows
                self._rows.clear()
            n_vocab = self.model.n_vocab
            row = self._rows[address] = np.frombuffer(
                (ctypes.c_float * n_vocab).from_address(address), dtype=np.float32
            )
        return row

    def token_counts(self) -> tuple[int, int]:
        """llama.cpp's own counters since this context was made: prompt tokens evaluated, tokens generated."""
        perf = llama_cpp.llama_perf_context(self.ctx)
        return int(perf.n_p_eval), int(perf.n_eval)

    def reset_token_counts(self) -> None:
        """Start llama.cpp's counters again from zero (they then say 1 until something is evaluated)."""
        llama_cpp.llama_perf_context_reset(self.ctx)

    def restrict_logits(self, allowed: Sequence[int], index: int = -1) -> None:
        """Make every token outside ``allowed`` impossible for the next sample from batch position ``index``."""
        n_vocab = self.model.n_vocab
        logits = self.logits(index)
        keep = [(t, logits[t]) for t in allowed]
        neg_inf = self._neg_inf
        if neg_inf is None:
            neg_inf = self._neg_inf = (ctypes.c_float * n_vocab)(*([float("-inf")] * n_vocab))
        ctypes.memmove(logits, neg_inf, ctypes.sizeof(neg_inf))
        for t, value in keep:
            logits[t] = value

    # Sequences in the KV cache -------------------------------------------------------

    def remove_from(self, pos: int, seq_id: int = 0) -> bool:
        """Drop a sequence's cached tokens at positions >= pos; False if the model cannot."""
        return bool(llama_cpp.llama_memory_seq_rm(self.memory, seq_id, pos, -1))

    def remove_sequence(self, seq_id: int) -> None:
        """Drop every cached token of a sequence (never fails)."""
        llama_cpp.llama_memory_seq_rm(self.memory, seq_id, -1, -1)

    def copy_prefix(self, src: int, dst: int, n: int) -> None:
        """Let sequence ``dst`` share ``src``'s cached positions 0..n-1 (the cells are shared, not copied)."""
        llama_cpp.llama_memory_seq_cp(self.memory, src, dst, 0, n)

    def last_position(self, seq_id: int) -> int:
        """The highest cached position of a sequence, -1 when it holds none."""
        return int(llama_cpp.llama_memory_seq_pos_max(self.memory, seq_id))

    def state_size(self, seq_id: int) -> int:
        """How many bytes ``save_sequence`` would give for this sequence."""
        return int(llama_cpp.llama_state_seq_get_size(self.ctx, seq_id))

    def save_sequence(self, seq_id: int, alloc=None) -> np.ndarray:
        """A sequence's cached keys and values (and positions) as bytes, for ``restore_sequence``.

        ``alloc(n)`` gives a uint8 array of at least n bytes to write them into (a recycled one
        costs no page faults, which for tens of megabytes cost more than the copy itself).
        """
        size = self.state_size(seq_id)
        buffer = alloc(size) if alloc is not None else np.frombuffer(bytearray(size), dtype=np.uint8)
        written = llama_cpp.llama_state_seq_get_data(self.ctx, _u8(buffer), size, seq_id) if size else 0
        return buffer[:written]

    def restore_sequence(self, seq_id: int, data: np.ndarray) -> bool:
        """Put saved bytes back as sequence ``seq_id`` (replacing what it held); False if llama.cpp
        refused them (no room, or a state from another model), leaving the sequence empty."""
        if data is None or not len(data):
            return False
        read = llama_cpp.llama_state_seq_set_data(self.ctx, _u8(data), len(data), seq_id)
        if read == 0:
            self.remove_sequence(seq_id)
            return False
        return True

    def clear(self) -> None:
        llama_cpp.llama_memory_clear(self.memory, True)

    def close(self) -> None:
        if getattr(self, "ctx", None):
            self._rows.clear()
            llama_cpp.llama_free(self.ctx)
            self.ctx = None

    def __del__(self) -> None:
        self.close()


def _address(pointer) -> int:
    return ctypes.cast(pointer, ctypes.c_void_p).value or 0  # (None for a null pointer)


def _u8(data: np.ndarray):
    """A uint8 pointer to a contiguous array's bytes, with no copy."""
    return data.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8))


def decode_error(rc: int) -> GenerationError:
    """llama_decode's return code in words."""
    reason = {NO_ROOM: "no room left in the KV cache", 2: "aborted"}.get(rc, f"error code {rc}")
    return GenerationError("llama.cpp failed while evaluating the prompt.", detail=f"llama_decode: {reason}")
