"""Embeddings from a server: the real `locus serve` (its /v1/embeddings) on loopback, the real indexer,
LanceDB and keyring; small loopback servers for retries, hostile replies and a server that goes away."""

from __future__ import annotations

import json
import logging
import math
import threading
from pathlib import Path

import numpy as np
import pytest

from app.paths import resolve_paths
from app.secrets import Secrets
from app.settings import Settings
from engine.models.bundled import BUNDLED_EMBEDDER_NAME, bundled_embedder_path
from engine.rag.library import DocumentLibrary
from engine.rag.remote_embed import (
    EmbeddingServerError,
    EmbeddingServerMismatch,
    EmbeddingServerUnreachable,
    RemoteEmbedder,
    endpoint_for,
)
from engine.rag.store import EmbeddingModelMismatch
from tests.app.test_cli_serve import KEY, Served
from tests.engine.rag.embed_servers import DyingProxy, LoopbackServer, vectors_reply

MODEL = BUNDLED_EMBEDDER_NAME  # what `locus serve` embeds with
TOKENIZER = Path(str(bundled_embedder_path())) / "tokenizer.json"

DOCS = {
    "bread.txt": "Sourdough bread needs a starter of flour and water, fed daily, and a long cold proof overnight.",
    "bees.txt": "Honey bees communicate the direction of flowers to their hive mates with a waggle dance.",
    "tides.txt": "Ocean tides rise and fall twice a day because of the moon's gravity pulling on the water.",
}
QUESTIONS = {
    "How do bees tell each other where flowers are?": "bees.txt",
    "Why does the sea level change during the day?": "tides.txt",
    "What does a sourdough loaf need before baking?": "bread.txt",
}


def count_tokens(text: str) -> int:
    return len(text.split())


