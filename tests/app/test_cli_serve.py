"""`locus serve` as a user runs it: a real process, the real model, the openai client, then SIGTERM."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest

from app.secrets import Secrets
from engine.api import ApiServerError
from tests.app.helpers import LOCUS
from tests.engine.api.test_api_limits import trickle_until_closed  # (one slow client for both tests)

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SERVE = [LOCUS, "serve"]  # the installed console script, as a user runs it
KEY = "sk-locus-serve-test-0123456789"


class Served:
    """A `locus serve` process and the base URL it printed."""

    def __init__(self, home: Path, *args: str):
        env = dict(os.environ, LOCUS_HOME=str(home))
        self.process = subprocess.Popen(
            [*SERVE, *args], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
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
        reply = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Hello!"}], temperature=0, max_tokens=8
        )
        assert reply.choices[0].message.content and reply.usage.completion_tokens <= 8
    finally:
        code, stderr = served.stop()
    assert code == 0, stderr
    assert "Traceback" not in stderr


def test_serve_beyond_loopback_without_a_key_refuses_to_start(tmp_path):
    env = dict(os.environ, LOCUS_HOME=str(tmp_path))
    done = subprocess.run(
        [*SERVE, "--host", "0.0.0.0", "--port", "0"], cwd=REPO, env=env, capture_output=True, text=True, timeout=180
    )
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
        services.apply_settings(
            services.settings.with_value("api.enabled", True)
            .with_value("api.port", port)
            .with_value("api.max_tokens", 16)
        )
        services.load_model().result(timeout=120)
        server = start_api(services)
        try:
            assert server.url == f"http://127.0.0.1:{port}/v1" and server.api_key is None
            client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=120)
            model = services.backends.resolve(None)[1].model_info.name
            reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}])
            assert reply.usage.completion_tokens <= 16  # no max_tokens given: the server's limit
            with pytest.raises(openai.BadRequestError):
                client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=17)
            with pytest.raises(ApiServerError, match="already in use"):
                start_api(services)
        finally:
            server.stop()
    finally:
        services.close()


# What a hostile client cannot do ------------------------------------------------------------------

NOTHING = r"root ::= [^\x00-\U0010FFFF]"  # allows no token: llama.cpp aborts on the first one it accepts
DEAD_END = r'root ::= "a" [^\x00-\U0010FFFF]'  # 'a' may start, then nothing may follow, not even the end
DEEP_400_KB = "root ::= " + "(" * 200_000 + '"a"' + ")" * 200_000  # overflows llama.cpp's parser stack
DEEP_100_KB = "root ::= " + "(" * 50_000 + '"a"' + ")" * 50_000


def threads_of(process: subprocess.Popen) -> int:
    """The process's thread count, as the kernel sees it."""
    status = Path(f"/proc/{process.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))


def test_serve_refuses_grammars_that_would_crash_it_and_goes_on_serving(tmp_path):
    served = Served(tmp_path, "--port", "0")
    try:
        client = openai.OpenAI(base_url=served.url, api_key="unused", max_retries=0, timeout=120)
        model = client.models.list().data[0].id
        chat = dict(model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=8)
        cases = [
            (NOTHING, "allows no output"),
            (DEEP_400_KB, "391 KB long; at most 256 KB"),
            (DEEP_100_KB, "nests groups 50,000 deep; at most 2,000"),
            (DEAD_END, "allows nothing here"),
        ]
        for grammar, words in cases:
            with pytest.raises(openai.BadRequestError) as caught:
                client.chat.completions.create(**chat, extra_body={"grammar": grammar})
            assert words in caught.value.message
            assert served.process.poll() is None, "the server died"
            assert client.chat.completions.create(**chat).choices[0].message.content is not None
        with pytest.raises(openai.BadRequestError, match="allows no output"):  # text completions too
            client.completions.create(model=model, prompt="Say", max_tokens=4, extra_body={"grammar": NOTHING})
        deep_schema = {"type": "object", "properties": {"note": {"type": "string", "maxLength": 20_000}}}
        with pytest.raises(openai.BadRequestError, match="20,000 deep"):
            client.chat.completions.create(
                **chat, response_format={"type": "json_schema", "json_schema": {"name": "note", "schema": deep_schema}}
            )
        assert client.completions.create(model=model, prompt="Say", max_tokens=4).choices[0].text is not None
    finally:
        code, stderr = served.stop()
    assert code == 0, stderr
    assert "Traceback" not in stderr


def answer_or_close(port: int) -> bytes:
    """A request on a fresh connection: the server's whole answer, or b"" when it only closed the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        try:
            sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        except OSError:  # reset: refused at once
            return b""
    return data


def test_serve_bounds_slow_and_surplus_connections_and_queued_requests(tmp_path):
    from engine.api.listener import BUSY_RESPONDERS

    (tmp_path / "config.toml").write_text(
        "[api]\nmax_connections = 4\nrequest_timeout_s = 10.0\nmax_queued_requests = 2\n"
    )
    served = Served(tmp_path, "--port", "0")
    try:
        port = int(served.url.rsplit(":", 1)[1].split("/")[0])
        with openai.OpenAI(base_url=served.url, api_key="unused", max_retries=0, timeout=120) as warm_up:
            model = warm_up.models.list().data[0].id  # (and its connection closed: it holds no place below)
            assert warm_up.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=4
            ).choices
        baseline = threads_of(served.process)
        # As many trickling clients as the cap: their headers never end.
        stop = threading.Event()
        outcomes: list[bool] = []
        tricklers = []
        for _ in range(4):
            sock = socket.create_connection(("127.0.0.1", port), timeout=60)
            worker = threading.Thread(
                target=lambda s=sock: outcomes.append(
                    trickle_until_closed(s, b"POST /v1/chat/completions HTTP/1.1\r\nX-Slow: ", stop)
                )
            )
            worker.start()
            tricklers.append((sock, worker))
        # Twenty more at once: each is answered 503 with Retry-After, or closed at once.
        with ThreadPoolExecutor(20) as pool:
            futures = [pool.submit(answer_or_close, port) for _ in range(20)]
            while not all(f.done() for f in futures):
                assert threads_of(served.process) <= baseline + 4 + BUSY_RESPONDERS
                time.sleep(0.05)
            answers = [f.result() for f in futures]
        busy = [a for a in answers if a]
        assert busy and all(
            a.startswith(b"HTTP/1.1 503") and b"Retry-After: 2" in a and b'"server_busy"' in a for a in busy
        ), answers
        # The tricklers are cut off at the deadline, however steadily they send.
        for _sock, worker in tricklers:
            worker.join(60)
        stop.set()
        for sock, _ in tricklers:
            sock.close()
        assert outcomes == [True] * 4
        assert threads_of(served.process) <= baseline + 4 + BUSY_RESPONDERS
        client = openai.OpenAI(base_url=served.url, api_key="unused", max_retries=0, timeout=120)
        assert client.models.list().data  # the next client is served
        # Two generations may wait or run at once: a third is told to come back.
        song = [{"role": "user", "content": "Sing."}]
        streams = [
            client.chat.completions.create(
                model=model, messages=song, max_tokens=900, stream=True, extra_body={"grammar": 'root ::= "la " root'}
            )
            for _ in range(2)
        ]
        for stream in streams:
            chunks = iter(stream)
            assert next(chunks).choices[0].delta.role == "assistant" and next(chunks).choices[0].delta.content
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(model=model, messages=song, max_tokens=4)
        assert caught.value.status_code == 503 and caught.value.response.headers["Retry-After"] == "2"
        for stream in streams:
            stream.close()
        retrying = openai.OpenAI(base_url=served.url, api_key="unused", max_retries=10, timeout=120)
        assert retrying.chat.completions.create(model=model, messages=song, max_tokens=4).choices  # after Retry-After
        assert served.process.poll() is None
    finally:
        code, stderr = served.stop()
    assert code == 0, stderr
    assert "Traceback" not in stderr
