"""`locus ask --model PATH` with a model file that fails the GGUF checks."""

from __future__ import annotations

import os

from engine.models.gguf import read_gguf
from tests.app.helpers import locus


def test_a_truncated_model_is_refused_with_the_missing_tensor(tmp_path, model_path):
    header = read_gguf(model_path)
    length = header.data_offset + 40_000_000
    path = tmp_path / "cut.gguf"
    with open(model_path, "rb") as src:
        path.write_bytes(src.read(length))
    result = locus(tmp_path / "home", "ask", "--model", str(path), "hi")
    assert result.returncode == 1 and result.stdout == ""
    assert "could not load 'cut.gguf'" in result.stderr
    first = next(t for t in header.tensors if header.data_offset + t.offset + t.n_bytes > length)
    assert f"the file is truncated: tensor '{first.name}' needs bytes up to" in result.stderr
    assert f"but the file has {length:,}" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bit_flipped_model_is_refused_with_the_bad_field(tmp_path, model_path):
    header = read_gguf(model_path)
    path = tmp_path / "flipped.gguf"
    with open(model_path, "rb") as src:
        data = bytearray(src.read(header.data_offset))
    at = data.index(b"llama", 24)  # general.architecture's value
    data[at + 4] ^= 0x02  # "llama" -> "llamc"
    path.write_bytes(bytes(data))
    os.truncate(path, header.file_size)
    result = locus(tmp_path / "home", "ask", "--model", str(path), "hi")
    assert result.returncode == 1 and result.stdout == ""
    assert "the architecture 'llamc' is not supported by the bundled llama.cpp" in result.stderr
    assert "Traceback" not in result.stderr
