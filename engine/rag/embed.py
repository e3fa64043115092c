"""Embedding: sentence-transformers on the best device present, batched and normalised.

The model runs in a worker process (see ipc.py): importing torch and
sentence-transformers takes seconds and holds the interpreter lock in long
stretches, which in the app's own process would freeze the window. The worker
starts on first use; one lock serialises requests, so the indexer and a question
can share it safely.

Unlike the parsers, this worker has no memory ceiling. Torch reserves address
space far beyond what it uses (CUDA maps device and host memory into one
address space; its allocator and OpenMP threads reserve more), so an
address-space limit would break it at any size one could choose, and its memory
does not grow with what a document holds: it sees passages of a few hundred
tokens, at most a batch at a time. It is only told to be, after the parsers,
the kernel's next choice should memory run out, ahead of the window.
"""

from __future__ import annotations

import json
import logging
import queue
import sys
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from engine.errors import EngineError
from engine.rag.embed_batches import choose_batch_size, encode_sorted
from engine.rag.ipc import EOF_MARK, WorkerProcess, command_for, read_message, reply_safely, worker_streams
from engine.rag.query_encoder import QueryEncoder

log = logging.getLogger(__name__)

OOM_SCORE_ADJ = 500  # Linux: killed before the window (0) if memory runs out, after a parser (1000)


FEW_TEXTS = 64  # at most this many texts are embedded in process before the worker starts


class EmbeddingError(EngineError):
    """The embedding model could not be loaded or run."""

    code = "embedding_failed"
    status = "embedding failed"  # the short reason beside a document it failed
    ends_job = False  # True: the indexing job stops embedding (the rest of its documents fail with this)


@dataclass(frozen=True)
class EmbedderInfo:
    name: str  # what the index records, e.g. "sentence-transformers/all-MiniLM-L6-v2"
    dim: int
    device: str  # "cuda", "mps" or "cpu"
    dtype: str  # "float16" on CUDA, else "float32"
    max_tokens: int
    batch_size: int = 0  # texts the worker embeds at once (embed_batches.choose_batch_size); 0: not a local model
    overlap: bool = False  # whether the next batch is tokenized while the device runs the current one


class TextEmbedder(Protocol):
    """What the indexer, retrieval and citations use of an embedder: Embedder (a local model) or
    remote_embed.RemoteEmbedder (an OpenAI-compatible server)."""

    name: str

    @property
    def info(self) -> EmbedderInfo: ...

    @property
    def started(self) -> bool: ...

    @property
    def tokenizer_file(self) -> Path: ...

    def embed(self, texts: list[str]) -> np.ndarray: ...

    def embed_few(self, texts: list[str]) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...

    def close(self) -> None: ...


def declared_dim(model_path: str | Path) -> int | None:
    """The output dimension a sentence-transformers folder declares, read without loading it."""
    folder = Path(model_path)
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
        dim = None
        for module in modules:
            config = folder / module.get("path", "") / "config.json"
            if module["type"].endswith(".Pooling"):
                dim = json.loads(config.read_text(encoding="utf-8"))["word_embedding_dimension"]
            elif module["type"].endswith(".Dense"):
                dim = json.loads(config.read_text(encoding="utf-8"))["out_features"]
        return int(dim) if dim else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def choose_device() -> tuple[str, str]:
    """(device, dtype): CUDA with fp16, then Apple's MPS, then the CPU."""
    import torch

    if torch.cuda.is_available():
        return "cuda", "float16"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps", "float32"
    return "cpu", "float32"


