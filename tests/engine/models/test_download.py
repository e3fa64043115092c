"""Downloads against a real local HTTP server that serves hub-shaped ``/resolve/`` paths."""

from __future__ import annotations

import hashlib
import json
import random
import socket
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from engine.models.download import (
    ChecksumMismatchError,
    DownloadCancelled,
    DownloadDone,
    Downloader,
    DownloadError,
    DownloadFailed,
    DownloadPaused,
    DownloadProgress,
    InsufficientDiskSpaceError,
)
from engine.models.hub import FilePart, HubAuthError, HubNotFoundError, HubUnavailableError, QuantFile
from tests.hub_fakes import FakeHub, QuietServer, hub_handler

DATA = random.Random(6).randbytes(3 * 1024 * 1024 + 1234)
SHA = hashlib.sha256(DATA).hexdigest()
PATH = "/org/tiny-GGUF/resolve/main/tiny-Q4_K_M.gguf"
CHUNK = 64 * 1024


@pytest.fixture()
def hub():
    fake = FakeHub({PATH: DATA})
    server = QuietServer(("127.0.0.1", 0), hub_handler(fake))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    fake.base = f"http://127.0.0.1:{server.server_address[1]}"
    yield fake
    server.shutdown()
    server.server_close()


def _downloader(tmp_path, **kwargs) -> Downloader:
    return Downloader(tmp_path / "models", chunk_bytes=CHUNK, margin_bytes=1 << 20, **kwargs)


def _target(hub, sha=SHA):
    return (hub.base + PATH, "tiny-Q4_K_M.gguf", len(DATA), sha)


def _leftovers(tmp_path):
    return sorted(p.name for p in (tmp_path / "models").rglob("*.part*"))


def test_full_download_reports_progress_and_verifies_sha256(hub, tmp_path):
    events = []
    handle = _downloader(tmp_path).start(_target(hub), on_event=events.append)
    assert handle.wait(30) == "done"
    assert (tmp_path / "models" / "tiny-Q4_K_M.gguf").read_bytes() == DATA
    progress = [e for e in events if isinstance(e, DownloadProgress)]
    assert len(progress) >= len(DATA) // CHUNK
    assert [p.done for p in progress] == sorted(p.done for p in progress)
    assert progress[-1].done == progress[-1].total == len(DATA)
    assert all(p.bytes_per_s >= 0 for p in progress)
    assert events[-1] == DownloadDone(tmp_path / "models" / "tiny-Q4_K_M.gguf")
    assert _leftovers(tmp_path) == []
    assert "Range" not in hub.requests[0][1]


def test_dropped_connection_resumes_after_a_restart_with_a_range_request(hub, tmp_path):
    hub.drop_after = 20 * CHUNK
    first = _downloader(tmp_path).start(_target(hub))
    assert first.wait(30) == "failed"
    assert isinstance(first.error, DownloadError) and "interrupted" in first.error.message
    assert first.resumable
    part = tmp_path / "models" / "tiny-Q4_K_M.gguf.part"
    kept = part.stat().st_size
    assert 0 < kept <= 20 * CHUNK
    assert part.read_bytes() == DATA[:kept]

    restarted = _downloader(tmp_path)  # a new process finds the part through its sidecar
    [pending] = restarted.pending()
    assert (pending.filename, pending.done_bytes, pending.sha256) == ("tiny-Q4_K_M.gguf", kept, SHA)
    handle = restarted.resume_pending(pending)
    assert handle.wait(30) == "done"
    assert hub.requests[-1][1]["Range"] == f"bytes={kept}-"
    assert handle.path.read_bytes() == DATA
    assert _leftovers(tmp_path) == [] and restarted.pending() == []


def test_failed_handle_resume_continues_in_the_same_session(hub, tmp_path):
    hub.drop_after = 7 * CHUNK
    handle = _downloader(tmp_path).start(_target(hub))
    assert handle.wait(30) == "failed"
    handle.resume()
    assert handle.wait(30) == "done" and handle.path.read_bytes() == DATA
    assert hub.requests[-1][1]["Range"].startswith("bytes=")


def test_pause_then_resume(hub, tmp_path):
    events, paused = [], threading.Event()
    box = {}

    def on_event(event):
        events.append(event)
        if isinstance(event, DownloadProgress) and len(events) == 3:
            box["handle"].pause()
        if isinstance(event, DownloadPaused):
            paused.set()

    box["handle"] = handle = _downloader(tmp_path).start(_target(hub), on_event=on_event)
    assert paused.wait(30)
    assert handle.state == "paused"
    part = tmp_path / "models" / "tiny-Q4_K_M.gguf.part"
    assert part.stat().st_size == 3 * CHUNK == events[-1].done
    handle.resume()
    assert handle.wait(30) == "done" and handle.path.read_bytes() == DATA
    assert hub.requests[-1][1]["Range"] == f"bytes={3 * CHUNK}-"
    assert isinstance(events[-1], DownloadDone)


