"""The listening socket and its request handler: where the API may bind, and failures to bind in words.

The standard library's ThreadingHTTPServer gives each connection a thread (the
runtime queues the generations, so nothing here serializes requests), here up to
``max_connections`` of them: a connection beyond that is answered 503 "busy" by
one of a few responders, or closed at once when they are busy too, so no client
can make the server start threads without bound. A request's line and headers
must arrive within ``read_timeout_s`` of the server starting to wait for them
(a total deadline, not a timeout per read: a client that trickles a byte at a
time is cut off just the same), and be at most MAX_HEAD_BYTES long. The standard handler's own errors (a broken
request line, an unknown method) are answered as JSON error objects too.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import io
import ipaddress
import json
import logging
import os
import socket
import socketserver
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from engine.api.errors import ApiError, ApiServerError, busy
from engine.api.transport import MAX_HEAD_BYTES, DeadlineReader, Exchange, too_large

log = logging.getLogger(__name__)

BUSY_RESPONDERS = 4  # threads that answer connections beyond the cap with 503; beyond them, closed at once
_TOO_LONG: dict[int, str] = {
    HTTPStatus.REQUEST_URI_TOO_LONG: "The request line is too long.",
    HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE: (
        f"The request's headers are too large: at most {MAX_HEAD_BYTES // 1024} KB and 100 headers are accepted."
    ),
}
BUSY_LINGER_S = 1.0  # a refused client's request is read and dropped this long, so it sees the 503


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this computer only (127.0.0.0/8, ::1, localhost)."""
    name = host.strip().strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def url_for(host: str, port: int) -> str:
    """The base URL of an API on ``host``:``port``, with /v1 (IPv6 addresses in brackets)."""
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{shown}:{port}/v1"


class ApiHandler(BaseHTTPRequestHandler):
    """Hands every request to the ApiServer that owns this HTTP server (``server.api``)."""

    server: HttpServer  # (the standard handler types it as any socketserver)
    protocol_version = "HTTP/1.1"
    server_version = "Locus"
    timeout = 120  # a client that stops reading the answer frees its thread (reading has deadlines)

    def version_string(self) -> str:
        return self.server_version

    def setup(self) -> None:
        super().setup()
        with contextlib.suppress(OSError):  # each streamed token goes out at once, not held for the next
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = DeadlineReader(self.connection, self.timeout)
        self.rfile = io.BufferedReader(self.reader)
        self.server.api.connection_opened(self)

    def handle_one_request(self) -> None:
        """One request, whose line and headers must arrive within the read deadline (counted from now:
        an idle kept-alive connection is closed after it too)."""
        self.reader.deadline = time.monotonic() + self.server.api.read_timeout_s
        self.reader.budget = MAX_HEAD_BYTES
        try:
            super().handle_one_request()
        except http.client.LineTooLong:  # the request line alone is beyond the budget (headers: parse_request)
            self.requestline, self.request_version, self.command = "", "HTTP/1.1", ""
            self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.api.connection_closed(self)

    def handle_expect_100(self) -> bool:
        """Refuse an oversized body before the client sends it (curl asks first for large bodies)."""
        length = (self.headers.get("Content-Length") or "").strip()
        if length.isdigit() and int(length) > self.server.api.max_request_bytes:
            self.close_connection = True
            Exchange(self).send_error(too_large(int(length), self.server.api.max_request_bytes))
            return False
        return super().handle_expect_100()

    def _serve(self) -> None:
        self.reader.budget = None  # the head is read; the body has its own limit
        self.server.api.handle(Exchange(self, self.server.api.read_timeout_s))

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve  # noqa: N815 - http.server's names

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The standard handler's own errors (bad request line, unknown method, ...) as JSON."""
        self.close_connection = True
        if self.request_version == "HTTP/0.9":  # a garbled request line: answer with a status line all the same
            self.request_version = "HTTP/1.0"
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "Error"
        kind = "server_error" if code >= 500 else "invalid_request_error"
        message = _TOO_LONG.get(code, message or phrase)
        Exchange(self).send_error(ApiError(code, message, type=kind))

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's signature
        log.debug("%s %s", self.client_address[0], format % args)


