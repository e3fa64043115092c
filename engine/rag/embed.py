"""Embedding: sentence-transformers on the best device present, batched and normalised.

The model loads lazily (importing sentence-transformers takes seconds) and one
lock serialises use, so the indexer and a question can share it safely.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import EngineError

log = logging.getLogger(__name__)


class EmbeddingError(EngineError):
    """The embedding model could not be loaded or run."""

    code = "embedding_failed"


@dataclass(frozen=True)
class EmbedderInfo:
    name: str  # what the index records, e.g. "sentence-transformers/all-MiniLM-L6-v2"
    dim: int
    device: str  # "cuda", "mps" or "cpu"
    dtype: str  # "float16" on CUDA, else "float32"
    max_tokens: int


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
    """A sentence-transformers model; ``embed`` returns unit-length float32 rows."""

    def __init__(self, model_path: str | Path, name: str, *, device: str = "auto", batch_size: int = 32):
        self.model_path = Path(model_path)
        self.name = name
        self.batch_size = batch_size
        self._requested_device = device
        self._model = None
        self._info: EmbedderInfo | None = None
        self._lock = threading.Lock()

    @property
    def tokenizer_file(self) -> Path:
        return self.model_path / "tokenizer.json"

    @property
    def info(self) -> EmbedderInfo:
        self._ensure_loaded()
        return self._info

    def _ensure_loaded(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            try:
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as transformers_logging

                transformers_logging.disable_progress_bar()  # no "Loading weights" bars on the terminal

                device, dtype = choose_device() if self._requested_device == "auto" else (
                    self._requested_device, "float16" if self._requested_device == "cuda" else "float32")
                model = SentenceTransformer(str(self.model_path), device=device, local_files_only=True)
                if dtype == "float16":
                    model.half()
            except Exception as exc:  # noqa: BLE001 - any failure here means no embeddings
                raise EmbeddingError(
                    f"The embedding model at '{self.model_path}' could not be loaded.",
                    detail=f"{type(exc).__name__}: {exc}",
                ) from exc
            self._model = model
            dimension = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
            self._info = EmbedderInfo(self.name, int(dimension()), device, dtype, int(model.max_seq_length))
            log.info("embedder %s on %s (%s)", self.name, device, dtype)

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embeddings of texts, shape (len(texts), dim), L2-normalised float32."""
        self._ensure_loaded()
        if not texts:
            return np.zeros((0, self._info.dim), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                         convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed([text])[0]