def test_cancel_deletes_the_partial_file(hub, tmp_path):
    events = []
    box = {}

    def on_event(event):
        events.append(event)
        if isinstance(event, DownloadProgress) and len(events) == 2:
            box["handle"].cancel()

    box["handle"] = handle = _downloader(tmp_path).start(_target(hub), on_event=on_event)
    assert handle.wait(30) == "cancelled"
    assert events[-1] == DownloadCancelled()
    assert _leftovers(tmp_path) == [] and not handle.path.exists()


def test_cancel_a_failed_download_deletes_its_part(hub, tmp_path):
    hub.drop_after = 5 * CHUNK
    downloader = _downloader(tmp_path)
    handle = downloader.start(_target(hub))
    assert handle.wait(30) == "failed" and _leftovers(tmp_path)
    handle.cancel()
    assert handle.state == "cancelled" and _leftovers(tmp_path) == [] and downloader.pending() == []


def test_wrong_checksum_is_rejected_and_the_file_deleted(hub, tmp_path):
    handle = _downloader(tmp_path).start(_target(hub, sha="0" * 64))
    assert handle.wait(30) == "failed"
    error = handle.error
    assert isinstance(error, ChecksumMismatchError)
    assert f"expected {'0' * 64}, got {SHA}" in error.message and "deleted" in error.message
    assert not handle.path.exists() and _leftovers(tmp_path) == []


def test_server_ignoring_range_restarts_from_zero_and_still_verifies(hub, tmp_path):
    models = tmp_path / "models"
    hub.drop_after = 9 * CHUNK
    assert _downloader(tmp_path).start(_target(hub)).wait(30) == "failed"
    # Corrupt the kept bytes: if they were reused the checksum would fail.
    part = models / "tiny-Q4_K_M.gguf.part"
    part.write_bytes(b"x" * part.stat().st_size)
    hub.ignore_range = True
    restarted = _downloader(tmp_path)
    handle = restarted.resume_pending(restarted.pending()[0])
    assert handle.wait(30) == "done"
    assert "Range" in hub.requests[-1][1]
    assert handle.path.read_bytes() == DATA


def test_not_enough_disk_space_fails_before_any_byte(hub, tmp_path):
    asked = []

    def disk_usage(path):
        asked.append(path)
        return SimpleNamespace(free=1_500_000_000)

    big = (hub.base + PATH, "tiny-Q4_K_M.gguf", 4_200_000_000, SHA)
    handle = _downloader(tmp_path, disk_usage=disk_usage).start(big)
    assert handle.wait(30) == "failed"
    assert isinstance(handle.error, InsufficientDiskSpaceError)
    assert "needs 4.2 GB and 1.5 GB are free" in handle.error.message
    assert asked == [tmp_path / "models"]
    assert hub.requests == [] and _leftovers(tmp_path) == []


def test_auth_errors_never_show_the_token(hub, tmp_path):
    hub.token = "hf_right_token"
    downloader = _downloader(tmp_path)
    handle = downloader.start(_target(hub), token="hf_wrong_token")
    assert handle.wait(30) == "failed"
    error = handle.error
    assert isinstance(error, HubAuthError)
    assert "hf_wrong_token" not in f"{error.user_text()} {error.detail} {error!r}"
    assert hub.requests[-1][1]["Authorization"] == "Bearer hf_wrong_token"

    anonymous = downloader.start(_target(hub))
    assert anonymous.wait(30) == "failed" and "needs a token" in anonymous.error.message

    anonymous.resume(token="hf_right_token")
    assert anonymous.wait(30) == "done" and anonymous.path.read_bytes() == DATA


def test_missing_file_is_not_found(hub, tmp_path):
    target = (hub.base + "/org/tiny-GGUF/resolve/main/gone.gguf", "gone.gguf", 10, None)
    handle = _downloader(tmp_path).start(target)
    assert handle.wait(30) == "failed" and isinstance(handle.error, HubNotFoundError)


