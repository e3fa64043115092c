"""`locus serve` as a user runs it: a real process, the real model, the openai client, then SIGTERM."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import threading
from pathlib import Path

import openai
import pytest

from app.secrets import Secrets
from engine.server import ApiServerError
from tests.app.helpers import LOCUS

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SERVE = [LOCUS, "serve"]  # the installed console script, as a user runs it
KEY = "sk-locus-serve-test-0123456789"


class Served:
    """A `locus serve` process and the base URL it printed."""

    def __init__(self, home: Path, *args: str):
        env = dict(os.environ, LOCUS_HOME=str(home))
        self.process = subprocess.Popen([*SERVE, *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in self.process.stdout], daemon=True).start()
        try:
            self.banner = lines.get(timeout=180)
        except queue.Empty:
            self.stop()
            pytest.fail(f"`locus serve` printed nothing: {self.process.stderr.read()}")
        self.url = self.banner.split(" on ", 1)[1].split(" ", 1)[0]

    def stop(self) -> tuple[int, str]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        return code, self.process.stderr.read()


def test_serve_answers_a_chat_completion_and_stops_on_sigterm(tmp_path):
    served = Served(tmp_path, "--port", "0")
    try:
        assert served.url.startswith("http://127.0.0.1:") and served.url.endswith("/v1")
        client = openai.OpenAI(base_url=served.url, api_key="unused", max_retries=0, timeout=120)
        [model, embedder] = [m.id for m in client.models.list().data]
        assert model in served.banner and embedder == "sentence-transformers/all-MiniLM-L6-v2"
        reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hello!"}],
                                               temperature=0, max_tokens=8)
        assert reply.choices[0].message.content and reply.usage.completion_tokens <= 8
    finally:
        code, stderr = served.stop()
    assert code == 0, stderr
    assert "Traceback" not in stderr


def test_serve_beyond_loopback_without_a_key_refuses_to_start(tmp_path):
    env = dict(os.environ, LOCUS_HOME=str(tmp_path))
    done = subprocess.run([*SERVE, "--host", "0.0.0.0", "--port", "0"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 1
    assert "API key" in done.stderr and "server_api_key" in done.stderr and "Traceback" not in done.stderr


def test_serve_beyond_loopback_uses_the_key_in_the_keyring(tmp_path, secret_service):
    Secrets(backend=secret_service).set("server_api_key", KEY)
    served = Served(tmp_path, "--host", "0.0.0.0", "--port", "0")
    try:
        assert "API key required" in served.banner
        local = served.url.replace("0.0.0.0", "127.0.0.1")
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=local, api_key="sk-wrong", max_retries=0).models.list()
        assert openai.OpenAI(base_url=local, api_key=KEY, max_retries=0).models.list().data
    finally:
        code, stderr = served.stop()
    assert code == 0, stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_start_api_follows_the_settings_and_the_current_runtime(locus_home):
    """What the window calls: off by default; on, it serves the services' runtime with the settings' limits."""
    from keyring.backends import fail

    from app.api_service import start_api
    from app.paths import resolve_paths
    from app.services import build_services

    services = build_services(resolve_paths(), secrets=Secrets(backend=fail.Keyring()))  # no keyring here
    try:
        assert start_api(services) is None
        port = free_port()
        services.settings = (services.settings.with_value("server.enabled", True).with_value("server.port", port)
                             .with_value("server.max_tokens", 16))
        services.load_model().result(timeout=120)
        server = start_api(services)
        try:
            assert server.url == f"http://127.0.0.1:{port}/v1" and server.api_key is None
            client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=120)
            model = services.runtime.model_info.name
            reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}])
            assert reply.usage.completion_tokens <= 16  # no max_tokens given: the server's limit
            with pytest.raises(openai.BadRequestError):
                client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}],
                                               max_tokens=17)
            with pytest.raises(ApiServerError, match="already in use"):
                start_api(services)
        finally:
            server.stop()
    finally:
        services.close()
