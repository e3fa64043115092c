"""Who may use the API: checks on each request before it is read or answered.

Without a key the API answers this computer only, and not web pages open in its
browser: a page can send a request to 127.0.0.1 (a "simple" cross-origin POST
needs no CORS preflight), so foreign ``Host`` names (DNS rebinding) and foreign
``Origin`` headers are refused, and bodies must be ``application/json`` (which a
page can only send after a preflight, which is never answered).
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from engine.api.errors import ApiError
from engine.api.listener import is_loopback


def check_host(api, ex) -> None:
    """On loopback without a key, only requests addressed to this computer are answered: a web page
    cannot reach the API by pointing its own domain at 127.0.0.1 (DNS rebinding)."""
    if api.api_key or not is_loopback(api.host):
        return
    host = (ex.header("Host") or "").strip()
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host.rsplit("]", 1)[0]
    if host and not is_loopback(name):
        raise ApiError(
            403,
            f"This server only answers requests addressed to this computer, not to '{host[:100]}'.",
            type="permission_error",
            code="host_not_allowed",
        )


def check_origin(api, ex) -> None:
    """Without a key, a request a web page sends (it carries the page's Origin) is refused unless the
    page is served from this computer; with a key, the key check decides."""
    if api.api_key:
        return
    origin = ex.header("Origin")
    if origin is not None and not is_loopback_origin(origin):
        raise ApiError(
            403,
            f"This server does not answer requests from web pages of other sites (Origin "
            f"'{origin.strip()[:100]}'). Set an API key to allow them.",
            type="permission_error",
            code="forbidden_origin",
        )


def is_loopback_origin(origin: str) -> bool:
    """Whether an Origin header names a page of this computer: http(s)://127.0.0.1, localhost or [::1]."""
    try:
        parts = urlsplit(origin.strip())
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and is_loopback(parts.hostname or "")
        and not parts.username
        and parts.password is None
        and parts.path in ("", "/")
        and not parts.query
        and not parts.fragment
    )


def check_key(api, ex) -> None:
    """The key in ``Authorization: Bearer KEY``, when one is configured (401 otherwise, never echoed)."""
    if api.api_key is None:
        return
    scheme, _, token = (ex.header("Authorization") or "").strip().partition(" ")
    given = token.strip() if scheme.lower() == "bearer" else ""
    if not hmac.compare_digest(given.encode("utf-8"), api.api_key.encode("utf-8")):
        said = "Incorrect API key provided." if given else "No API key provided (Authorization: Bearer KEY)."
        raise ApiError(401, said, code="invalid_api_key", headers={"WWW-Authenticate": 'Bearer realm="locus"'})


def check_json(ex) -> None:
    """A request body must be sent as ``Content-Type: application/json`` (parameters such as charset
    allowed); anything else is a 415, before the body is read."""
    given = ex.header("Content-Type")
    if (given or "").split(";", 1)[0].strip().lower() != "application/json":
        said = f"'{given.strip()[:100]}'" if given is not None and given.strip() else "none"
        raise ApiError(
            415,
            f"The request body must be sent with Content-Type: application/json (this request has {said}).",
            code="unsupported_media_type",
        )