class Embedder:
    """Embeds text with a sentence-transformers model that runs in its own worker process.

    ``embed`` returns unit-length float32 rows. The first call starts the worker, which
    imports torch and loads the model (seconds). One request runs at a time; a question
    asked during indexing waits at most for the request in progress.

    ``batch_size``: texts per batch, None to let the device decide (embed_batches.choose_batch_size:
    32 on a CPU, up to 512 on CUDA); ``overlap``: tokenize the next batch during the current one,
    None for on a GPU and off on a CPU. ``info`` says what the worker chose.
    """

    def __init__(
        self,
        model_path: str | Path,
        name: str,
        *,
        device: str = "auto",
        batch_size: int | None = None,
        overlap: bool | None = None,
        timeout_s: float = 600.0,
    ):
        self.model_path = Path(model_path)
        self.name = name
        self.device = device
        self.batch_size = batch_size
        self.overlap = overlap
        self.timeout_s = timeout_s
        self._worker: WorkerProcess | None = None
        self._info: EmbedderInfo | None = None
        self._lock = threading.Lock()
        self._query_encoder: QueryEncoder | bool | None = False  # False: not looked for yet; None: none fits
        self._query_lock = threading.Lock()

    @property
    def tokenizer_file(self) -> Path:
        return self.model_path / "tokenizer.json"

    @property
    def started(self) -> bool:
        """True once the worker has reported what it runs on (``info`` then answers at once)."""
        return self._info is not None

    @property
    def info(self) -> EmbedderInfo:
        if self._info is None:
            self._info = replace(self._request(("info",)), name=self.name)
        return self._info

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embeddings of texts, shape (len(texts), dim), L2-normalised float32."""
        if not texts or self._info is None:  # the first call also learns where the model runs (for settings)
            _ = self.info
        if not texts:
            return np.zeros((0, self.info.dim), dtype=np.float32)
        return self._request(("embed", list(texts)))

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_few([text])[0]

    def embed_few(self, texts: list[str]) -> np.ndarray:
        """A handful of texts (a question; an answer's sentences and its passages for the citations). Before
        the worker has started, a model query_encoder.py covers (the bundled one) embeds them in this process,
        milliseconds each, instead of waiting seconds for torch; once the worker runs, it embeds them (the
        vectors agree to float32 rounding). Many texts (indexing) always go to the worker."""
        encoder = self.query_encoder() if self._info is None and len(texts) <= FEW_TEXTS else None
        if encoder is not None:
            try:
                if not texts:
                    return np.zeros((0, encoder.dim), dtype=np.float32)
                return np.stack([encoder.encode(t) for t in texts])
            except (ValueError, IndexError, KeyError) as exc:  # weights that do not fit together
                log.warning("in-process query encoder failed (%s); the worker embeds questions", exc)
                with self._query_lock:
                    self._query_encoder = None
        return self.embed(texts)

    def query_encoder(self) -> QueryEncoder | None:
        """The in-process question encoder for this model (loaded once, ~0.2 s), None when the worker runs
        or the model is not one query_encoder.py covers."""
        with self._query_lock:
            if self._info is not None:
                self._query_encoder = None  # the worker embeds questions now: its weights are enough
            elif self._query_encoder is False:
                self._query_encoder = QueryEncoder.load(self.model_path)
            encoder = self._query_encoder
        return encoder if isinstance(encoder, QueryEncoder) else None

    @property
    def request_size(self) -> int:
        """How many texts one ``embed`` call should carry to fill the device: the worker's batch size once
        it has started, else 0 (unknown)."""
        return self._info.batch_size if self._info is not None else 0

    def _request(self, message):
        with self._lock:
            if self._worker is None or self._worker.process.poll() is not None:
                command = command_for("engine.rag.embed", "--embed-worker")
                overlap = "auto" if self.overlap is None else str(int(self.overlap))
                self._worker = WorkerProcess(
                    [*command, str(self.model_path.absolute()), self.device, str(self.batch_size or 0), overlap],
                    oom_score_adj=OOM_SCORE_ADJ,
                )
            worker = self._worker
            try:
                worker.send(message)
                reply = worker.replies.get(timeout=self.timeout_s)
            except queue.Empty:
                self._stop_worker()
                raise EmbeddingError(f"The embedding model did not answer within {self.timeout_s:g} s.") from None
            except (BrokenPipeError, OSError):
                reply = EOF_MARK
            if reply is EOF_MARK:
                how = worker.exit_status()
                self._stop_worker()
                raise EmbeddingError(
                    "The embedding model stopped unexpectedly.", detail=f"embedding worker ended with {how}"
                )
            kind, value = reply
            if kind == "error":
                raise value
            return value

    def _stop_worker(self) -> None:
        if self._worker is not None:
            self._worker.stop(graceful=False)
            self._worker = None

    @property
    def worker_pid(self) -> int | None:
        """The embedding worker process's id while it runs (None before the first request and after close)."""
        with self._lock:
            return self._worker.process.pid if self._worker is not None else None

    def close(self) -> None:
        with self._lock:
            if self._worker is not None:
                self._worker.stop()
                self._worker = None


def serve(model_path: str, device: str, batch_size: int, overlap: str = "auto") -> None:
    """The embedding worker: load the model on the first request, then answer requests until EOF.

    ``batch_size`` 0 lets the device decide; ``overlap`` "1", "0" or "auto" (on a GPU only).
    """
    requests, replies = worker_streams()

    def failed(exc: BaseException):
        return "error", EmbeddingError("The embedding model's answer could not be sent.", detail=repr(exc))

    model, info = None, EmbedderInfo("", 0, device, "", 0)  # info: what _load_model reports, once loaded
    while True:
        try:
            message = read_message(requests)
        except (EOFError, OSError):
            return
        if message is None:
            return
        try:
            if model is None:
                model, info = _load_model(model_path, device, batch_size, overlap)
            reply: tuple[str, object]
            if message[0] == "info":
                reply = ("ok", info)
            else:
                reply = ("ok", _encode(model, message[1], info))
        except EmbeddingError as exc:
            reply = ("error", exc)
        except Exception as exc:  # noqa: BLE001 - reported to the caller, the worker keeps serving
            reply = (
                "error",
                EmbeddingError("The embedding model failed on this text.", detail=f"{type(exc).__name__}: {exc}"),
            )
        if not reply_safely(replies, reply, failed):
            return


def _encode(model, texts: list[str], info: EmbedderInfo) -> np.ndarray:
    """Unit-length float32 rows for texts, in their order: sorted by length into batches of info.batch_size,
    each tokenized (the next one in a thread when info.overlap) and run through the model.

    Without overlap (a CPU) this is sentence-transformers' own encode, which sorts by length the same
    way: the CPU path stays exactly what it was.
    """
    if not info.overlap:
        vectors = model.encode(
            texts, batch_size=info.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32)
    import torch
    from sentence_transformers.util import batch_to_device

    device = model.device

    def run(features) -> np.ndarray:
        with torch.inference_mode():
            vectors = model(batch_to_device(features, device))["sentence_embedding"]
            vectors = torch.nn.functional.normalize(vectors, p=2, dim=1)
            return vectors.float().cpu().numpy()

    tokenize = getattr(model, "preprocess", None) or model.tokenize  # (tokenize: sentence-transformers < 6)
    return encode_sorted(texts, info.batch_size, tokenize, run, overlap=info.overlap)


def _batch_plan(model, device: str, dtype: str, batch_size: int, overlap: str) -> tuple[int, bool]:
    """(batch size, overlap) for this model on this device: as asked, or chosen by the device."""
    if batch_size <= 0:
        free = None
        if device == "cuda":
            import torch

            free = int(torch.cuda.mem_get_info()[0])
        config = getattr(getattr(model[0], "auto_model", None), "config", None)
        batch_size = choose_batch_size(
            device,
            max_tokens=int(model.max_seq_length),
            hidden_size=int(getattr(config, "hidden_size", 0) or 1024),
            n_heads=int(getattr(config, "num_attention_heads", 0) or 16),
            free_bytes=free,
            dtype_bytes=2 if dtype == "float16" else 4,
        )
    return batch_size, (device != "cpu" if overlap == "auto" else overlap == "1")


def _load_model(model_path: str, requested: str, batch_size: int = 0, overlap: str = "auto"):
    try:
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # no "Loading weights" bars on the terminal
        device, dtype = (
            choose_device() if requested == "auto" else (requested, "float16" if requested == "cuda" else "float32")
        )
        model = SentenceTransformer(model_path, device=device, local_files_only=True)
        if dtype == "float16":
            model.half()
        model.eval()
    except Exception as exc:  # noqa: BLE001 - any failure here means no embeddings
        raise EmbeddingError(
            f"The embedding model at '{model_path}' could not be loaded.", detail=f"{type(exc).__name__}: {exc}"
        ) from None
    dimension = (getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension)()
    if dimension is None or model.max_seq_length is None:
        raise EmbeddingError(f"The embedding model at '{model_path}' does not say how long its vectors or inputs are.")
    size, overlapped = _batch_plan(model, device, dtype, batch_size, overlap)
    info = EmbedderInfo(
        Path(model_path).name, int(dimension), device, dtype, int(model.max_seq_length), size, overlapped
    )
    log.info("embedder %s on %s (%s), batches of %d", model_path, device, dtype, size)
    return model, info


if __name__ == "__main__":
    # Run the module proper rather than this __main__ copy, so pickled classes (EmbedderInfo,
    # EmbeddingError) are engine.rag.embed's and the app can unpickle them.
    from engine.rag.embed import serve as _serve

    _serve(sys.argv[1], sys.argv[2], int(sys.argv[3]), *sys.argv[4:5])