class HttpServer(ThreadingHTTPServer):
    """A thread per connection, at most ``api.max_connections`` of them; ``api`` is the ApiServer its
    handlers answer for."""

    daemon_threads = True
    block_on_close = False  # ApiServer.stop() ends and joins the connections itself
    allow_reuse_address = os.name != "nt"  # on Windows SO_REUSEADDR would let two servers share a port
    request_queue_size = 64

    def __init__(self, api, address: tuple, family: int):
        self.address_family = family
        self.api = api
        self._slots = threading.BoundedSemaphore(api.max_connections)
        self._responders = threading.BoundedSemaphore(BUSY_RESPONDERS)
        super().__init__(address, ApiHandler)

    def process_request(self, request, client_address) -> None:
        """A thread for the connection while there is room; else a 503, or a close when even that has none."""
        if self._slots.acquire(blocking=False):
            target, release = self.process_request_thread, self._slots.release
        elif self._responders.acquire(blocking=False):
            target, release = self._refuse, self._responders.release
        else:
            log.debug(
                "connection from %s closed: %d connections and %d refusals in progress",
                client_address[0],
                self.api.max_connections,
                BUSY_RESPONDERS,
            )
            self.shutdown_request(request)
            return

        def run() -> None:
            try:
                target(request, client_address)
            finally:
                release()

        try:
            threading.Thread(target=run, name="locus-api-connection", daemon=True).start()
        except RuntimeError:  # no thread could be started (the system's limit)
            release()
            self.shutdown_request(request)

    def _refuse(self, request, client_address) -> None:
        """Answer 503 "busy" without reading the request, then read and drop it briefly (a lingering close:
        closing on unread bytes would reset the connection, and the client would not see the answer)."""
        try:
            error = busy(f"The server has {self.api.max_connections} connections open, as many as it takes.")
            body = json.dumps(error.body()).encode("utf-8")
            head = "".join(
                f"{k}: {v}\r\n"
                for k, v in {
                    "Content-Type": "application/json",
                    "Content-Length": str(len(body)),
                    **error.headers,
                    "Connection": "close",
                }.items()
            )
            request.settimeout(BUSY_LINGER_S)
            request.sendall(f"HTTP/1.1 503 Service Unavailable\r\n{head}\r\n".encode("ascii") + body)
            request.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + BUSY_LINGER_S
            while (left := deadline - time.monotonic()) > 0:
                request.settimeout(left)
                if not request.recv(65536):
                    break
        except OSError:
            pass
        finally:
            self.shutdown_request(request)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # HTTPServer's own would look the host name up in DNS
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def handle_error(self, request, client_address) -> None:
        log.debug("connection from %s ended with an error", client_address, exc_info=True)


def bind(api, host: str, port: int) -> HttpServer:
    """A bound, listening HTTP server for ``api``; ApiServerError when the address cannot be used."""
    if not api.api_key and not is_loopback(host):
        raise ApiServerError(
            f"The API would listen on '{host}', which other computers can reach, but no API key is set.",
            hint="Keep a key in the system keyring as 'server_api_key', or listen on 127.0.0.1.",
        )
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise ApiServerError(
            f"'{host}' is not an address the API can listen on.",
            hint="Use an IP address of this computer, such as 127.0.0.1.",
            detail=str(exc),
        ) from None
    family, _, _, _, address = infos[0]
    try:
        return HttpServer(api, address[:2] if family == socket.AF_INET else address, family)
    except OSError as exc:
        raise _bind_error(exc, host, port) from None


def _bind_error(exc: OSError, host: str, port: int) -> ApiServerError:
    code = exc.errno
    if code == errno.EADDRINUSE or getattr(exc, "winerror", None) == 10048:
        return ApiServerError(
            f"Port {port} on {host} is already in use (by another Locus, or another program).",
            hint="Stop that program, or choose another port for the API.",
            detail=str(exc),
        )
    if code in (errno.EACCES, errno.EPERM):
        return ApiServerError(
            f"This user may not listen on port {port}.", hint="Use a port above 1023.", detail=str(exc)
        )
    if code == errno.EADDRNOTAVAIL:
        return ApiServerError(
            f"'{host}' is not an address of this computer.",
            hint="Use 127.0.0.1, or one of this computer's own addresses.",
            detail=str(exc),
        )
    return ApiServerError(f"The API could not listen on {host}:{port}: {exc.strerror or exc}.", detail=str(exc))
