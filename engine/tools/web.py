"""fetch_page's fetching: http and https only, every address checked, size and time capped, text only.

It is the one thing in Locus that goes to the network, and only when the user turned it on. A page's
address is resolved first and each address it resolves to is checked: this computer (127.0.0.0/8,
::1), the local network (10/8, 172.16/12, 192.168/16, fc00::/7), link-local (169.254/16, where cloud
machines keep their credentials), multicast and reserved ranges are refused unless the user allowed
them too (tools.fetch_private), so a page or a document cannot steer the model into reading the
router's admin page or a service on this machine (Locus's own API included). The connection goes to
the address that was checked (no second lookup an attacker's DNS could answer differently), and each
redirect is checked the same way. The page is read up to FETCH_MAX_BYTES within the call's time
limit; HTML becomes its visible text (no scripts, styles or markup) through the document loaders'
HTML reader.
"""

from __future__ import annotations

import http.client
import ipaddress
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from engine.tools.errors import ToolError

FETCH_MAX_BYTES = 2 * 2**20  # the most of a page read
MAX_REDIRECTS = 5
USER_AGENT = "Locus (fetch_page; a desktop assistant fetching one page for its user)"
_TEXT_TYPES = (
    "text/html",
    "application/xhtml+xml",
    "text/plain",
    "text/markdown",
    "text/csv",
    "application/json",
    "text/xml",
    "application/xml",
)


class FetchError(ToolError):
    """fetch_page refused an address, or the page could not be fetched or read."""

    code = "fetch_error"


@dataclass(frozen=True)
class Page:
    """A fetched page as text."""

    url: str  # where it was read from, after redirects
    title: str
    text: str
    truncated: bool  # the page was longer than FETCH_MAX_BYTES


def fetch(
    url: str,
    *,
    timeout_s: float,
    cancel: threading.Event,
    allow_private: bool = False,
    max_bytes: int = FETCH_MAX_BYTES,
) -> Page:
    """The text of the page at ``url``; raises FetchError in words."""
    deadline = time.monotonic() + timeout_s
    for _ in range(MAX_REDIRECTS + 1):
        status, headers, body, truncated = _get(url, deadline, cancel, allow_private, max_bytes)
        if status in (301, 302, 303, 307, 308) and headers.get("location"):
            url = urljoin(url, headers["location"])
            continue
        if status >= 400:
            raise FetchError(f"The page answered {status} ({http.client.responses.get(status, 'error')}).")
        return _page(url, headers.get("content-type", ""), body, truncated)
    raise FetchError(f"The page redirected more than {MAX_REDIRECTS} times; it was not read.")


def check_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path with query) of an http(s) address; raises FetchError for anything else."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise FetchError(f"'{url}' is not a web address.") from exc
    if parts.scheme not in ("http", "https"):
        raise FetchError(f"Only http and https addresses can be fetched, not '{parts.scheme or url}'.")
    if not parts.hostname:
        raise FetchError(f"'{url}' has no host name.")
    if parts.username or parts.password:
        raise FetchError("Addresses with a user name or password in them are not fetched.")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80), path


