"""HubClient against a fake at the HfApi seam: the hub cannot be reached from the tests."""

from __future__ import annotations

import socket

import httpx2
import pytest
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
from huggingface_hub.utils import hf_raise_for_status

from engine.errors import EngineError
from engine.models.hub import (
    HubAuthError,
    HubClient,
    HubError,
    HubNotFoundError,
    HubUnavailableError,
    parse_quant,
)
from tests.hub_fakes import FakeApi

SHA = "c0ffee" * 10 + "abcd"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _sibling(name: str, size: int | None = None, lfs: bool = True) -> dict:
    sibling = {"rfilename": name}
    if size is not None:
        sibling["size"] = size
        if lfs:
            sibling["lfs"] = {"size": size, "sha256": f"{SHA[:-2]}{size % 100:02d}", "pointerSize": 134}
    return sibling


def _hub_http_error(status: int, url: str, error_code: str | None = None, message: str | None = None):
    """The exception huggingface_hub raises for this response, built by its own hf_raise_for_status."""
    headers = {k: v for k, v in {"X-Error-Code": error_code, "X-Error-Message": message}.items() if v}
    response = httpx2.Response(
        status, headers=headers, json={"error": message or "error"}, request=httpx2.Request("GET", url)
    )
    with pytest.raises(HfHubHTTPError) as caught:
        hf_raise_for_status(response)
    return caught.value


@pytest.mark.parametrize(
    "filename, quant",
    [
        ("Llama-3.2-1B-Instruct-Q4_K_M.gguf", "Q4_K_M"),
        ("qwen2.5-7b-instruct-q4_k_m-00001-of-00002.gguf", "Q4_K_M"),
        ("Qwen2.5-0.5B-Instruct-IQ2_XS.gguf", "IQ2_XS"),
        ("model.BF16.gguf", "BF16"),
        ("ggml-model-f16.gguf", "F16"),
        ("SmolLM2-135M-Instruct.Q4_1.gguf", "Q4_1"),
        ("Q8_0/phi-2_Q8_0-00002-of-00003.gguf", "Q8_0"),
        ("gemma-3-4b-it-UD-Q4_K_XL.gguf", "Q4_K_XL"),
        ("gpt-oss-20b-MXFP4.gguf", "MXFP4"),
        ("Mistral-7B-v0.1.gguf", "unknown"),
    ],
)
def test_quantization_is_read_from_the_file_name(filename, quant):
    assert parse_quant(filename) == quant


def test_search_asks_for_gguf_by_downloads_and_maps_summaries():
    api = FakeApi(
        models=[
            {
                "id": "bartowski/Llama-3.2-1B-Instruct-GGUF",
                "downloads": 120_000,
                "likes": 80,
                "lastModified": "2024-09-25T18:00:00.000Z",
                "gated": False,
            },
            {"id": "meta/gated-GGUF", "downloads": None, "likes": None, "gated": "manual"},
        ]
    )
    found = HubClient(token="hf_t", api=api).search("llama 3.2", limit=5)
    assert api.calls == [
        ("list_models", {"search": "llama 3.2", "filter": "gguf", "sort": "downloads", "limit": 5, "token": "hf_t"})
    ]
    assert [(r.repo_id, r.downloads, r.likes, r.gated) for r in found] == [
        ("bartowski/Llama-3.2-1B-Instruct-GGUF", 120_000, 80, False),
        ("meta/gated-GGUF", 0, 0, True),
    ]
    assert found[0].updated.year == 2024 and found[1].updated is None


