"""The GGUF reader and checks, on the real bundled model and on broken copies of it."""

from __future__ import annotations

import os
import struct

import pytest

from engine.errors import InvalidModelFileError, ModelLoadError
from engine.models.ggml import known_architecture, llama_library
from engine.models.gguf import check_gguf, quick_check, read_gguf
from engine.runtime.types import ModelConfig, ModelLoadFailed

# Offsets in the bundled file's header: magic, version, tensor count, kv count, then the
# first metadata entry: key length (u64) and "general.architecture", its type, its value.
VERSION_AT, FIRST_KEY_LENGTH_AT = 4, 24
ARCH_VALUE_AT = 24 + 8 + len("general.architecture") + 4 + 8


@pytest.fixture(scope="module")
def bundled(model_path):
    return read_gguf(model_path)


@pytest.fixture(scope="module")
def header(model_path, bundled) -> bytes:
    with open(model_path, "rb") as file:
        return file.read(bundled.data_offset)


def patched(tmp_path, header: bytes, size: int, at: int, new: bytes):
    """A copy with the same header but `new` at `at`; the data section is left sparse (zeros)."""
    path = tmp_path / "patched.gguf"
    data = bytearray(header)
    data[at : at + len(new)] = new
    path.write_bytes(bytes(data))
    os.truncate(path, size)
    return path


def flipped(tmp_path, header: bytes, size: int, at: int, bit: int):
    return patched(tmp_path, header, size, at, bytes([header[at] ^ (1 << bit)]))


def cut(tmp_path, model_path, length: int):
    path = tmp_path / "cut.gguf"
    with open(model_path, "rb") as src:
        path.write_bytes(src.read(length))
    return path


def table_entry(header: bytes, name: str) -> tuple[int, int]:
    """Where a tensor's type and offset fields are in the header."""
    at = header.index(name.encode()) + len(name)
    n_dims = struct.unpack_from("<I", header, at)[0]
    type_at = at + 4 + 8 * n_dims
    return type_at, type_at + 4


def refused(path, *fragments: str) -> str:
    with pytest.raises(InvalidModelFileError) as info:
        check_gguf(path)
    message = str(info.value)
    assert info.value.code == "invalid_model_file" and path.name in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_the_bundled_model_reads_with_its_shape(bundled, model_path):
    assert bundled.version == 3 and bundled.architecture == "llama"
    assert bundled.n_layers == 30 and len(bundled.tensors) == 30 * 9 + 2  # blocks + token_embd + output_norm
    assert (bundled.embedding_length, bundled.n_head, bundled.n_head_kv) == (576, 9, 3)
    assert bundled.context_length == 8192 and bundled.n_vocab == 49152
    assert bundled.file_type == "Q4_1" and bundled.has_chat_template
    assert bundled.file_size == os.path.getsize(model_path)
    assert bundled.data_offset % bundled.alignment == 0
    padding = bundled.file_size - bundled.data_offset - bundled.tensor_bytes
    assert 0 <= padding < bundled.alignment * len(bundled.tensors)
    assert 134e6 < bundled.n_params < 136e6
    assert check_gguf(model_path).n_params == bundled.n_params


def test_tensor_sizes_follow_the_ggml_block_sizes(bundled):
    embd = bundled.tensor("token_embd.weight")
    assert embd.shape == (576, 49152) and embd.n_bytes == 576 * 49152 // 32 * 34  # Q8_0: 34 bytes per 32
    up = bundled.tensor("blk.12.ffn_up.weight")
    assert up.shape == (576, 1536) and up.n_bytes == 576 * 1536 // 32 * 20  # Q4_1: 20 bytes per 32
    assert bundled.tensor("blk.0.attn_norm.weight").n_bytes == 576 * 4  # F32
    assert {t.layer for t in bundled.tensors} == set(range(30)) | {None}


@pytest.mark.parametrize(
    "length, where",
    [
        (0, "not a GGUF file"),
        (3, "not a GGUF file"),
        (10, "the file is truncated in the header"),
        (20, "the file is truncated in the header: it needs bytes up to 24 but the file has 20"),
        (40, "in the metadata at entry 1 of"),
        (200, "('general."),
    ],
)
def test_a_file_cut_in_its_header_or_metadata_is_refused(tmp_path, model_path, length, where):
    message = refused(cut(tmp_path, model_path, length), where)
    assert "metadata" in message or "header" in message or "GGUF" in message


def test_a_file_cut_in_its_tokenizer_says_which_entry(tmp_path, model_path):
    refused(cut(tmp_path, model_path, 64 * 1024), "truncated or corrupt in the metadata at entry", "('tokenizer.ggml.")


def test_a_file_cut_in_its_tensor_table_says_which_tensor(tmp_path, model_path, bundled, header):
    type_at, _ = table_entry(header, "blk.3.ffn_up.weight")
    refused(
        cut(tmp_path, model_path, type_at + 2),
        "truncated in the tensor table at entry",
        f"of {len(bundled.tensors)} ('blk.3.ffn_up.weight')",
    )