def check_address(address: str, allow_private: bool) -> None:
    """Refuse an IP address on this computer or a private network unless ``allow_private``."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if allow_private and not ip.is_multicast and not ip.is_unspecified:
        return
    if (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    ):
        raise FetchError(
            f"{address} is on this computer or a private network; fetch_page reads only public web pages.",
            hint="To fetch from this computer or the local network too, turn on "
            "tools.fetch_private in Settings > Tools.",
        )


def _get(
    url: str, deadline: float, cancel: threading.Event, allow_private: bool, max_bytes: int
) -> tuple[int, dict, bytes, bool]:
    scheme, host, port, path = check_url(url)
    address = _resolve(host, port, allow_private, deadline)
    connection = _connection(scheme, host, port, address, _remaining(deadline))
    try:
        connection.request(
            "GET",
            path,
            headers={
                "Host": _host_header(host, port, scheme),
                "User-Agent": USER_AGENT,
                "Accept": "text/html, text/plain;q=0.9, */*;q=0.1",
                "Accept-Encoding": "identity",
            },
        )
        response = connection.getresponse()
        headers = {k.lower(): v for k, v in response.getheaders()}
        if response.status in (301, 302, 303, 307, 308):
            return response.status, headers, b"", False
        chunks, total, truncated = [], 0, False
        while True:
            if cancel.is_set():
                raise FetchError("Fetching the page was stopped.")
            left = _remaining(deadline)
            if connection.sock is not None:  # None once http.client knows the server closes after this response
                connection.sock.settimeout(left)
            chunk = response.read(min(65536, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                truncated = True
                break
        return response.status, headers, b"".join(chunks)[:max_bytes], truncated
    except TimeoutError as exc:
        raise FetchError(
            f"The page did not answer within the time limit ({_host_header(host, port, scheme)})."
        ) from exc
    except (OSError, http.client.HTTPException) as exc:
        raise FetchError(f"The page could not be fetched ({type(exc).__name__}: {exc}).") from exc
    finally:
        connection.close()


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise FetchError("The page did not answer within the time limit.")
    return left


def _resolve(host: str, port: int, allow_private: bool, deadline: float) -> str:
    """The first address ``host`` resolves to, after checking every one of them."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchError(f"The host '{host}' could not be found.") from exc
    _remaining(deadline)
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise FetchError(f"The host '{host}' could not be found.")
    for address in addresses:
        check_address(address, allow_private)
    return addresses[0]


def _connection(scheme: str, host: str, port: int, address: str, timeout: float) -> _PinnedHTTP | _PinnedHTTPS:
    """A connection to the checked ``address``, speaking to ``host`` (its certificate, for https)."""
    if scheme == "https":
        return _PinnedHTTPS(host, port, address, timeout=timeout, context=ssl.create_default_context())
    return _PinnedHTTP(host, port, address, timeout=timeout)


class _PinnedHTTP(http.client.HTTPConnection):
    """A connection to an address checked beforehand."""

    def __init__(self, host: str, port: int, address: str, **kwargs):
        super().__init__(host, port, **kwargs)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """https to an address checked beforehand; the certificate must still be ``host``'s."""

    def __init__(self, host: str, port: int, address: str, *, context: ssl.SSLContext, **kwargs):
        super().__init__(host, port, context=context, **kwargs)
        self._address = address
        self._ssl_context = context

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._ssl_context.wrap_socket(raw, server_hostname=self.host)


def _host_header(host: str, port: int, scheme: str) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if port == (443 if scheme == "https" else 80) else f"{shown}:{port}"


def _page(url: str, content_type: str, body: bytes, truncated: bool) -> Page:
    mime = content_type.split(";", 1)[0].strip().lower()
    if mime and mime not in _TEXT_TYPES and not mime.startswith("text/"):
        raise FetchError(f"The page is not text ({mime}); fetch_page reads web pages and text only.")
    text = body.decode(_charset(content_type, body), errors="replace")
    if mime in ("text/html", "application/xhtml+xml") or (not mime and "<html" in text[:2048].lower()):
        from engine.rag.loaders.html import load_html

        document = load_html(Path(urlsplit(url).path or "/"), text)
        body_text = "\n\n".join(s.text for s in document.sections)
        title = document.title if document.title not in ("", "/") else urlsplit(url).hostname or url
        return Page(url, title, body_text, truncated)
    return Page(url, urlsplit(url).hostname or url, text, truncated)


_META_CHARSET = re.compile(rb"""<meta[^>]+charset=["']?([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


def _charset(content_type: str, body: bytes) -> str:
    match = re.search(r"charset=[\"']?([A-Za-z0-9_.:-]+)", content_type, re.IGNORECASE)
    name = match.group(1) if match else None
    if name is None:
        meta = _META_CHARSET.search(body[:4096])
        name = meta.group(1).decode("ascii") if meta else "utf-8"
    try:
        "".encode(name)
    except LookupError:
        return "utf-8"
    return name
