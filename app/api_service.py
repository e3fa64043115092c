"""The local API wired to the app's services: its settings, its API key from the keyring, its embedder.

``start_api`` is what the window calls when ``api.enabled`` is on; ``locus serve``
uses ``open_api`` with its own address and embedder. Reading the keyring may wait
on D-Bus, so call these off the GUI thread.
"""

from __future__ import annotations

import logging
from pathlib import Path

from app.services import Services, chat_settings
from engine.api import ApiServer, ApiServerError
from engine.api.endpoints import token_counter
from engine.api.listener import is_loopback
from engine.errors import EngineError
from engine.models.bundled import BUNDLED_EMBEDDER_NAME, bundled_embedder_path

log = logging.getLogger(__name__)

KEY_NAME = "server_api_key"


def start_api(services: Services) -> ApiServer | None:
    """Start the API the settings describe (None when ``api.enabled`` is off); EngineError if it cannot."""
    s = services.settings.api
    if not s.enabled:
        log.info("the local API is off (settings: api.enabled)")
        return None
    return open_api(services, host=s.host, port=s.port)


def open_api(services: Services, *, host: str, port: int, embedder=None, api_key: str | None = None) -> ApiServer:
    """A started ApiServer over the services' backends (each request goes to the default one as it arrives,
    so the API follows a backend switch) and current sampling settings, its requests at Priority.NORMAL
    (after the window's chat, before background tasks). Chat requests may ask to be answered from the
    indexed documents, through the services' Assistant (the library opens on the first such request).

    ``embedder``: an Embedder of the caller's; without one, the document library's embedder is
    used (opened on the first embeddings request). ``api_key`` defaults to the keyring's.
    """
    settings = services.settings
    key = api_key if api_key is not None else read_api_key(services, host)
    embed, name, tokens = _embedding(services, embedder)
    server = ApiServer(
        services.backends,
        embed=embed,
        embedding_model=name,
        embedding_tokens=tokens,
        host=host,
        port=port,
        api_key=key,
        max_request_bytes=settings.api.max_request_kb * 1024,
        max_tokens=settings.api.max_tokens,
        max_connections=settings.api.max_connections,
        max_queued=settings.api.max_queued_requests,
        read_timeout_s=settings.api.request_timeout_s,
        defaults=lambda: chat_settings(services.settings).sampling,
        assistant=services.assistant,  # answers from documents ("locus": {"documents": true})
        open_library=services.open_library,
    )  # Settings › Sampling, as now
    return server.start()


def read_api_key(services: Services, host: str) -> str | None:
    """The API key kept in the keyring. Required off loopback; on loopback it is used when one is stored
    (other users of this computer can reach 127.0.0.1 too), and an unreadable keyring only warns."""
    try:
        key = services.secrets.get(KEY_NAME) if services.secrets is not None else None
    except EngineError as exc:
        if not is_loopback(host):
            raise ApiServerError(
                f"The API on '{host}' needs its key from the system keyring, which could not be read: {exc.user_text()}"
            ) from None
        log.warning("API key unreadable, serving on %s without one: %s", host, exc.user_text())
        return None
    if not key and not is_loopback(host):
        raise ApiServerError(
            f"The API would listen on '{host}', which other computers can reach, but no API key is set.",
            hint="Store one with 'locus secrets set server_api_key', or listen on 127.0.0.1.",
        )
    return key or None


def embedding_model(settings) -> tuple[str, str] | None:
    """(path, name) of the embedding model the documents use (the bundled one unless set); None if absent."""
    configured = settings.documents.embedding_model
    if configured:
        return configured, configured
    bundled = bundled_embedder_path()
    return (str(bundled), BUNDLED_EMBEDDER_NAME) if bundled is not None else None


def _embedding(services: Services, embedder):
    """(embed function, model name, token counter) for /v1/embeddings; (None, None, None) without a model."""
    if embedder is not None:
        return embedder.embed, embedder.name, token_counter(embedder.tokenizer_file)
    source = embedding_model(services.settings)
    if source is None:
        log.info("no embedding model is installed: /v1/embeddings is off")
        return None, None, None
    path, name = source
    documents = services.settings.documents
    if documents.embedding_server:  # the documents' embedder is that server's model: name it, not the local one
        name = documents.embedding_server_model

    def embed(texts):
        return services.open_library().embedder.embed(texts)

    return embed, name, token_counter(Path(path) / "tokenizer.json")