def test_split_quant_downloads_every_part_into_the_models_folder(hub, tmp_path):
    halves = DATA[: len(DATA) // 2], DATA[len(DATA) // 2 :]
    parts = []
    for i, half in enumerate(halves, 1):
        name = f"Q8_0/big-Q8_0-0000{i}-of-00002.gguf"
        hub.files[f"/org/big-GGUF/resolve/main/{name}"] = half
        parts.append(
            FilePart(name, len(half), hashlib.sha256(half).hexdigest(), f"{hub.base}/org/big-GGUF/resolve/main/{name}")
        )
    quant = QuantFile("org/big-GGUF", parts[0].filename, "Q8_0", len(DATA), None, parts[0].url, tuple(parts))
    hub.drop_after = 3 * CHUNK
    downloader = _downloader(tmp_path)
    assert downloader.start(quant).wait(30) == "failed"
    [pending] = downloader.pending()
    assert [p.filename for p in pending.parts] == ["big-Q8_0-00001-of-00002.gguf", "big-Q8_0-00002-of-00002.gguf"]
    handle = downloader.resume_pending(pending)
    assert handle.wait(30) == "done"
    folder = tmp_path / "models"
    assert handle.path == folder / "big-Q8_0-00001-of-00002.gguf"
    assert [(folder / p.filename.split("/")[1]).read_bytes() for p in parts] == list(halves)


def test_unreachable_server_is_unavailable(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    handle = _downloader(tmp_path).start((f"http://127.0.0.1:{port}/o/r/resolve/main/m.gguf", "m.gguf", 10, None))
    assert handle.wait(30) == "failed" and isinstance(handle.error, HubUnavailableError)
    assert "Cannot reach the Hugging Face hub" in handle.error.message


def test_a_wrong_content_range_drops_the_part(hub, tmp_path):
    hub.drop_after = 4 * CHUNK
    assert _downloader(tmp_path).start(_target(hub)).wait(30) == "failed"
    sidecar = tmp_path / "models" / "tiny-Q4_K_M.gguf.part.json"
    # Expect another size than the server's: its 206 then names a total that does not match.
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "size": len(DATA) + 10}))
    restarted = _downloader(tmp_path)
    handle = restarted.resume_pending(restarted.pending()[0])
    assert handle.wait(30) == "failed" and "wrong part" in handle.error.message
    assert not (tmp_path / "models" / "tiny-Q4_K_M.gguf.part").exists()


def test_a_file_changed_on_the_hub_is_not_spliced_onto_the_old_part(hub, tmp_path):
    hub.drop_after = 4 * CHUNK
    handle = _downloader(tmp_path).start(_target(hub))
    assert handle.wait(30) == "failed"
    hub.files[PATH] = DATA + b"longer now"  # new ETag: If-Range makes the server send the whole new file
    handle.resume()
    assert handle.wait(30) == "failed" and "no longer the file that was listed" in handle.error.message
    assert hub.requests[-1][1]["If-Range"] == f'"{SHA}"'
    assert _leftovers(tmp_path) == []


def test_pause_then_cancel_while_paused(hub, tmp_path):
    paused, box = threading.Event(), {}

    def on_event(event):
        if isinstance(event, DownloadProgress):
            box["handle"].pause()
        if isinstance(event, DownloadPaused):
            paused.set()

    box["handle"] = handle = _downloader(tmp_path).start(_target(hub), on_event=on_event)
    assert paused.wait(30) and _leftovers(tmp_path)
    handle.cancel()
    assert handle.wait(30) == "cancelled" and _leftovers(tmp_path) == []


def test_paths_outside_the_models_folder_are_refused(tmp_path):
    with pytest.raises(Exception, match="outside the models folder"):
        _downloader(tmp_path).start(("http://127.0.0.1:9/x", "../evil.gguf", 1, None))


def test_failed_events_carry_the_error(hub, tmp_path):
    events = []
    handle = _downloader(tmp_path).start(_target(hub, sha="1" * 64), on_event=events.append)
    handle.wait(30)
    assert events[-1] == DownloadFailed(handle.error)


def test_a_hub_models_header_gives_verdicts_per_quantization_before_download(hub, model_path):
    """Only the GGUF header is fetched (Range requests); each quantization gets a plan from its size."""
    from engine.models.hardware import Hardware
    from engine.models.preview import quantization_verdicts

    model = Path(model_path).read_bytes()
    small, big = "/org/smol-GGUF/resolve/main/smol-Q4_1.gguf", "/org/smol-GGUF/resolve/main/smol-F16.gguf"
    hub.files[small] = model
    quants = [
        QuantFile("org/smol-GGUF", "smol-F16.gguf", "F16", 100 * len(model), None, hub.base + big, ()),
        QuantFile("org/smol-GGUF", "smol-Q4_1.gguf", "Q4_1", len(model), None, hub.base + small, ()),
    ]
    profile = Path(__file__).resolve().parents[2] / "data" / "hardware" / "rtx4060_8gb.json"
    plans = quantization_verdicts(quants, Hardware.from_json(profile.read_text()), 2048)
    assert plans["smol-Q4_1.gguf"].verdict == "full_gpu"
    assert plans["smol-F16.gguf"].verdict == "partial"  # 100 times the weights no longer fit on the 8 GB card
    assert [h.get("Range") for path, h in hub.requests] == ["bytes=0-4194303"]  # the header only
    assert big not in [path for path, _ in hub.requests]