def write_docs(folder: Path, docs: dict[str, str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, text in docs.items():
        (folder / name).write_text(text, encoding="utf-8")
        out.append(folder / name)
    return out


def remote(url: str, model: str = MODEL, **options) -> RemoteEmbedder:
    return RemoteEmbedder(url, model, tokenizer_file=TOKENIZER, **options)


def top_names(lib: DocumentLibrary, question: str, **options) -> list[str]:
    retrieval = lib.retrieve(question, None, count_tokens, 400, **options)
    return [Path(p.path).name for p in retrieval.passages]


def statuses(lib: DocumentLibrary) -> dict[str, tuple[str, str, str]]:
    return {Path(r.path).name: (r.status, r.reason, r.message) for r in lib.documents()}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`locus serve` on loopback (no key stored: loopback needs none), shared by the tests below."""
    server = Served(tmp_path_factory.mktemp("serve-home"), "--port", "0")
    yield server
    server.stop()


# The real server ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_documents_indexed_and_asked_through_locus_serve_with_its_key_from_the_keyring(
    tmp_path, monkeypatch, secret_service, embedder, caplog
):
    """The key goes from the real keyring to a real `locus serve` that requires it; retrieval answers
    exactly as with the same model on this computer."""
    caplog.set_level(logging.DEBUG)
    Secrets(backend=secret_service).set("server_api_key", KEY)
    server = Served(tmp_path / "server-home", "--port", "0")
    try:
        monkeypatch.setenv("LOCUS_HOME", str(tmp_path / "client-home"))
        paths = resolve_paths()
        paths.ensure()
        secrets = Secrets(backend=secret_service)
        secrets.set("embedding_api_key", KEY)
        settings = (
            Settings()
            .with_value("documents.embedding_server", server.url)
            .with_value("documents.embedding_server_model", MODEL)
            .with_value("documents.embedding_batch_size", 2)
        )
        from app.services import open_library

        files = write_docs(tmp_path / "docs", DOCS)
        lib = open_library(paths, settings, secrets=secrets)
        local = DocumentLibrary(tmp_path / "local-index", bundled_embedder_path(), MODEL, parse_workers=1)
        try:
            assert lib.embedder.name == f"remote:{MODEL}"
            for library in (lib, local):
                library.index(files).wait()
            assert {name: s[0] for name, s in statuses(lib).items()} == dict.fromkeys(DOCS, "done")
            recorded = json.loads((paths.index_dir / "index.json").read_text())
            assert (recorded["embedder"], recorded["dim"]) == (f"remote:{MODEL}", 384)
            for question, expected in QUESTIONS.items():
                names = top_names(lib, question, mode="vector")
                assert names[0] == expected
                assert names == top_names(local, question, mode="vector")  # the same ranking as local
            texts = list(DOCS.values())
            assert np.allclose(lib.embedder.embed(texts), local.embedder.embed(texts), atol=1e-4)
        finally:
            lib.close()
            local.close()
        # Switching back to this computer's model offers a rebuild, as switching models always did.
        with pytest.raises(EmbeddingModelMismatch, match=f"remote:{MODEL}"):
            open_library(paths, Settings(), secrets=secrets)
        # Without the key the server refuses, and says what to do.
        with pytest.raises(EmbeddingServerError, match="asks for an API key") as refused:
            remote(server.url).embed(["hello"])
        assert "embedding_api_key" in refused.value.user_text()
    finally:
        code, stderr = server.stop()
    assert code == 0, stderr
    assert KEY not in caplog.text


@pytest.mark.slow
def test_a_server_that_goes_away_mid_index_loses_nothing_already_indexed(tmp_path, served):
    """The proxy forwards to `locus serve` until the first passage of charlie.txt, then dies: the big
    document embedded before stays indexed and searchable; the rest fail naming the server, and index
    once a server answers again."""
    paragraph = " ".join(f"Alpha harbour log entry {i} records the cargo, the crew and the weather." for i in range(14))
    files = write_docs(
        tmp_path / "docs",
        {
            "alpha.txt": "\n\n".join(f"{paragraph} Section {n}." for n in range(70)),  # over 64 passages: a batch alone
            "charlie.txt": "Charlie the lighthouse keeper polishes the great lens every evening.",
            "delta.txt": "The Delta river floods its plain each spring and leaves fertile silt behind.",
        },
    )
    proxy = DyingProxy(served.url, dies_on="Charlie")
    events = []
    lib = DocumentLibrary(
        tmp_path / "index",
        bundled_embedder_path(),
        MODEL,
        parse_workers=1,
        remote=remote(proxy.url, retries=2, backoff_s=0.05),
        on_event=events.append,
    )
    try:
        job = lib.index(files)
        job.wait()
        assert job.error is None and proxy.died.is_set()
        found = statuses(lib)
        assert found["alpha.txt"][0] == "done"
        for name in ("charlie.txt", "delta.txt"):
            status, reason, message = found[name]
            assert (status, reason) == ("failed", "embedding server unreachable")
            assert f"The embedding server at {proxy.url} could not be reached" in message
        assert top_names(lib, "harbour cargo crew weather", mode="text")[0] == "alpha.txt"
        with pytest.raises(EmbeddingServerUnreachable, match=proxy.url):
            top_names(lib, "harbour cargo")  # a question needs the server too, and says so
    finally:
        lib.close()
    # The server is back (here: the real one, without the proxy): the failed documents index on retry.
    lib = DocumentLibrary(tmp_path / "index", bundled_embedder_path(), MODEL, remote=remote(served.url))
    try:
        failed = [r.doc_id for r in lib.documents() if r.status == "failed"]
        assert len(failed) == 2
        lib.reindex(failed).wait()
        assert {s[0] for s in statuses(lib).values()} == {"done"}
        assert top_names(lib, "Who looks after the lighthouse lens?", mode="vector")[0] == "charlie.txt"
    finally:
        lib.close()


@pytest.mark.slow
def test_a_server_whose_model_or_dimension_differs_from_the_index_gives_a_clear_error(tmp_path, served):
    files = write_docs(tmp_path / "docs", DOCS)
    lib = DocumentLibrary(tmp_path / "index", bundled_embedder_path(), MODEL, remote=remote(served.url))
    try:
        lib.index(files[:2]).wait()
    finally:
        lib.close()
    # Another server that claims the same model but sends 8-dimensional vectors.
    small = LoopbackServer(lambda r: vectors_reply(MODEL, [[1.0] * 8 for _ in r["json"]["input"]]))
    lib = DocumentLibrary(tmp_path / "index", bundled_embedder_path(), MODEL, remote=remote(small.url))
    try:
        assert small.requests == []  # opening asked nothing: the index says its dimension
        with files[1].open("a", encoding="utf-8") as changed:
            changed.write(" The dance's angle shows the direction relative to the sun.")
        lib.index(files).wait()
        found = statuses(lib)
        assert [found[p.name][0] for p in files] == ["done", "failed", "failed"]
        assert found["bees.txt"][1] == found["tides.txt"][1] == "embedding model mismatch"
        message = found["tides.txt"][2]
        assert "sends 8-dimensional vectors" in message and "holds 384-dimensional" in message
        # Nothing already indexed is lost: the changed file's indexed version stays until it can be embedded.
        assert top_names(lib, "waggle dance", mode="text")[0] == "bees.txt"
        with pytest.raises(EmbeddingServerMismatch, match="8-dimensional"):
            top_names(lib, "waggle dance")
    finally:
        lib.close()
        small.stop()
    # A server that answers with another model than the one asked for.
    other = LoopbackServer(lambda r: vectors_reply("BAAI/bge-m3", [[1.0] * 384 for _ in r["json"]["input"]]))
    try:
        with pytest.raises(EmbeddingServerMismatch, match="embeds with 'BAAI/bge-m3', not"):
            remote(other.url).embed(["a"])
    finally:
        other.stop()
    # Another model named in the settings, or this computer's own: the index offers a rebuild.
    with pytest.raises(EmbeddingModelMismatch, match=f"built with remote:{MODEL}.*now remote:other-model") as asked:
        DocumentLibrary(tmp_path / "index", bundled_embedder_path(), MODEL, remote=remote(served.url, "other-model"))
    assert "locus docs rebuild" in asked.value.hint
    with pytest.raises(EmbeddingModelMismatch):
        DocumentLibrary(tmp_path / "index", bundled_embedder_path(), MODEL)


# Retries, backoff and hostile replies on small loopback servers ----------------------------------


def scripted(*replies):
    """A server answering with these replies in turn (then the last one again)."""
    queue = list(replies)

    def answer(request):
        reply = queue.pop(0) if len(queue) > 1 else queue[0]
        return reply(request) if callable(reply) else reply

    return LoopbackServer(answer)


def ok(request):
    return vectors_reply(MODEL, [[float(i + 1), 1.0, 0.0] for i in range(len(request["json"]["input"]))])


def busy(status: int, retry_after: str | None = None):
    headers = {"Content-Type": "application/json"} | ({"Retry-After": retry_after} if retry_after else {})
    return status, headers, b'{"error": {"message": "busy"}}'


def test_429_and_503_are_retried_honouring_retry_after_then_exponential_backoff():
    waits: list[float] = []
    server = scripted(busy(429, "2"), busy(503, "1"), busy(503), busy(502), ok)
    try:
        embedder = remote(server.url, retries=4, backoff_s=0.25, sleep=waits.append, batch_size=2)
        vectors = embedder.embed(["a", "b", "c"])
        assert vectors.shape == (3, 3) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
        assert waits == [2.0, 1.0, 1.0, 2.0]  # as asked, then 0.25 * 2**(attempt-1) for attempts 3 and 4
        assert [len(r["json"]["input"]) for r in server.requests] == [2, 2, 2, 2, 2, 1]  # batches of two
        assert all(r["path"] == "/v1/embeddings" and r["json"]["model"] == MODEL for r in server.requests)
    finally:
        server.stop()


def test_a_retry_after_of_an_hour_waits_at_most_a_minute_and_a_server_that_stays_busy_fails_clearly():
    waits: list[float] = []
    server = scripted(busy(503, "3600"))
    try:
        with pytest.raises(EmbeddingServerUnreachable, match=rf"The embedding server at {server.url} failed") as exc:
            remote(server.url, retries=2, sleep=waits.append).embed(["a"])
        assert waits == [60.0, 60.0] and len(server.requests) == 3
        assert exc.value.detail.startswith("HTTP 503")
    finally:
        server.stop()


def test_a_server_that_is_not_there_fails_after_retries_naming_it():
    server = scripted(ok)
    server.stop()
    waits: list[float] = []
    with pytest.raises(EmbeddingServerUnreachable, match=rf"{server.url} could not be reached \(3 tries\)"):
        remote(server.url, retries=2, sleep=waits.append).embed(["a"])
    assert waits == [0.5, 1.0]


def test_a_request_the_server_rejects_is_not_retried_and_the_key_is_never_repeated():
    key = "sk-embed-secret-0123456789"
    server = scripted((400, {"Content-Type": "application/json"}, json.dumps({"error": f"bad key {key}"}).encode()))
    try:
        with pytest.raises(EmbeddingServerError, match="rejected the request") as exc:
            remote(server.url, api_key=key, sleep=lambda s: None).embed(["a"])
        assert len(server.requests) == 1 and server.requests[0]["headers"]["Authorization"] == f"Bearer {key}"
        assert key not in exc.value.user_text() + (exc.value.detail or "") and "[redacted]" in exc.value.user_text()
    finally:
        server.stop()


def test_a_batch_too_large_for_the_server_says_to_lower_the_batch_size():
    server = scripted((413, {"Content-Type": "text/plain"}, b"Payload Too Large"))
    try:
        with pytest.raises(EmbeddingServerError, match="refused 8 passages in one request") as exc:
            remote(server.url, batch_size=8).embed(["a"] * 8)
        assert "Lower the server batch size" in exc.value.user_text() and len(server.requests) == 1
    finally:
        server.stop()


def test_a_server_that_trickles_its_reply_meets_the_timeout():
    """Each byte comes within the read timeout, but the whole reply never does."""
    stop = threading.Event()

    def trickle(out):
        while not stop.wait(0.2):
            out.write(b" ")
            out.flush()

    server = scripted((200, {"Content-Type": "application/json", "Content-Length": "100000"}, trickle))
    try:
        with pytest.raises(EmbeddingServerUnreachable, match=r"did not answer within 1 s \(1 tries\)"):
            remote(server.url, timeout_s=1.0, retries=0).embed(["a"])
    finally:
        stop.set()
        server.stop()


def raw(body: bytes, headers: dict | None = None):
    return lambda request: (200, {"Content-Type": "application/json", **(headers or {})}, body)


def shaped(**changes):
    def reply(request):
        count = len(request["json"]["input"])
        data = [{"object": "embedding", "index": i, "embedding": [1.0, 2.0, 3.0]} for i in range(count)]
        body = {"object": "list", "model": MODEL, "data": data}
        for key, change in changes.items():
            body = change(body) if key == "body" else body
        return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()

    return reply


HOSTILE = {
    "not JSON": raw(b"<html>gateway</html>"),
    "no 'data' list": raw(b'{"object": "list"}'),
    "1 vectors for 2 texts": shaped(body=lambda b: b | {"data": b["data"][:1]}),
    "not finite": shaped(body=lambda b: b | {"data": [d | {"embedding": [math.nan, 1.0, 1.0]} for d in b["data"]]}),
    "different lengths": shaped(body=lambda b: b | {"data": [b["data"][0], b["data"][1] | {"embedding": [1.0]}]}),
    "not a list of numbers": shaped(body=lambda b: b | {"data": [d | {"embedding": ["1", 2, 3]} for d in b["data"]]}),
    "'index' values": shaped(body=lambda b: b | {"data": [d | {"index": 0} for d in b["data"]]}),
    "a vector of zeros": shaped(body=lambda b: b | {"data": [d | {"embedding": [0.0, 0.0, 0.0]} for d in b["data"]]}),
    "larger than": raw(b"[" + b"1," * (1024 * 1024) + b"1]"),  # 2 MB for two texts: over the cap
}


@pytest.mark.parametrize("what", HOSTILE)
def test_a_hostile_reply_fails_with_a_clear_error(what):
    server = scripted(HOSTILE[what])
    try:
        with pytest.raises(EmbeddingServerError, match=rf"The embedding server at {server.url} sent a") as exc:
            remote(server.url, sleep=lambda s: None).embed(["a", "b"])
        assert what in exc.value.message
    finally:
        server.stop()


def test_base64_vectors_and_shuffled_indexes_are_read_in_the_texts_order():
    import base64

    def reply(request):
        vectors = [np.array([1.0, 0.0], dtype="<f4"), np.array([0.0, 1.0], dtype="<f4")]
        data = [{"index": i, "embedding": base64.b64encode(v.tobytes()).decode()} for i, v in enumerate(vectors)]
        return 200, {"Content-Type": "application/json"}, json.dumps({"data": data[::-1]}).encode()

    server = scripted(reply)
    try:
        assert np.array_equal(remote(server.url).embed(["a", "b"]), [[1.0, 0.0], [0.0, 1.0]])
    finally:
        server.stop()


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://host/v1", "gpu-box:8000/v1", "", "http://u:p@host/v1"])
def test_only_http_and_https_addresses_without_credentials_are_accepted(url):
    with pytest.raises(EmbeddingServerError):
        endpoint_for(url)


def test_an_address_gets_its_embeddings_path_once():
    assert endpoint_for("http://gpu:8080/v1") == "http://gpu:8080/v1/embeddings"
    assert endpoint_for("HTTPS://gpu/v1/embeddings/") == "https://gpu/v1/embeddings"
    assert endpoint_for("http://127.0.0.1:11434/v1/") == "http://127.0.0.1:11434/v1/embeddings"


# Keys and addresses that must never be shown; replies that must not escape the typed errors ------


@pytest.mark.parametrize("key", ["sk-Q7zzk\r\nX-Evil: 1", "sk-Q7zzk\x01tail", "sk-Q7zzkét-tail"])
def test_a_key_that_cannot_go_in_a_header_is_refused_without_showing_it(key):
    server = scripted(ok)
    try:
        with pytest.raises(EmbeddingServerError, match="API key") as exc:
            remote(server.url, api_key=key, retries=0, sleep=lambda s: None).embed(["a"])
        shown = exc.value.user_text() + (exc.value.detail or "") + repr(exc.value.args)
        assert "Q7zzk" not in shown and "tail" not in shown
        assert server.requests == []
    finally:
        server.stop()


def test_an_address_with_query_parameters_is_refused_without_showing_them():
    with pytest.raises(EmbeddingServerError, match="query") as exc:
        endpoint_for("http://gpu-box:8000/v1?api_key=SECRET123")
    assert "SECRET123" not in exc.value.user_text() + (exc.value.detail or "")
    with pytest.raises(EmbeddingServerError) as exc:
        endpoint_for("gpu-box:8000/v1?api_key=SECRET123")
    assert "SECRET123" not in exc.value.user_text() + (exc.value.detail or "")


@pytest.mark.parametrize("status", [200, 400])
def test_a_deeply_nested_reply_fails_with_a_clear_error(status):
    server = scripted((status, {"Content-Type": "application/json"}, b"[" * 200_000))
    try:
        with pytest.raises(EmbeddingServerError, match=rf"The embedding server (at {server.url} sent a|rejected)"):
            remote(server.url, sleep=lambda s: None).embed(["a", "b"])
    finally:
        server.stop()


def test_a_vector_longer_than_any_model_makes_is_refused():
    server = scripted(shaped(body=lambda b: b | {"data": [d | {"embedding": [1.0] * 70_000} for d in b["data"]]}))
    try:
        with pytest.raises(EmbeddingServerError, match="longer than"):
            remote(server.url, sleep=lambda s: None).embed(["a"])
    finally:
        server.stop()


def test_the_reply_cap_stays_far_below_what_a_big_batch_would_allow():
    from engine.rag import remote_embed

    assert remote_embed.MAX_BODY_BYTES <= 64 * 1024 * 1024


def test_a_redirect_names_where_it_points():
    server = scripted((307, {"Location": "https://gpu-box.example/v1/embeddings", "Content-Length": "0"}, b""))
    try:
        with pytest.raises(EmbeddingServerError, match=r"redirects to https://gpu-box\.example/v1/embeddings") as exc:
            remote(server.url, sleep=lambda s: None).embed(["a"])
        assert "set that address" in exc.value.user_text().lower() and len(server.requests) == 1
    finally:
        server.stop()


def test_a_server_asking_for_a_key_when_the_keyring_failed_says_the_keyring_failed():
    server = scripted((401, {"Content-Type": "application/json"}, b'{"error": "no key"}'))
    try:
        embedder = remote(server.url, key_unavailable="the keyring is locked", sleep=lambda s: None)
        with pytest.raises(EmbeddingServerError, match="could not be read from the system keyring") as exc:
            embedder.embed(["a"])
        assert "the keyring is locked" in exc.value.user_text()
    finally:
        server.stop()


def test_a_keyring_that_cannot_be_read_is_named_when_the_server_asks_for_a_key(tmp_path, monkeypatch):
    """app.embeddings: a keyring that fails on read (a locked one; a fake backend, as a locked keyring
    would open a password prompt here) is named, not reported later as a server merely asking for a key."""
    from keyring.errors import KeyringLocked

    from app.embeddings import remote_embedder

    class LockedKeyring:
        def get_password(self, service, name):
            raise KeyringLocked("Failed to unlock the collection!")

    monkeypatch.setenv("LOCUS_HOME", str(tmp_path))
    server = scripted((401, {"Content-Type": "application/json"}, b'{"error": "no key"}'))
    try:
        settings = Settings().with_value("documents.embedding_server", server.url)
        settings = settings.with_value("documents.embedding_server_model", MODEL)
        embedder = remote_embedder(settings, Secrets(backend=LockedKeyring()))
        with pytest.raises(EmbeddingServerError, match="could not be read from the system keyring") as exc:
            embedder.embed(["a"])
        assert "locked" in exc.value.user_text()
        embedder.close()
    finally:
        server.stop()


def test_a_server_that_trickles_its_headers_meets_the_timeout():
    """Each header byte comes within the read timeout, but the headers never end (for 15 s at most)."""
    import socket

    stop = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Pad: ")
            for _ in range(75):
                if stop.wait(0.2):
                    break
                conn.sendall(b"a")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    try:
        with pytest.raises(EmbeddingServerUnreachable, match=r"did not answer within 1 s \(1 tries\)"):
            remote(url, timeout_s=1.0, retries=0).embed(["a"])
    finally:
        stop.set()
        thread.join()
        listener.close()


def test_spaces_pasted_around_a_key_are_left_out():
    server = scripted(ok)
    try:
        remote(server.url, api_key=" sk-Q7zzk \n", retries=0).embed(["a"])
        assert server.requests[0]["headers"]["Authorization"] == "Bearer sk-Q7zzk"
    finally:
        server.stop()
