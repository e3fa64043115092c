"""Embeddings from an OpenAI-compatible server (``POST {base}/embeddings``).

For collections too big for one computer: Text Embeddings Inference, vLLM, Infinity,
Ollama or another Locus's ``locus serve`` embed, and this computer only chunks,
stores and searches. ``RemoteEmbedder`` offers what the indexer, the retriever and
the citations use of ``Embedder`` (``embed``, ``embed_query``, ``info``, ``name``,
``tokenizer_file``, ``close``).

Every reply is treated as hostile: the body is read up to a size cap, and must be
JSON with exactly one finite, non-zero vector per text, all of one dimension (the
index's, once known) and from the model asked for. Connection errors, timeouts,
429 and 5xx are retried with exponential backoff (a server's Retry-After is
honoured, up to a cap); anything else fails at once. The API key goes only into
the Authorization header, never into a log or an error.
"""

from __future__ import annotations

import base64
import email.utils
import logging
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpcore2
import httpx2
import numpy as np

from engine.rag.embed import EmbedderInfo, EmbeddingError

log = logging.getLogger(__name__)

REMOTE_PREFIX = "remote:"  # what the index records for a server's model: "remote:<model>"
MAX_RETRY_AFTER_S = 60.0  # a longer Retry-After is waited only this long
BYTES_PER_TEXT = 256 * 1024  # JSON of an 8192-dimension vector is about 180 KB
MAX_BODY_BYTES = 64 * 1024 * 1024  # parsed into Python floats a reply takes several times this
MAX_DIM = 65536  # no embedding model makes longer vectors
RETRY_STATUS = (408, 429, 500, 502, 503, 504)


class EmbeddingServerError(EmbeddingError):
    """The embedding server could not be reached, refused the request or sent something unusable."""

    code = "embedding_server_failed"
    status = "embedding server failed"  # the short reason beside a document that failed because of it


class EmbeddingServerUnreachable(EmbeddingServerError):
    """The embedding server did not answer (connection refused or broken, or a timeout), even after retries."""

    code = "embedding_server_unreachable"
    status = "embedding server unreachable"
    ends_job = True


class EmbeddingServerMismatch(EmbeddingServerError):
    """The server's model or vector dimension is not the one the document index was built with."""

    code = "embedding_server_mismatch"
    status = "embedding model mismatch"
    ends_job = True


def remote_name(model: str) -> str:
    """What the index records for vectors from a server's model (differs from every local model's name)."""
    return REMOTE_PREFIX + model


def endpoint_for(url: str) -> str:
    """The embeddings address for a server address such as http://host:8000/v1 (or one ending /embeddings).

    Only http and https are accepted, with a host and no user name, password or query parameters
    in the address (a key there would be shown in messages and the log).
    """
    text = (url or "").strip()
    parts = urlsplit(text)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        shown = text.split("?", 1)[0].split("#", 1)[0][:200]
        raise EmbeddingServerError(
            f"'{shown}' is not an http or https address of an embedding server.",
            hint="Give its OpenAI-compatible address, e.g. http://gpu-box:8080/v1.",
        )
    if parts.username or parts.password:
        raise EmbeddingServerError(
            "The embedding server's address must not hold a user name or password.",
            hint="Keep the key in the system keyring as 'embedding_api_key' instead.",
        )
    if parts.query:
        raise EmbeddingServerError(
            "The embedding server's address must not hold query parameters (after '?').",
            hint="Give only its address, e.g. http://gpu-box:8080/v1; keep a key in the system keyring "
            "as 'embedding_api_key'.",
        )
    path = parts.path.rstrip("/")
    if not path.endswith("/embeddings"):
        path += "/embeddings"
    return urlunsplit((parts.scheme.lower(), parts.netloc, path, "", ""))


def _same_model(asked: str, answered: str) -> bool:
    """Whether a server's ``model`` names the model asked for (case, an organisation prefix and
    Ollama's ':latest' aside)."""

    def norm(name: str) -> str:
        name = name.strip().lower().removesuffix(":latest")
        return name.rsplit("/", 1)[-1]

    return norm(asked) == norm(answered)