def test_quantizations_group_split_files_sort_by_size_and_pin_the_commit():
    api = FakeApi(
        info={
            "id": "org/model-GGUF",
            "sha": COMMIT,
            "siblings": [
                _sibling("README.md", 5_000, lfs=False),
                _sibling("model-Q8_0.gguf", 8_000),
                _sibling("model-Q4_K_M.gguf", 4_000),
                _sibling("mmproj-model-f16.gguf", 600),
                _sibling("F16/model-F16-00002-of-00002.gguf", 7_000),
                _sibling("F16/model-F16-00001-of-00002.gguf", 9_000),
                _sibling("model-IQ2_XS.gguf", 2_000),
            ],
        }
    )
    quants = HubClient(endpoint="https://mirror.example", api=api).quantizations("org/model-GGUF")
    assert api.calls[0][1]["files_metadata"] is True
    assert [(q.quant, q.size, q.split) for q in quants] == [
        ("IQ2_XS", 2_000, False),
        ("Q4_K_M", 4_000, False),
        ("Q8_0", 8_000, False),
        ("F16", 16_000, True),
    ]
    q4 = quants[1]
    assert q4.sha256 == f"{SHA[:-2]}00" and q4.parts[0].sha256 == q4.sha256
    assert q4.url == f"https://mirror.example/org/model-GGUF/resolve/{COMMIT}/model-Q4_K_M.gguf"
    f16 = quants[-1]
    assert f16.filename == "F16/model-F16-00001-of-00002.gguf" and f16.sha256 is None
    assert [p.filename for p in f16.parts] == ["F16/model-F16-00001-of-00002.gguf", "F16/model-F16-00002-of-00002.gguf"]
    assert all(p.sha256 and p.url.endswith(p.filename) for p in f16.parts)


def test_files_without_metadata_sort_last_with_unknown_size():
    api = FakeApi(info={"id": "org/m", "siblings": [_sibling("m-Q2_K.gguf"), _sibling("m-Q8_0.gguf", 10)]})
    quants = HubClient(api=api).quantizations("org/m")
    assert [(q.quant, q.size) for q in quants] == [("Q8_0", 10), ("Q2_K", None)]
    assert quants[1].url.endswith("/org/m/resolve/main/m-Q2_K.gguf")


URL = "https://huggingface.co/api/models/meta/gated-GGUF/revision/main?blobs=true"


@pytest.mark.parametrize(
    "token, error, kind, words",
    [
        (
            None,
            lambda: _hub_http_error(401, URL, "GatedRepo"),
            HubAuthError,
            "is gated: accept its terms on huggingface.co and add a token (Settings › Models)",
        ),
        ("hf_t", lambda: _hub_http_error(403, URL, "GatedRepo"), HubAuthError, "with the account of your token"),
        (
            None,
            lambda: _hub_http_error(404, URL, "RepoNotFound"),
            HubNotFoundError,
            "If it is private, it needs a token",
        ),
        (None, lambda: _hub_http_error(401, URL), HubNotFoundError, "was not found"),
        (
            "hf_t",
            lambda: _hub_http_error(401, URL, message="Invalid credentials in Authorization header"),
            HubAuthError,
            "the token is invalid",
        ),
        (None, lambda: _hub_http_error(404, URL, "RevisionNotFound"), HubNotFoundError, "revision does not exist"),
        (None, lambda: _hub_http_error(503, URL), HubUnavailableError, "having trouble (error 503)"),
        (
            None,
            lambda: httpx2.ConnectError("[Errno -3] Temporary failure in name resolution"),
            HubUnavailableError,
            "Cannot reach the Hugging Face hub (offline?)",
        ),
        (None, lambda: httpx2.ReadTimeout("timed out"), HubUnavailableError, "Cannot reach the Hugging Face hub"),
        (None, lambda: OfflineModeIsEnabled("offline mode is enabled"), HubUnavailableError, "offline mode"),
    ],
)
def test_hub_failures_become_engine_errors_with_words_for_people(token, error, kind, words):
    client = HubClient(token=token, api=FakeApi(error=error()))
    for call in (lambda: client.quantizations("meta/gated-GGUF"), lambda: client.search("gated")):
        with pytest.raises(kind) as caught:
            call()
        assert isinstance(caught.value, EngineError) and isinstance(caught.value, HubError)
        assert words in caught.value.user_text()
        assert caught.value.detail and (token is None or token not in caught.value.user_text())


def test_real_hfapi_without_a_reachable_hub_is_unavailable():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port (and the tests run with HF_HUB_OFFLINE=1): either way, unavailable.
    with pytest.raises(HubUnavailableError):
        HubClient(endpoint=f"http://127.0.0.1:{port}").search("llama")
