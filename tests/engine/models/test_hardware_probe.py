"""The hardware probe's torch child process imports nothing from the user's working directory."""

from __future__ import annotations

from engine.models import hardware


def test_the_torch_probe_never_imports_from_the_working_directory(tmp_path, monkeypatch):
    marker = tmp_path / "pwned.txt"
    planted = tmp_path / "downloaded"
    planted.mkdir()
    (planted / "torch.py").write_text(f"open({str(marker)!r}, 'w').write('torch.py ran')\n", encoding="utf-8")
    monkeypatch.chdir(planted)
    gpus = hardware._torch_gpus()  # the real torch, in a child process; no CUDA device on this machine
    assert not marker.exists()
    assert all(gpu.kind == "cuda" for gpu in gpus)
