"""The API as the app opens it (app/api_service.py): Settings › Sampling as they are at each request.

(It lives beside the server's tests because it tests the server's wiring; it imports app, which tests may.)
"""

from __future__ import annotations

import openai
import pytest

from engine.trace.store import TraceFilter

pytestmark = pytest.mark.slow


def test_open_api_follows_sampling_settings_changed_after_it_started(locus_home):
    from keyring.backends import fail

    from app.api_service import open_api
    from app.paths import resolve_paths
    from app.secrets import Secrets
    from app.services import build_services

    services = build_services(resolve_paths(), secrets=Secrets(backend=fail.Keyring()))
    try:
        services.apply_settings(services.settings.with_value("sampling.temperature", 0.2))
        services.load_model().result(timeout=120)
        server = open_api(services, host="127.0.0.1", port=0, api_key="")
        try:
            client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=120)
            model = services.backends.resolve(None)[1].model_info.name
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": "One"}], max_tokens=2)
            # The user edits Settings › Sampling while the API runs (as the window applies settings).
            services.apply_settings(
                services.settings.with_value("sampling.temperature", 1.3)
                .with_value("sampling.top_p", 0.5)
                .with_value("sampling.top_k", 9)
            )
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Two"}], max_tokens=2)
        finally:
            server.stop()
        services.tracing.flush()
        store = services.traces
        seen = {}
        for trace in store.list_traces(TraceFilter(task="api")):
            spans = store.trace(trace.trace_id)
            [root] = [s for s in spans if s.parent_id is None]
            [generation] = [s for s in spans if s.parent_id == root.span_id]
            a = generation.attributes
            seen[trace.summary] = (
                a["gen_ai.request.temperature"],
                a["gen_ai.request.top_p"],
                a["gen_ai.request.top_k"],
                a["locus.priority"],
            )
        assert seen == {"One": (0.2, 0.95, 40, "normal"), "Two": (1.3, 0.5, 9, "normal")}
    finally:
        services.close()


def test_the_windows_api_names_the_embedding_server_model_its_documents_use(locus_home):
    """With documents embedded by a server, the window's /v1/embeddings relays that server's vectors under its
    model's name (not the local model's, whose vectors they are not)."""
    from keyring.backends import fail

    from app.api_service import open_api
    from app.paths import resolve_paths
    from app.secrets import Secrets
    from app.services import build_services
    from tests.engine.rag.embed_servers import LoopbackServer, vectors_reply

    upstream = LoopbackServer(lambda r: vectors_reply("BAAI/bge-m3", [[3.0, 4.0] for _ in r["json"]["input"]]))
    services = build_services(resolve_paths(), secrets=Secrets(backend=fail.Keyring()))
    try:
        services.apply_settings(
            services.settings.with_value("documents.embedding_server", upstream.url).with_value(
                "documents.embedding_server_model", "BAAI/bge-m3"
            )
        )
        server = open_api(services, host="127.0.0.1", port=0, api_key="")
        try:
            client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=120)
            assert "BAAI/bge-m3" in [m.id for m in client.models.list().data]
            reply = client.embeddings.create(model="BAAI/bge-m3", input=["one", "two"])
            for item in reply.data:  # the server's vector, normalised (float32)
                assert item.embedding == pytest.approx([0.6, 0.8])
        finally:
            server.stop()
    finally:
        services.close()
        upstream.stop()
