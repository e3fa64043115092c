"""Stand-ins for the Hugging Face hub, which cannot be reached here: a hub-shaped file server on loopback
(Range, ETag, tokens, dropped connections) and an HfApi that answers with real ModelInfo objects."""

from __future__ import annotations

import hashlib
import re
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from huggingface_hub.hf_api import ModelInfo


class FakeHub:
    """What the server does next: files by path, a required token, a dropped connection, Range ignored."""

    def __init__(self, files: dict[str, bytes] | None = None):
        self.files = dict(files or {})
        self.token: str | None = None
        self.drop_after: int | None = None
        self.ignore_range = False
        self.requests: list[tuple[str, dict]] = []


def hub_handler(hub: FakeHub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _reply(self, status: int, body: bytes, headers: dict) -> None:
            self.send_response(status)
            for name, value in {"Content-Length": str(len(body)), **headers}.items():
                self.send_header(name, value)
            self.end_headers()
            try:
                if hub.drop_after is not None and status in (200, 206):
                    # Drop the connection mid-body once, as a flaky network would.
                    cut, hub.drop_after = hub.drop_after, None
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                else:
                    self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client paused or cancelled

        def do_GET(self):
            hub.requests.append((self.path, dict(self.headers)))
            if hub.token and self.headers.get("Authorization") != f"Bearer {hub.token}":
                return self._reply(401, b'{"error":"Invalid credentials in Authorization header"}', {})
            data = hub.files.get(self.path)
            if data is None:
                return self._reply(404, b'{"error":"Entry not found"}', {"X-Error-Code": "EntryNotFound"})
            etag = f'"{hashlib.sha256(data).hexdigest()}"'
            headers = {"ETag": etag, "Accept-Ranges": "bytes"}
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
            if match and not hub.ignore_range and self.headers.get("If-Range", etag) == etag:
                start = int(match.group(1))
                end = min(int(match.group(2) or len(data) - 1), len(data) - 1)
                headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                return self._reply(206, data[start : end + 1], headers)
            return self._reply(200, data, headers)

    return Handler


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # dropped and cancelled connections are what these tests are about


class FakeApi:
    """Answers like HfApi: real ModelInfo objects built from hub-shaped JSON, or a library exception."""

    def __init__(self, models=(), info=None, error: Exception | None = None):
        self.models, self.info, self.error, self.calls = models, info, error, []

    def list_models(self, **kwargs):
        self.calls.append(("list_models", kwargs))
        if self.error:
            raise self.error
        return iter([ModelInfo(**m) for m in self.models])

    def model_info(self, repo_id, **kwargs):
        self.calls.append(("model_info", {"repo_id": repo_id, **kwargs}))
        if self.error:
            raise self.error
        return ModelInfo(**self.info)
