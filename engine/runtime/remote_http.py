"""HTTP details of the remote backend: server-sent events, and server errors in words for people."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator

from engine.errors import EngineError


class RemoteBackendError(EngineError):
    """The remote model server could not be reached, refused the request or sent something unreadable."""

    code = "remote_backend_error"


def sse(resp: http.client.HTTPResponse) -> Iterator[dict]:
    """The JSON payloads of a server-sent event stream, up to ``[DONE]``; raises if it breaks off or is not JSON."""
    data: list[str] = []
    while True:
        raw = resp.readline()
        if not raw:
            raise http.client.IncompleteRead(b"", None)  # closed before [DONE]: the answer may be cut short
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if line.startswith("data:"):
            data.append(line[5:].lstrip(" "))
        elif not line and data:
            payload, data = "\n".join(data), []
            if payload == "[DONE]":
                return
            try:
                chunk = json.loads(payload)
            except ValueError:
                raise RemoteBackendError(
                    "The model server sent a reply Locus cannot read.", detail=f"not JSON: {payload[:200]!r}"
                ) from None
            if isinstance(chunk, dict):
                yield chunk


def decode(raw: bytes):
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def said(body, rt) -> str:
    """The server's own words (OpenAI's ``error``, FastAPI's ``detail``, or text), never with the API key."""
    while isinstance(body, (dict, list)) and body:
        body = body[0] if isinstance(body, list) else body.get("error", body.get("detail", body.get("message", "")))
        body = body.get("msg", body) if isinstance(body, dict) and "msg" in body else body
    return str(body)[:300].replace(rt._api_key or "\0", "[redacted]")


def http_error(status: int, body, rt) -> RemoteBackendError:
    """Words for people for an HTTP error status."""
    words, url = said(body, rt), rt.base_url
    if status in (401, 403):
        message, hint = (
            (f"The server at {url} refused the API key.", "Check the key in Settings.")
            if rt._api_key
            else (f"The server at {url} asks for an API key.", "Enter the key in Settings.")
        )
    elif status == 404 and "model" in words.lower():
        message, hint = f"The server has no model '{rt.model}'.", "Choose a model it offers in Settings."
    elif status == 404:
        message, hint = f"The server at {url} has no OpenAI-compatible API there.", "The address usually ends in /v1."
    elif status == 429:
        message, hint = "The model server is busy.", "Try again in a moment."
    elif 400 <= status < 500:
        message, hint = f"The model server rejected the request: {words}", None
    else:
        message, hint = f"The model server at {url} failed to answer (HTTP {status}).", "Check the server's logs."
    return RemoteBackendError(message, hint=hint, detail=f"HTTP {status}: {words}")


def broken(exc: BaseException, rt) -> RemoteBackendError:
    detail = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, TimeoutError):  # socket.timeout is TimeoutError since Python 3.10
        return RemoteBackendError(
            f"The model server at {rt.base_url} stopped responding (nothing for {rt.timeout_s:g} s).",
            hint="It may be overloaded; try again or raise the timeout.",
            detail=detail,
        )
    return RemoteBackendError(
        f"The connection to the model server at {rt.base_url} broke off.",
        hint="Check that the server is still running.",
        detail=detail,
    )
