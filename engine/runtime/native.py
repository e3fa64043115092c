"""Thin owning wrappers over llama-cpp-python's low-level (ctypes) API: the backend and the model.

These objects hold native handles and are not thread-safe: the runtime's
thread creates, uses and frees them. The context (KV cache, batches) is in
``context.py``, the sampler chain in ``sampler.py``; nothing here knows about
conversations or templates.
"""

from __future__ import annotations

import collections
import ctypes
import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import llama_cpp

from engine.errors import GenerationError, ModelLoadError
from engine.runtime.cpu_check import extra_buffers_ok
from engine.runtime.threads import default_threads as default_threads  # (where callers have found it)

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


def llamafile_kernels() -> bool:
    """Whether the loaded llama.cpp has llamafile's tinyBLAS CPU kernels: with them a batch's rows get logits
    that differ by rounding from one row's, so speculative decoding is not token-for-token exact on a CPU
    (packaging/setup.sh builds without them)."""
    return b"LLAMAFILE = 1" in (llama_cpp.llama_print_system_info() or b"")


def clear_recent_log() -> None:
    """Forget llama.cpp's log so far, before a call whose failure should be explained by what it logs."""
    _recent_log.clear()


def recent_log() -> list[str]:
    """What llama.cpp logged since clear_recent_log (its last 40 lines)."""
    return list(_recent_log)


def recent_errors() -> str:
    """The last few lines llama.cpp logged, errors first (a failed call's explanation)."""
    lines = [ln.strip() for ln in _recent_log if ln.strip()]
    interesting = [ln for ln in lines if "error" in ln.lower() or "failed" in ln.lower()]
    return "\n".join((interesting or lines)[-6:])


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
        params.use_extra_bufts = extra_buffers_ok()  # AMX buffers crash some builds (cpu_check.py)
        self._progress_cb = None
        if progress is not None:
            # Kept on self: llama.cpp calls it during load, the ctypes object must outlive that.
            self._progress_cb = llama_cpp.llama_progress_callback(lambda fraction, _ud: bool(progress(float(fraction))))
            params.progress_callback = self._progress_cb
        _recent_log.clear()
        model = llama_cpp.llama_model_load_from_file(self.path.encode("utf-8"), params)
        if not model:
            raise ModelLoadError(
                f"llama.cpp could not load '{Path(self.path).name}': the file is corrupt, "
                "truncated, or not a GGUF model this version of llama.cpp supports.",
                detail=recent_errors(),
            )
        self.model = model
        # Recurrent or hybrid (Mamba, RWKV, LFM2, ...): a sequence's memory is one state, not cells per position.
        self.one_state_per_sequence = bool(
            llama_cpp.llama_model_is_recurrent(model) or llama_cpp.llama_model_is_hybrid(model)
        )
        self.vocab = llama_cpp.llama_model_get_vocab(model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self._pieces: dict[int, bytes] = {}
        self._eog: dict[int, bool] = {}
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
        """Whether the token ends generation (end of turn, end of text); cached."""
        known = self._eog.get(token)
        if known is None:
            known = self._eog[token] = bool(llama_cpp.llama_vocab_is_eog(self.vocab, token))
        return known

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