@pytest.mark.parametrize("into_data", [1, 30_000_000, 31_200_000, 60_000_000, -1])
def test_a_file_cut_in_its_data_names_the_first_tensor_that_is_missing(tmp_path, model_path, bundled, into_data):
    length = bundled.data_offset + into_data if into_data > 0 else bundled.file_size - 100
    first = next(t for t in bundled.tensors if bundled.data_offset + t.offset + t.n_bytes > length)
    end = bundled.data_offset + first.offset + first.n_bytes
    message = refused(
        cut(tmp_path, model_path, length),
        f"the file is truncated: tensor '{first.name}' needs bytes up to {end:,} "
        f"but the file has {length:,} ({end - length:,} bytes missing)",
    )
    assert "Download it again" in InvalidModelFileError(message, hint="Download it again").user_text()


def test_a_flipped_magic_or_version_is_refused(tmp_path, header, bundled):
    refused(flipped(tmp_path, header, bundled.file_size, 0, 5), "not a GGUF file")
    refused(flipped(tmp_path, header, bundled.file_size, VERSION_AT, 3), "GGUF version 11 is not supported")


def test_a_huge_length_field_is_refused_without_allocating_it(tmp_path, header, bundled):
    path = patched(tmp_path, header, bundled.file_size, FIRST_KEY_LENGTH_AT, struct.pack("<Q", 1 << 62))
    refused(path, "truncated or corrupt in the metadata at entry 1 of", f"declares {1 << 62:,} bytes of text but only")
    counts = patched(tmp_path, header, bundled.file_size, 8, struct.pack("<Q", 1 << 40))
    refused(counts, "in the tensor table: it declares", f"{1 << 40:,} tensors")


def test_an_unknown_architecture_is_refused(tmp_path, header, bundled):
    assert header[ARCH_VALUE_AT : ARCH_VALUE_AT + 5] == b"llama"
    refused(
        flipped(tmp_path, header, bundled.file_size, ARCH_VALUE_AT + 4, 1),
        "the architecture 'llamc' is not supported by the bundled llama.cpp",
    )


def test_a_flipped_tensor_type_is_refused(tmp_path, header, bundled):
    type_at, _ = table_entry(header, "blk.0.ffn_down.weight")
    refused(
        flipped(tmp_path, header, bundled.file_size, type_at, 6),
        "tensor 'blk.0.ffn_down.weight' has unknown ggml type 67",
    )
    # Q4_1 -> Q4_0 is a known type but a smaller tensor: the next one no longer follows it.
    refused(
        flipped(tmp_path, header, bundled.file_size, type_at, 0),
        "tensor 'blk.0.ffn_gate.weight' starts at offset",
        "corrupt tensor table",
    )


def test_a_flipped_tensor_offset_is_refused(tmp_path, header, bundled):
    _, offset_at = table_entry(header, "blk.0.ffn_gate.weight")
    refused(
        flipped(tmp_path, header, bundled.file_size, offset_at, 0),
        "tensor 'blk.0.ffn_gate.weight' starts at offset",
        "not a multiple of the alignment 32",
    )
    refused(
        flipped(tmp_path, header, bundled.file_size, offset_at + 2, 0),
        "tensor 'blk.0.ffn_gate.weight' at offset",
        "overlaps the data of 'blk.0.ffn_down.weight'",
    )
    refused(
        flipped(tmp_path, header, bundled.file_size, offset_at + 5, 2),
        "tensor 'blk.0.ffn_gate.weight' starts at offset",
        "corrupt tensor table",
    )


def test_every_single_bit_flip_in_the_header_start_is_handled(tmp_path, header, bundled):
    """No flip in the first 512 bytes crashes the reader: each reads or is refused with a message."""
    for at in range(0, 512, 7):
        path = flipped(tmp_path, header, bundled.file_size, at, at % 8)
        try:
            check_gguf(path)
        except InvalidModelFileError as exc:
            assert str(exc).startswith("Locus could not load 'patched.gguf'")


def test_missing_required_keys_are_named(tmp_path, header, bundled):
    renamed = patched(tmp_path, header, bundled.file_size, header.index(b"llama.block_count"), b"llama.block_kount")
    refused(renamed, "'llama.block_count' is missing")


def test_quick_check_looks_at_the_header_only(tmp_path, model_path):
    quick_check(model_path)
    quick_check(cut(tmp_path, model_path, 4096))  # the header is whole; only the full check sees the rest
    with pytest.raises(InvalidModelFileError, match="not a GGUF file"):
        (tmp_path / "notes.gguf").write_text("hello")
        quick_check(tmp_path / "notes.gguf")
    with pytest.raises(ModelLoadError, match="does not exist"):
        quick_check(tmp_path / "nope.gguf")


def test_the_known_architectures_come_from_the_bundled_library():
    assert llama_library() is not None
    for name in ("llama", "qwen2", "bert", "gemma3", "phi3"):
        assert known_architecture(name), name
    for name in ("llamc", "not-a-model", "LLAMA", "llama\0x"):
        assert known_architecture(name) is False, name


def test_the_runtime_refuses_a_truncated_model_and_keeps_serving(runtime, tmp_path, model_path, bundled):
    from engine.runtime.types import Done
    from tests.engine.runtime.test_runtime import request

    before = runtime.model_info
    path = cut(tmp_path, model_path, bundled.data_offset + 50_000_000)
    events = []
    with pytest.raises(InvalidModelFileError, match=r"the file is truncated: tensor 'blk\.") as info:
        runtime.load(ModelConfig(str(path)), events.append).result(timeout=60)
    assert isinstance(events[-1], ModelLoadFailed) and events[-1].error is info.value
    assert runtime.model_info == before
    assert isinstance(runtime.submit(request()).wait(60), Done)
