"""The Exchange: one HTTP request as the endpoints read it and answer it.

Every answer is JSON, or server-sent events over chunked transfer encoding, so
connections are kept alive between requests, streamed or not. Bodies are read
within the size limit (Content-Length checked before reading, chunked bodies
counted as they come), and a body left unread is dropped before the next request.
"""

from __future__ import annotations

import json
import select
import socket
from urllib.parse import urlsplit

from engine.server.errors import ApiError

DRAIN_LIMIT = 64 * 1024 * 1024  # an oversized body is read and dropped up to this, so the 413 reaches the client
_WRITE_ERRORS = (BrokenPipeError, ConnectionError, TimeoutError, socket.timeout, OSError)


class ClientGone(Exception):
    """The client closed the connection (or stopped reading) before the answer was written."""


class Exchange:
    """One request and its response, as an endpoint sees them."""

    def __init__(self, handler):  # the BaseHTTPRequestHandler of the connection
        self._h = handler
        self.method = handler.command or ""
        self.path = urlsplit(getattr(handler, "path", "") or "/").path.rstrip("/") or "/"
        self.status: int | None = None  # the status sent, once headers are out
        self.gone = False
        self.body_read = False
        self._chunked = False

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
        """The request body, at most ``limit`` bytes (413 beyond it, from Content-Length before reading)."""
        self.body_read = True
        coding = (self.header("Transfer-Encoding") or "").strip().lower()
        if coding:
            if coding != "chunked":
                raise ApiError(501, f"Transfer-Encoding '{coding}' is not supported; send a Content-Length.")
            return self._read_chunked(limit)
        length = (self.header("Content-Length") or "").strip()
        if not length:
            return b""
        if not length.isdigit():
            self._h.close_connection = True
            raise ApiError(400, f"The Content-Length header '{length[:20]}' is not a number.")
        size = int(length)
        if size > limit:
            self._drain(lambda: self._discard(size))
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

    def _read(self, size: int) -> bytes:
        try:
            data = self._h.rfile.read(size)
        except _WRITE_ERRORS:
            data = b""
        if len(data) < size:
            self.gone = True
            raise ClientGone()
        return data

    def _read_chunked(self, limit: int) -> bytes:
        parts, total = [], 0
        chunks = self._chunks()
        for data in chunks:
            total += len(data)
            if total > limit:
                self._drain(lambda: sum(len(d) for d in _until(chunks, DRAIN_LIMIT)))
                raise too_large(None, limit)
            parts.append(data)
        return b"".join(parts)

    def _chunks(self):
        """The data of each chunk of a chunked body (trailers are read and dropped)."""
        rfile = self._h.rfile
        while True:
            line = rfile.readline(1026)
            if not line:
                self.gone = True
                raise ClientGone()
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                self._h.close_connection = True
                raise ApiError(400, "The chunked request body is malformed.") from None
            if size == 0:
                while rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass
                return
            yield self._read(size)
            rfile.readline(3)  # the CRLF after the chunk

    def _discard(self, size: int) -> int:
        left = min(size, DRAIN_LIMIT)
        while left > 0:
            data = self._h.rfile.read(min(left, 1 << 16))
            if not data:
                break
            left -= len(data)
        return size - left

    def _drain(self, read) -> None:
        """Read and drop what the client is still sending (briefly), then close after the answer.

        Closing with unread bytes would reset the connection, and the client would see that instead of the 413.
        """
        self._h.close_connection = True
        sock = self._h.connection
        try:
            sock.settimeout(5.0)
            read()
        except (ClientGone, ApiError, *_WRITE_ERRORS):
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

    def start_stream(self) -> None:
        """Headers of a server-sent event stream (chunked on HTTP/1.1, else until the connection closes)."""
        h = self._h
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


def _until(chunks, most: int):
    seen = 0
    for data in chunks:
        seen += len(data)
        yield data
        if seen >= most:
            return
