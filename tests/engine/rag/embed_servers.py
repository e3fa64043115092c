"""Small real HTTP servers on loopback for the remote-embedding tests: one that answers from a script
(status codes, Retry-After, hostile bodies), and a proxy to a real server that dies when told to."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

Reply = tuple[int, dict, "bytes | Callable"]  # status, headers, body (or a function that writes it to the socket)


def vectors_reply(model: str, vectors: list[list[float]], **extra) -> Reply:
    data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
    body = {"object": "list", "model": model, "data": data, **extra}
    return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()


class LoopbackServer:
    """A ThreadingHTTPServer on 127.0.0.1 whose POSTs are answered by ``answer(request) -> Reply | None``
    (None: the connection is closed without an answer). ``requests`` keeps each request's JSON and headers."""

    def __init__(self, answer: Callable[[dict], Reply | None]):
        self.answer = answer
        self.requests: list[dict] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                request = {"path": self.path, "json": body, "headers": dict(self.headers.items())}
                owner.requests.append(request)
                reply = owner.answer(request)
                if reply is None:
                    self.close_connection = True
                    self.connection.close()
                    return
                status, headers, payload = reply
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if "Content-Length" not in headers and not callable(payload):
                    self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if callable(payload):
                    payload(self.wfile)
                else:
                    self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop answering and close the listening socket: new connections are refused."""
        self.httpd.shutdown()
        self.httpd.server_close()


class DyingProxy(LoopbackServer):
    """Forwards every request to a real server (e.g. `locus serve`) until one whose input contains
    ``dies_on``: that request gets no answer and the proxy stops listening, as a server that goes away."""

    def __init__(self, target: str, dies_on: str | None = None):
        self.target = urlsplit(target)
        self.dies_on = dies_on
        self.died = threading.Event()
        super().__init__(self._forward)

    def _forward(self, request: dict) -> Reply | None:
        texts = request["json"].get("input")
        texts = [texts] if isinstance(texts, str) else texts or []
        if self.died.is_set() or (self.dies_on and any(self.dies_on in t for t in texts)):
            if not self.died.is_set():
                self.died.set()
                threading.Thread(target=self.stop, daemon=True).start()
            return None
        conn = http.client.HTTPConnection(self.target.hostname, self.target.port, timeout=120)
        try:
            headers = {k: v for k, v in request["headers"].items() if k.lower() in ("authorization", "content-type")}
            path = self.target.path.rstrip("/") + request["path"].removeprefix("/v1")
            conn.request("POST", path, body=json.dumps(request["json"]).encode(), headers=headers)
            resp = conn.getresponse()
            return resp.status, {"Content-Type": resp.getheader("Content-Type", "application/json")}, resp.read()
        finally:
            conn.close()
