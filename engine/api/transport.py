"""The Exchange: one HTTP request as the endpoints read it and answer it.

Every answer is JSON, or server-sent events over chunked transfer encoding, so
connections are kept alive between requests, streamed or not. Bodies are read
within the size limit: Content-Length, and each chunk's declared size, are checked
before anything is read, so an oversized body is refused without being buffered.
A refused body is dropped after the answer (a lingering close); a body left unread
by an answer is read and dropped before the next request. A body must arrive
within the read deadline (408 otherwise), however slowly its bytes trickle in.
"""

from __future__ import annotations

import http.client
import io
import json
import re
import select
import socket
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from engine.api.errors import ApiError

MAX_HEAD_BYTES = 64 * 1024  # a request line and its headers (a real client's are a few hundred bytes)
DRAIN_LIMIT = 64 * 1024 * 1024  # an oversized body is read and dropped up to this, so the 413 reaches the client
LINGER_S = 5.0  # ... for at most this long after the answer
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,15}")  # 15 hex digits is already 1 EB: longer is nonsense
_LINE_MAX = 1024  # a chunk-size line (with extensions), or a trailer line
_WRITE_ERRORS = (BrokenPipeError, ConnectionError, TimeoutError, socket.timeout, OSError)


class ClientGone(Exception):
    """The client closed the connection (or stopped reading) before the answer was written."""


class DeadlineReader(io.RawIOBase):
    """A socket's bytes, read within a total deadline when one is set (TimeoutError past it), so a client
    that sends one byte at a time cannot hold the connection longer than that; ``timeout`` applies to
    each read when no deadline is set (and to writes, always). While ``budget`` is set (the request's
    head), reading more than that many bytes fails as a header line too long (431)."""

    def __init__(self, sock: socket.socket, timeout: float | None):
        self._sock = sock
        self._timeout = timeout
        self.deadline: float | None = None  # time.monotonic() by which reading must be done
        self.budget: int | None = None  # bytes that may still be read

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.budget is not None:
            if self.budget <= 0:
                raise http.client.LineTooLong(f"request head beyond {MAX_HEAD_BYTES // 1024} KB")
            buffer = memoryview(buffer)[: self.budget]
        deadline = self.deadline
        if deadline is None:
            n = self._sock.recv_into(buffer)
        else:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the request did not arrive in time")
            self._sock.settimeout(left if self._timeout is None else min(left, self._timeout))
            try:
                n = self._sock.recv_into(buffer)
            finally:
                self._sock.settimeout(self._timeout)
        if self.budget is not None:
            self.budget -= n
        return n


