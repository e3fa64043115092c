"""A question embedded in this process with numpy, while the embedding worker is not running.

The embedding worker (engine/rag/embed.py) imports torch and sentence-transformers before it can
embed anything: seconds on a CPU, most of a cold `locus ask --docs`. A question is one short text,
and a small BERT encoder (the bundled all-MiniLM-L6-v2: 6 layers, 384 wide) runs it in a few
milliseconds in plain numpy, from the same safetensors weights and tokenizer.json, giving the
worker's vector to float32 rounding (tests/engine/rag/test_query_encoder.py compares them).

Only folders this module fully understands take this path: a BertModel with absolute positions,
mean or CLS pooling and a Normalize module, of a modest size; ``QueryEncoder.load`` returns None
for anything else, and the worker embeds the question as before. The weights are read with
safetensors (no code runs from the folder).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

MAX_WEIGHTS_BYTES = 400 * 1024 * 1024  # larger encoders are left to the worker
_ST_MODULES = (
    "sentence_transformers.models.Transformer",
    "sentence_transformers.models.Pooling",
    "sentence_transformers.models.Normalize",
)


def _json(path: Path) -> dict | list | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


_blas = None
_blas_lock = threading.Lock()  # the BLAS thread limit is process-wide: one question at a time holds it


def _one_blas_thread():
    """A context in which numpy's BLAS runs on one thread: a question's matrices are small, and OpenBLAS's
    threads, spinning for a core, made one question 20x slower on a busy 2-core machine (1.1 s against
    0.06 s)."""
    global _blas
    if _blas is None:
        try:
            from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]

            _blas = ThreadpoolController()
        except ImportError:
            _blas = False
    return _blas.limit(limits=1, user_api="blas") if _blas else contextlib.nullcontext()


def _erf(x: np.ndarray) -> np.ndarray:
    """erf to ~1e-7 (Abramowitz and Stegun 7.1.26), in float64."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-a * a))


def _gelu(x: np.ndarray) -> np.ndarray:
    x64 = x.astype(np.float64)
    return (0.5 * x64 * (1.0 + _erf(x64 / np.sqrt(2.0)))).astype(np.float32)


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


class QueryEncoder:
    """One text at a time through a BERT encoder in numpy; ``encode`` returns a unit-length float32 row."""

    def __init__(
        self,
        weights: dict[str, np.ndarray],
        config: dict,
        tokenizer,
        max_tokens: int,
        pooling: str,
        lower_case: bool = False,
    ):
        self.w = weights
        self.layers = int(config["num_hidden_layers"])
        self.heads = int(config["num_attention_heads"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.pooling = pooling
        self.lower_case = lower_case  # sentence_bert_config.json's do_lower_case: the text is lowered first
        self.dim = int(weights["embeddings.word_embeddings.weight"].shape[1])

    @classmethod
    def load(cls, folder: str | Path) -> QueryEncoder | None:
        """The encoder of a sentence-transformers folder, or None when this module does not cover it."""
        folder = Path(folder)
        modules = _json(folder / "modules.json")
        config = _json(folder / "config.json")
        pooling_config = _json(folder / "1_Pooling" / "config.json")
        st_config = _json(folder / "sentence_bert_config.json")
        st_config = st_config if isinstance(st_config, dict) else {}
        st_model = _json(folder / "config_sentence_transformers.json")
        if isinstance(st_model, dict) and st_model.get("default_prompt_name"):
            return None  # the worker puts a prompt before every text: not covered here
        weights_file = folder / "model.safetensors"
        if not isinstance(modules, list) or not isinstance(config, dict) or not isinstance(pooling_config, dict):
            return None
        if tuple(m.get("type") for m in modules if isinstance(m, dict)) != _ST_MODULES:
            return None
        if config.get("model_type") != "bert" or config.get("hidden_act") != "gelu":
            return None
        if config.get("position_embedding_type", "absolute") != "absolute":
            return None
        modes = {k for k, v in pooling_config.items() if k.startswith("pooling_mode") and v is True}
        pooling = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}.get(next(iter(modes), ""))
        if len(modes) != 1 or pooling is None:
            return None
        try:
            if not weights_file.is_file() or weights_file.stat().st_size > MAX_WEIGHTS_BYTES:
                return None
            from safetensors.numpy import load_file
            from tokenizers import Tokenizer

            weights = load_file(str(weights_file))
            tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception as exc:  # noqa: BLE001 - safetensors/tokenizers raise their own types; the worker reports it in words
            log.info("no in-process query encoder for %s: %s", folder, exc)
            return None
        weights = {k.removeprefix("bert."): v for k, v in weights.items()}
        try:
            hidden = int(config.get("hidden_size", 0))
        except (TypeError, ValueError):
            return None
        if (
            "embeddings.word_embeddings.weight" not in weights
            or weights["embeddings.word_embeddings.weight"].shape[1] != hidden
        ):
            return None
        try:
            layers = int(config["num_hidden_layers"])
            positions = int(config.get("max_position_embeddings", 512))
            max_tokens = min(int(st_config.get("max_seq_length") or 512), positions)
            if hidden % int(config["num_attention_heads"]) or max_tokens < 2:
                return None
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            return None
        if any(f"encoder.layer.{i}.output.dense.weight" not in weights for i in range(layers)):
            return None
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_tokens)
        _one_blas_thread()  # finds the BLAS libraries now, not on the first question
        return cls(weights, config, tokenizer, max_tokens, pooling, st_config.get("do_lower_case") is True)

    def encode(self, text: str) -> np.ndarray:
        if self.lower_case:
            text = text.lower()
        with _blas_lock, _one_blas_thread():
            return self._encode(text)

    def _encode(self, text: str) -> np.ndarray:
        w, eps = self.w, self.eps
        encoding = self.tokenizer.encode(text)
        ids = np.asarray(encoding.ids, dtype=np.int64)
        types = np.asarray(encoding.type_ids, dtype=np.int64)
        n = len(ids)
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:n]
            + w["embeddings.token_type_embeddings.weight"][types]
        )
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
        width = x.shape[1]
        head = width // self.heads
        for i in range(self.layers):
            p = f"encoder.layer.{i}."

            def linear(v: np.ndarray, name: str, p: str = p) -> np.ndarray:
                return v @ w[p + name + ".weight"].T + w[p + name + ".bias"]

            q = linear(x, "attention.self.query").reshape(n, self.heads, head).transpose(1, 0, 2)
            k = linear(x, "attention.self.key").reshape(n, self.heads, head).transpose(1, 0, 2)
            v = linear(x, "attention.self.value").reshape(n, self.heads, head).transpose(1, 0, 2)
            scores = q @ k.transpose(0, 2, 1) / np.float32(np.sqrt(head))
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            scores /= scores.sum(axis=-1, keepdims=True)
            context = (scores @ v).transpose(1, 0, 2).reshape(n, width)
            x = _layer_norm(
                x + linear(context, "attention.output.dense"),
                w[p + "attention.output.LayerNorm.weight"],
                w[p + "attention.output.LayerNorm.bias"],
                eps,
            )
            inner = _gelu(linear(x, "intermediate.dense"))
            x = _layer_norm(
                x + linear(inner, "output.dense"), w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps
            )
        pooled = x.mean(axis=0) if self.pooling == "mean" else x[0]
        norm = float(np.linalg.norm(pooled))
        return (pooled / max(norm, 1e-12)).astype(np.float32)
