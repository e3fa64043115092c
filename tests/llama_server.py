"""llama-cpp-python's own OpenAI-compatible server on loopback, serving the bundled model (a real remote backend)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from engine.runtime.cpu_check import extra_buffers_ok

API_KEY = "locus-test-key-0123456789"
ALIAS = "smollm2"


# The server loads the model as llama-cpp-python does (extra CPU buffers on); where the engine found that
# llama.cpp's AMX buffers crash this machine (engine/runtime/cpu_check.py), the server is started with them off.
_WITHOUT_EXTRA_BUFFERS = """\
import runpy, sys
import llama_cpp.llama_cpp as native
defaults = native.llama_model_default_params
def params():
    p = defaults()
    p.use_extra_bufts = False
    return p
native.llama_model_default_params = params
sys.argv[0] = "llama_cpp.server"
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
"""


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
        start = ["-m", "llama_cpp.server"] if extra_buffers_ok() else ["-c", _WITHOUT_EXTRA_BUFFERS]
        proc = subprocess.Popen(
            [
                sys.executable,
                *start,
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
