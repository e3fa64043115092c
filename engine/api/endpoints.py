"""The models the API offers (GET /v1/models), which one a request names, and /v1/embeddings."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from engine.api.calls import EmbeddingCall
from engine.api.errors import ApiError, from_engine, invalid, model_not_found
from engine.api.shapes import embeddings, model_entry
from engine.api.transport import Exchange
from engine.errors import EngineError
from engine.runtime.types import ModelInfo

log = logging.getLogger(__name__)


def offered(api, info: ModelInfo | None) -> list[str]:
    """The ids a client can use: the loaded model's name (``info``: the request's backend's), then the
    embedding model's."""
    ids = [info.name] if info is not None else []
    if api.embed is not None and api.embedding_model:
        ids.append(api.embedding_model)
    return ids


def chat_model(api, info: ModelInfo | None, requested: str) -> ModelInfo:
    """The loaded model ``info``, if ``requested`` names it (its name, or its GGUF file's stem)."""
    if info is None:
        raise ApiError(
            503, "No model is loaded yet; try again when it has loaded.", type="server_error", code="model_not_loaded"
        )
    if requested in (info.name, Path(info.path).stem):
        return info
    if api.embed is not None and requested == api.embedding_model:
        raise invalid(
            f"'{requested}' is an embedding model; use '{info.name}' for completions.", "model", "model_not_supported"
        )
    raise model_not_found(requested, offered(api, info))


def list_models(api, info: ModelInfo | None, created: int) -> dict:
    """The /v1/models response."""
    data = []
    if info is not None:
        data.append(model_entry(info.name, created, context_length=info.n_ctx))
    if api.embed is not None and api.embedding_model:
        data.append(model_entry(api.embedding_model, created))
    return {"object": "list", "data": data}


def one_model(api, info: ModelInfo | None, model_id: str, created: int) -> dict:
    """GET /v1/models/{model}."""
    for entry in list_models(api, info, created)["data"]:
        if entry["id"] == model_id:
            return entry
    raise model_not_found(model_id, offered(api, info))


def embed(api, info: ModelInfo | None, ex: Exchange, call: EmbeddingCall) -> int:
    """Answer an embeddings call; returns the number of prompt tokens (for the trace)."""
    if api.embed is None or call.model != api.embedding_model:
        if info is not None and call.model in (info.name, Path(info.path).stem):
            hint = f"use '{api.embedding_model}'" if api.embed is not None else "this server has no embedding model"
            raise invalid(
                f"'{call.model}' is a chat model and cannot make embeddings; {hint}.", "model", "model_not_supported"
            )
        raise model_not_found(call.model, offered(api, info))
    try:
        vectors = np.asarray(api.embed(list(call.inputs)), dtype=np.float32)
    except EngineError as exc:
        raise from_engine(exc, "input") from None
    if call.dimensions is not None and call.dimensions != vectors.shape[1]:
        raise invalid(
            f"'{call.model}' makes {vectors.shape[1]}-dimensional embeddings; 'dimensions' "
            f"{call.dimensions} cannot be given.",
            "dimensions",
        )
    count = api.embedding_tokens or estimate_tokens
    tokens = sum(count(text) for text in call.inputs)
    ex.send_json(200, embeddings(call.model, vectors, call.encoding_format, tokens))
    return tokens


def estimate_tokens(text: str) -> int:
    """About four characters a token, when the embedding model's tokenizer is not at hand."""
    return max(1, (len(text) + 3) // 4)


def token_counter(tokenizer_file: str | Path) -> Callable[[str], int] | None:
    """Counts tokens with the embedding model's own tokenizer.json (with its [CLS]/[SEP]); None without one."""
    path = Path(tokenizer_file)
    if not path.is_file():
        return None
    try:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(path))
        tokenizer.no_truncation()
    except Exception as exc:  # noqa: BLE001 - usage figures fall back to an estimate
        log.info("embedding tokenizer %s unusable (%s); token counts are estimated", path, exc)
        return None
    return lambda text: len(tokenizer.encode(text).ids)