class RemoteEmbedder:
    """Embeds text on an OpenAI-compatible server, in batches, with retries; thread-safe.

    ``expected_dim``: the index's dimension; a server that sends another fails with
    EmbeddingServerMismatch. ``tokenizer_file``: a local tokenizer.json the chunker counts
    passage lengths with (the server's own tokenizer is not at hand).
    """

    def __init__(
        self,
        url: str,
        model: str,
        *,
        tokenizer_file: str | Path,
        api_key: str | None = None,
        batch_size: int = 32,
        timeout_s: float = 60.0,
        retries: int = 4,
        backoff_s: float = 0.5,
        expected_dim: int | None = None,
        key_unavailable: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        """``key_unavailable``: why the key could not be read (the keyring failed), said if the server asks for one."""
        if not model.strip():
            raise EmbeddingServerError(
                "No model is set for the embedding server.",
                hint="Enter the model the server embeds with in Settings › Documents.",
            )
        api_key = (api_key or "").strip() or None  # spaces pasted around a key would make the header illegal
        if api_key and not (api_key.isascii() and api_key.isprintable()):
            raise EmbeddingServerError(
                "The embedding server's API key holds characters that cannot be sent "
                "(only printable ASCII can go in a request header).",
                hint="Store it again without spaces at the ends or line breaks: locus secrets set embedding_api_key.",
            )
        self.endpoint = endpoint_for(url)
        parts = urlsplit(self.endpoint)
        self.base_url = urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")).removesuffix("/embeddings")
        self.model = model.strip()
        self.name = remote_name(self.model)
        self._tokenizer_file = Path(tokenizer_file)
        self._api_key = api_key or None
        self._key_unavailable = key_unavailable
        self.batch_size = max(1, int(batch_size))
        self.timeout_s = timeout_s
        self.retries = max(0, int(retries))
        self.backoff_s = backoff_s
        self.expected_dim = expected_dim
        self._sleep = sleep
        self._info: EmbedderInfo | None = None
        self._deadline = threading.local()  # this thread's request must be over by .at (time.monotonic)
        self._client = httpx2.Client(
            timeout=httpx2.Timeout(timeout_s, connect=min(timeout_s, 15.0)),
            follow_redirects=False,
            trust_env=False,
            transport=_transport_with_deadline(lambda: getattr(self._deadline, "at", None)),
        )
        self.requests_sent = 0  # HTTP requests made, retries included (for tests and the trace)

    # What Embedder offers --------------------------------------------------------------

    @property
    def tokenizer_file(self) -> Path:
        return self._tokenizer_file

    @property
    def started(self) -> bool:
        return self._info is not None

    @property
    def info(self) -> EmbedderInfo:
        """The model's name and dimension (asks the server once, embedding a word, if no vector came yet)."""
        if self._info is None:
            self.embed(["dimension"])
        assert self._info is not None
        return self._info

    @property
    def worker_pid(self) -> int | None:
        return None  # no local worker: the server embeds

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embeddings of texts, shape (len(texts), dim), L2-normalised float32; batch_size texts a request."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.info.dim), dtype=np.float32)
        parts = [self._embed_batch(texts[i : i + self.batch_size]) for i in range(0, len(texts), self.batch_size)]
        return np.concatenate(parts, axis=0)

    def embed_few(self, texts: list[str]) -> np.ndarray:
        return self.embed(texts)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed([text])[0]

    def close(self) -> None:
        self._client.close()

    # One batch -------------------------------------------------------------------------

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        body = self._post_with_retries({"model": self.model, "input": texts, "encoding_format": "float"}, len(texts))
        vectors = self._vectors(body, len(texts))
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        if not np.all(norms > 0):
            raise self._unusable("a vector of zeros")
        vectors = (vectors / norms).astype(np.float32)
        if self._info is None:
            self._info = EmbedderInfo(self.name, vectors.shape[1], "server", self.base_url, 0)
        return vectors

    def _post_with_retries(self, payload: dict, count: int) -> object:
        attempt = 0
        while True:
            attempt += 1
            wait: float | None = None
            try:
                status, headers, raw = self._post(payload, count)
            except httpx2.TransportError as exc:  # refused, reset, timed out, broken off mid-body
                if attempt > self.retries:
                    raise self._unreachable(exc, attempt) from None
                log.info("embedding server %s: %s; retry %d", self.base_url, type(exc).__name__, attempt)
            else:
                if status == 200:
                    return _json(raw, self)
                if 300 <= status < 400:
                    raise self._redirect(status, headers.get("location", ""))
                if status not in RETRY_STATUS or attempt > self.retries:
                    raise self._http_error(status, raw)
                wait = _retry_after(headers.get("retry-after"))
                log.info("embedding server %s: HTTP %d; retry %d", self.base_url, status, attempt)
            self._sleep(min(wait, MAX_RETRY_AFTER_S) if wait is not None else self.backoff_s * 2 ** (attempt - 1))

    def _post(self, payload: dict, count: int) -> tuple[int, dict, bytes]:
        """One request: (status, headers, body read up to the cap); raises EmbeddingServerError beyond it."""
        headers = {"Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        limit = min(MAX_BODY_BYTES, 1024 * 1024 + count * BYTES_PER_TEXT)
        self.requests_sent += 1
        # The timeout holds for each read; a server that trickles its headers or reply byte by byte meets
        # this one (every read of the connection is cut to the time left, see _DeadlineStream).
        deadline = self._deadline.at = time.monotonic() + 2 * self.timeout_s
        try:
            return self._read(payload, headers, limit, deadline)
        finally:
            self._deadline.at = None

    def _read(self, payload: dict, headers: dict, limit: int, deadline: float) -> tuple[int, dict, bytes]:
        with self._client.stream("POST", self.endpoint, json=payload, headers=headers) as resp:
            declared = resp.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                raise self._too_big(limit)
            chunks, size = [], 0
            for chunk in resp.iter_bytes():
                size += len(chunk)
                if size > limit:
                    raise self._too_big(limit)
                if time.monotonic() > deadline:
                    raise httpx2.ReadTimeout(f"the reply took over {2 * self.timeout_s:g} s")
                chunks.append(chunk)
            return resp.status_code, {k.lower(): v for k, v in resp.headers.items()}, b"".join(chunks)

    def _vectors(self, body: object, count: int) -> np.ndarray:
        """The reply's vectors, in the order of the texts, after every check."""
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise self._unusable("no 'data' list")
        answered = body.get("model")
        if isinstance(answered, str) and answered and not _same_model(self.model, answered):
            raise EmbeddingServerMismatch(
                f"The embedding server at {self.base_url} embeds with '{answered[:100]}', not '{self.model}'.",
                hint="Set the model it serves in Settings › Documents; vectors of two models cannot be mixed.",
            )
        data = body["data"]
        if len(data) != count:
            raise self._unusable(f"{len(data)} vectors for {count} texts")
        rows: list = [None] * count
        for position, item in enumerate(data):
            if not isinstance(item, dict):
                raise self._unusable("an entry that is not an object")
            index = item.get("index", position)
            if type(index) is not int or not 0 <= index < count or rows[index] is not None:
                raise self._unusable("entries whose 'index' values are not 0 to n-1")
            rows[index] = _vector(item.get("embedding"), self)
        dims = {len(row) for row in rows}
        if len(dims) != 1 or 0 in dims:
            raise self._unusable("vectors of different lengths")
        dim = dims.pop()
        known = self.expected_dim or (self._info.dim if self._info is not None else None)
        if known is not None and dim != known:
            raise EmbeddingServerMismatch(
                f"The embedding server at {self.base_url} sends {dim}-dimensional vectors from '{self.model}', "
                f"but the document index holds {known}-dimensional ones.",
                hint="Choose the server and model that built the index, or re-index with this one "
                "('locus docs rebuild', or Rebuild in the window).",
            )
        vectors = np.asarray(rows, dtype=np.float64)
        if not np.all(np.isfinite(vectors)):
            raise self._unusable("numbers that are not finite (NaN or infinity)")
        return vectors

    # Errors in words for people --------------------------------------------------------

    def _scrub(self, text: str) -> str:
        if not self._api_key:
            return text
        for form in (self._api_key, repr(self._api_key)[1:-1], self._api_key.encode().hex()):
            text = text.replace(form, "[redacted]")
        return text

    def _redirect(self, status: int, location: str) -> EmbeddingServerError:
        where = "".join(ch for ch in location.split("?", 1)[0] if ch.isprintable())[:200]
        if not where:
            return self._http_error(status, b"")
        return EmbeddingServerError(
            f"The embedding server at {self.base_url} redirects to {where}; set that address instead.",
            hint="Locus does not follow redirects, so the key goes only to the address you set.",
            detail=f"HTTP {status}",
        )

    def _unusable(self, what: str) -> EmbeddingServerError:
        return EmbeddingServerError(
            f"The embedding server at {self.base_url} sent a reply Locus cannot use ({what}).",
            hint="Check that the address is an OpenAI-compatible /v1 endpoint and the model an embedding model.",
            detail=what,
        )

    def _too_big(self, limit: int) -> EmbeddingServerError:
        return EmbeddingServerError(
            f"The embedding server at {self.base_url} sent a reply larger than {limit / 1024 / 1024:.1f} MB.",
            hint="Lower the embedding batch size, or check the server.",
        )

    def _unreachable(self, exc: BaseException, attempts: int) -> EmbeddingServerUnreachable:
        timed_out = isinstance(exc, httpx2.TimeoutException)
        what = f"did not answer within {self.timeout_s:g} s" if timed_out else "could not be reached"
        return EmbeddingServerUnreachable(
            f"The embedding server at {self.base_url} {what} ({attempts} tries).",
            hint="Check that it is running and reachable; documents not yet embedded can be indexed again later.",
            detail=self._scrub(f"{type(exc).__name__}: {exc}"),
        )

    def _http_error(self, status: int, raw: bytes) -> EmbeddingServerError:
        words = self._scrub(_said(_json_or_text(raw)))
        if status in (401, 403):
            message = (
                f"The embedding server at {self.base_url} refused the API key."
                if self._api_key
                else f"The embedding server at {self.base_url} asks for an API key."
            )
            hint = "Store its key in Settings › Documents, or with: locus secrets set embedding_api_key."
            if not self._api_key and self._key_unavailable:
                message = (
                    f"The embedding server at {self.base_url} asks for an API key, and the key could not be "
                    "read from the system keyring."
                )
                hint = f"{self._key_unavailable[:300]} Unlock or start the keyring, then index again."
        elif status == 404 and "model" in words.lower():
            message, hint = f"The embedding server has no model '{self.model}'.", "Set a model it serves."
        elif status == 404:
            message = f"The server at {self.base_url} has no /embeddings there."
            hint = "The address usually ends in /v1."
        elif status == 413:
            message = f"The embedding server at {self.base_url} refused {self.batch_size} passages in one request."
            hint = "Lower the server batch size in Settings › Documents."
        elif 400 <= status < 500:
            message, hint = f"The embedding server rejected the request: {words[:200]}", None
        else:
            message, hint = f"The embedding server at {self.base_url} failed (HTTP {status}).", "Check its logs."
        kind = EmbeddingServerUnreachable if status in RETRY_STATUS else EmbeddingServerError
        return kind(message, hint=hint, detail=f"HTTP {status}: {words[:300]}")


def _json(raw: bytes, embedder: RemoteEmbedder) -> object:
    import json

    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested beyond the parser's depth
        raise embedder._unusable("not JSON") from None


def _json_or_text(raw: bytes) -> object:
    import json

    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return raw[:300].decode("utf-8", "replace")


def _said(body: object) -> str:
    """The server's own words: OpenAI's error.message, FastAPI's detail, TEI's error, or the text."""
    for _ in range(4):
        if isinstance(body, list) and body:
            body = body[0]
        elif isinstance(body, dict):
            body = body.get("error", body.get("detail", body.get("message", body.get("msg", ""))))
        else:
            break
    return str(body)[:300]


def _vector(value: object, embedder: RemoteEmbedder) -> list:
    """One embedding: a list of numbers, or base64 float32 little-endian bytes (OpenAI's base64 format)."""
    if isinstance(value, (str, list)) and len(value) > (MAX_DIM * 16 // 3 + 4 if isinstance(value, str) else MAX_DIM):
        raise embedder._unusable(f"a vector longer than {MAX_DIM} numbers")
    if isinstance(value, str):
        try:
            raw = base64.b64decode(value, validate=True)
        except ValueError:
            raise embedder._unusable("an embedding that is neither numbers nor base64") from None
        if len(raw) % 4:
            raise embedder._unusable("a base64 embedding of a length that is not whole float32s")
        return np.frombuffer(raw, dtype="<f4").astype(np.float64).tolist()
    if not isinstance(value, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value):
        raise embedder._unusable("an embedding that is not a list of numbers")
    return value


def _retry_after(value: str | None) -> float | None:
    """Seconds a Retry-After header asks to wait (a number or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _transport_with_deadline(deadline: Callable[[], float | None]) -> httpx2.HTTPTransport:
    """httpx's transport whose connections read no longer than until ``deadline()`` (when one is set)."""
    transport = httpx2.HTTPTransport()
    pool = transport._pool  # httpx builds the pool without a way to pass a network backend
    pool._network_backend = _DeadlineBackend(pool._network_backend, deadline)
    return transport


class _DeadlineBackend(httpcore2.NetworkBackend):
    def __init__(self, inner: httpcore2.NetworkBackend, deadline: Callable[[], float | None]):
        self._inner, self._deadline = inner, deadline

    def connect_tcp(self, *args, **kwargs) -> httpcore2.NetworkStream:
        return _DeadlineStream(self._inner.connect_tcp(*args, **kwargs), self._deadline)

    def connect_unix_socket(self, *args, **kwargs) -> httpcore2.NetworkStream:
        return _DeadlineStream(self._inner.connect_unix_socket(*args, **kwargs), self._deadline)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _DeadlineStream(httpcore2.NetworkStream):
    """A connection whose reads wait at most until the request's deadline, however the bytes trickle."""

    def __init__(self, inner: httpcore2.NetworkStream, deadline: Callable[[], float | None]):
        self._inner, self._deadline = inner, deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        deadline = self._deadline()
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise httpcore2.ReadTimeout("the reply did not come before the deadline")
            timeout = left if timeout is None else min(timeout, left)
        return self._inner.read(max_bytes, timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, timeout)

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, *args, **kwargs) -> httpcore2.NetworkStream:
        return _DeadlineStream(self._inner.start_tls(*args, **kwargs), self._deadline)

    def get_extra_info(self, info: str):
        return self._inner.get_extra_info(info)
