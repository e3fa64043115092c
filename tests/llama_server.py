"""llama-cpp-python's own OpenAI-compatible server on loopback, serving the bundled model (a real remote backend)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request

import pytest

API_KEY = "locus-test-key-0123456789"
ALIAS = "smollm2"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def llama_server(model_path, tmp_path_factory):
    """llama-cpp-python's server with the bundled model, asking for an API key; yields its base URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "stderr.txt"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                model_path,
                "--model_alias",
                ALIAS,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_ctx",
                "2048",
                "--api_key",
                API_KEY,
            ],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                request = urllib.request.Request(url + "/models", headers={"Authorization": f"Bearer {API_KEY}"})
                urllib.request.urlopen(request, timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"llama_cpp.server did not start within 60 s:\n{log.read_text()[-3000:]}")
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
