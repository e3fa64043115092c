"""The listening socket and its request handler: where the API may bind, and failures to bind in words.

The standard library's ThreadingHTTPServer gives each connection a thread (the
runtime queues the generations, so nothing here serializes requests). The
standard handler's own errors (a broken request line, an unknown method) are
answered as JSON error objects too.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import os
import socket
import socketserver
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from engine.server.errors import ApiError, ApiServerError
from engine.server.transport import Exchange, too_large

log = logging.getLogger(__name__)


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

    protocol_version = "HTTP/1.1"
    server_version = "Locus"
    timeout = 120  # an idle kept-alive connection, or a client that stops sending, frees its thread

    def version_string(self) -> str:
        return self.server_version

    def setup(self) -> None:
        super().setup()
        with contextlib.suppress(OSError):  # each streamed token goes out at once, not held for the next
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.api.connection_opened(self)

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
        self.server.api.handle(Exchange(self))

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

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
        Exchange(self).send_error(ApiError(code, message or phrase, type=kind))

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's signature
        log.debug("%s %s", self.client_address[0], format % args)


class HttpServer(ThreadingHTTPServer):
    """A thread per connection; ``api`` is the ApiServer its handlers answer for."""

    daemon_threads = True
    block_on_close = False  # ApiServer.stop() ends and joins the connections itself
    allow_reuse_address = os.name != "nt"  # on Windows SO_REUSEADDR would let two servers share a port
    request_queue_size = 64

    def __init__(self, api, address: tuple, family: int):
        self.address_family = family
        self.api = api
        super().__init__(address, ApiHandler)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # HTTPServer's own would look the host name up in DNS
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def handle_error(self, request, client_address) -> None:
        log.debug("connection from %s ended with an error", client_address, exc_info=True)


def bind(api, host: str, port: int) -> HttpServer:
    """A bound, listening HTTP server for ``api``; ApiServerError when the address cannot be used."""
    if not api.api_key and not is_loopback(host):
        raise ApiServerError(f"The API would listen on '{host}', which other computers can reach, but no API "
                             "key is set.", hint="Keep a key in the system keyring as 'server_api_key', or "
                             "listen on 127.0.0.1.")
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise ApiServerError(f"'{host}' is not an address the API can listen on.",
                             hint="Use an IP address of this computer, such as 127.0.0.1.",
                             detail=str(exc)) from None
    family, _, _, _, address = infos[0]
    try:
        return HttpServer(api, address[:2] if family == socket.AF_INET else address, family)
    except OSError as exc:
        raise _bind_error(exc, host, port) from None


def _bind_error(exc: OSError, host: str, port: int) -> ApiServerError:
    code = exc.errno
    if code == errno.EADDRINUSE or getattr(exc, "winerror", None) == 10048:
        return ApiServerError(f"Port {port} on {host} is already in use (by another Locus, or another program).",
                              hint="Stop that program, or choose another port for the API.", detail=str(exc))
    if code in (errno.EACCES, errno.EPERM):
        return ApiServerError(f"This user may not listen on port {port}.", hint="Use a port above 1023.",
                              detail=str(exc))
    if code == errno.EADDRNOTAVAIL:
        return ApiServerError(f"'{host}' is not an address of this computer.",
                              hint="Use 127.0.0.1, or one of this computer's own addresses.", detail=str(exc))
    return ApiServerError(f"The API could not listen on {host}:{port}: {exc.strerror or exc}.", detail=str(exc))