class Exchange:
    """One request and its response, as an endpoint sees them."""

    def __init__(self, handler, read_timeout_s: float | None = None):  # the connection's BaseHTTPRequestHandler
        self._h = handler
        self._read_timeout_s = read_timeout_s  # the body must arrive within this
        self._timed_out = False
        self.method = handler.command or ""
        self.path = urlsplit(getattr(handler, "path", "") or "/").path.rstrip("/") or "/"
        self.status: int | None = None  # the status sent, once headers are out
        self.gone = False
        self.body_read = False
        self._chunked = False
        self.streaming = False  # start_stream has sent the stream's headers
        self._linger = False  # the body was refused part-read: drop the rest after the answer, then close

    @property
    def headers_sent(self) -> bool:
        return self.status is not None

    def header(self, name: str) -> str | None:
        return self._h.headers.get(name)

    @property
    def peer(self) -> str:
        return str(self._h.client_address[0])

    # Reading ---------------------------------------------------------------------------

    def read_body(self, limit: int) -> bytes:
        """The request body, at most ``limit`` bytes (413 beyond it, from Content-Length before reading;
        408 when it does not arrive within the read deadline)."""
        self.body_read = True
        reader = getattr(self._h, "reader", None)
        if reader is not None and self._read_timeout_s is not None:
            reader.deadline = time.monotonic() + self._read_timeout_s
        try:
            return self._read_body(limit)
        except ClientGone:
            if self._timed_out:
                self.gone = False  # still there, only slow: it is told why it is cut off
                raise ApiError(
                    408,
                    f"The request body did not arrive within {self._read_timeout_s:g} seconds.",
                    code="request_timeout",
                ) from None
            raise

    def _read_body(self, limit: int) -> bytes:
        coding = (self.header("Transfer-Encoding") or "").strip().lower()
        if coding:
            if coding != "chunked":
                self._refuse()
                raise ApiError(501, f"Transfer-Encoding '{coding}' is not supported; send a Content-Length.")
            return self._read_chunked(limit)
        length = (self.header("Content-Length") or "").strip()
        if not length:
            return b""
        if not length.isdigit():
            self._refuse()
            raise ApiError(400, f"The Content-Length header '{length[:20]}' is not a number.")
        size = int(length)
        if size > limit:
            self._refuse()
            raise too_large(size, limit)
        return self._read(size)

    def discard_body(self, limit: int) -> None:
        """Read and drop a body the answer did not need, so the next request on the connection starts clean."""
        if self.body_read or self.gone:
            return
        try:
            self.read_body(limit)
        except (ApiError, ClientGone):
            self._h.close_connection = True

    def finish(self, limit: int) -> None:
        """After the answer: drop the body it did not read, or what is left of a refused one (then close)."""
        self.discard_body(limit)
        if self._linger and not self.gone:
            self._linger = False
            self._drop_rest()

    def _read(self, size: int) -> bytes:
        try:
            data = self._h.rfile.read(size)
        except _WRITE_ERRORS as exc:
            self._lost_reading(exc)
        if len(data) < size:
            self.gone = True
            raise ClientGone()
        return data

    def _lost_reading(self, exc: BaseException):
        """Reading failed: the client left, or its body was too slow (then the connection is closed too)."""
        self._timed_out = isinstance(exc, TimeoutError)
        self.gone = True
        self._h.close_connection = True
        raise ClientGone()

    def _read_chunked(self, limit: int) -> bytes:
        """A chunked body: each chunk's declared size is checked against the limit before it is read."""
        parts, total = [], 0
        while True:
            size = self._chunk_size(self._line())
            if size == 0:
                break
            if total + size > limit:
                self._refuse()
                raise too_large(None, limit)
            parts.append(self._read(size))  # at most ``limit`` bytes in all, so bounded
            total += size
            if self._line() not in (b"\r\n", b"\n"):
                raise self._malformed("a chunk is longer than its declared size")
        while (line := self._line()) not in (b"\r\n", b"\n"):  # the trailers, dropped
            total += len(line)
            if total > limit:
                self._refuse()
                raise too_large(None, limit)
        return b"".join(parts)

    def _line(self) -> bytes:
        """One CRLF-ended line of the chunked framing (ClientGone at the end of input, 400 if too long)."""
        try:
            line = self._h.rfile.readline(_LINE_MAX + 2)
        except _WRITE_ERRORS as exc:
            self._lost_reading(exc)
        if not line:
            self.gone = True
            raise ClientGone()
        if not line.endswith(b"\n"):
            raise self._malformed("a chunk-size or trailer line is too long")
        return line

    def _chunk_size(self, line: bytes) -> int:
        text = line.split(b";", 1)[0].strip(b" \t\r\n")
        if not _CHUNK_SIZE.fullmatch(text):
            shown = text[:20].decode("ascii", "replace")
            raise self._malformed(f"'{shown}' is not a chunk size (hexadecimal digits)")
        return int(text, 16)

    def _malformed(self, why: str) -> ApiError:
        self._refuse()
        return ApiError(400, f"The chunked request body is malformed: {why}.", code="invalid_chunked_body")

    def _refuse(self) -> None:
        """The body will not be read to its end: close after the answer, dropping what still comes."""
        self._h.close_connection = True
        self._linger = True

    def _drop_rest(self) -> None:
        """A lingering close: end our side (the client reads the answer to its end), then read and drop
        what the client still sends, briefly. Closing with unread bytes would reset the connection, and
        the client would see that instead of the answer."""
        sock = self._h.connection
        deadline = time.monotonic() + LINGER_S
        left = DRAIN_LIMIT
        try:
            sock.shutdown(socket.SHUT_WR)
            while left > 0 and (wait := deadline - time.monotonic()) > 0:
                sock.settimeout(wait)
                data = sock.recv(min(left, 1 << 16))
                if not data:
                    break
                left -= len(data)
        except _WRITE_ERRORS:
            pass

    # Writing ---------------------------------------------------------------------------

    def send_json(self, status: int, obj: dict, headers: dict[str, str] | None = None) -> None:
        """A complete JSON response."""
        data = json.dumps(obj, ensure_ascii=False).encode("utf-8")
        h = self._h
        try:
            h.send_response(status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                h.send_header(key, value)
            if h.close_connection:
                h.send_header("Connection", "close")
            h.end_headers()
            self.status = status
            if self.method != "HEAD":
                h.wfile.write(data)
        except _WRITE_ERRORS:
            self._lost()

    def send_error(self, error: ApiError) -> None:
        """The error's status and OpenAI-style body (nothing when the client has already gone)."""
        if self.gone:
            return
        try:
            self.send_json(error.status, error.body(), error.headers)
        except ClientGone:
            pass

    def open_stream(self, opening: Callable[[], dict | None]) -> None:
        """Start the stream, with its opening event if ``opening`` gives one, unless it is open already:
        a stream opens with its first piece of text, or at its end when none came."""
        if not self.streaming:
            self.start_stream()
            first = opening()
            if first is not None:
                self.event(first)

    def start_stream(self) -> None:
        """Headers of a server-sent event stream (chunked on HTTP/1.1, else until the connection closes)."""
        h = self._h
        self.streaming = True
        self._chunked = h.request_version == "HTTP/1.1"
        try:
            h.send_response(200)
            h.send_header("Content-Type", "text/event-stream; charset=utf-8")
            h.send_header("Cache-Control", "no-cache")
            h.send_header("X-Accel-Buffering", "no")  # a reverse proxy must not hold the tokens back
            if self._chunked:
                h.send_header("Transfer-Encoding", "chunked")
            else:
                h.close_connection = True
                h.send_header("Connection", "close")
            h.end_headers()
            self.status = 200
        except _WRITE_ERRORS:
            self._lost()

    def event(self, obj: dict | str) -> None:
        """One ``data:`` event (a JSON object, or the literal ``[DONE]``); ClientGone if nobody reads."""
        payload = obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False)
        self._write(b"data: " + payload.encode("utf-8") + b"\n\n")

    def end_stream(self) -> None:
        self.event("[DONE]")
        if self._chunked:
            try:
                self._h.wfile.write(b"0\r\n\r\n")
            except _WRITE_ERRORS:
                self._lost()

    def _write(self, data: bytes) -> None:
        if self.gone:
            raise ClientGone()
        try:
            self._h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if self._chunked else data)
        except _WRITE_ERRORS:
            self._lost()

    def _lost(self):
        self.gone = True
        self._h.close_connection = True
        raise ClientGone()

    def client_gone(self) -> bool:
        """Whether the client has closed its end (checked without blocking while an answer is generated)."""
        if self.gone:
            return True
        sock = self._h.connection
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable and sock.recv(1, socket.MSG_PEEK) == b"":
                self.gone = True
        except (OSError, ValueError):
            self.gone = True
        if self.gone:
            self._h.close_connection = True
        return self.gone


def too_large(size: int | None, limit: int) -> ApiError:
    said = f"The request body is {size / 1024:,.0f} KB" if size is not None else "The request body is too large"
    return ApiError(413, f"{said}; this server accepts at most {limit / 1024:,.0f} KB.", code="request_too_large")
