"""Reading and checking GGUF files in pure Python, before llama.cpp ever sees them.

Every read is bounded by the bytes left in the file, so a corrupt length or count
gives a clear error instead of a huge allocation or an endless loop.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from engine.errors import InvalidModelFileError, ModelLoadError
from engine.models.ggml import GGML_TYPES, file_type_name, known_architecture

MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_ARRAY_DEPTH = 2  # llama.cpp reads no nested arrays; one level of nesting is already generous

# GGUF value types: (struct format, size) for the scalars; 8 is a string, 9 an array.
_SCALARS = {
    0: ("B", 1),
    1: ("b", 1),
    2: ("H", 2),
    3: ("h", 2),
    4: ("I", 4),
    5: ("i", 4),
    6: ("f", 4),
    7: ("?", 1),
    10: ("Q", 8),
    11: ("q", 8),
    12: ("d", 8),
}
_STRING, _ARRAY = 8, 9
_LAYER = re.compile(r"^blk\.(\d+)\.")


class _Refused(Exception):
    """A problem found in the file, in words; check_gguf turns it into InvalidModelFileError."""


@dataclass(frozen=True)
class TensorInfo:
    """One entry of the tensor table; offset is relative to the start of the data section."""

    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int
    n_bytes: int

    @property
    def n_elements(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count

    @property
    def layer(self) -> int | None:
        """The repeating block this tensor belongs to (`blk.N.`), or None for input/output tensors."""
        match = _LAYER.match(self.name)
        return int(match.group(1)) if match else None


@dataclass
class GGUFFile:
    """The header of a GGUF file: metadata and tensor table, without the tensor data."""

    path: str
    version: int
    metadata: dict
    tensors: list[TensorInfo]
    data_offset: int
    file_size: int
    alignment: int = DEFAULT_ALIGNMENT
    _by_name: dict = field(default_factory=dict, repr=False)

    def _arch(self, key: str, default=None):
        return self.metadata.get(f"{self.architecture}.{key}", default)

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    @property
    def n_layers(self) -> int:
        return int(self._arch("block_count", 0))

    @property
    def context_length(self) -> int:
        return int(self._arch("context_length", 0))

    @property
    def embedding_length(self) -> int:
        return int(self._arch("embedding_length", 0))

    @property
    def n_head(self) -> int:
        value = self._arch("attention.head_count", 0)
        return int(max(value) if isinstance(value, list) else value)

    @property
    def n_head_kv(self) -> int | list[int]:
        """KV heads: one number, or one per layer for models that vary them."""
        value = self._arch("attention.head_count_kv", None)
        return self.n_head if value is None else value

    @property
    def n_vocab(self) -> int:
        tokens = self.metadata.get("tokenizer.ggml.tokens")
        return len(tokens) if isinstance(tokens, list) else int(self._arch("vocab_size", 0))

    @property
    def file_type(self) -> str:
        """The quantization named by general.file_type (e.g. "Q4_K_M"), or the commonest tensor type."""
        named = file_type_name(self.metadata.get("general.file_type"))
        if named:
            return named
        weights: dict[int, int] = {}
        for tensor in self.tensors:
            weights[tensor.ggml_type] = weights.get(tensor.ggml_type, 0) + tensor.n_bytes
        return GGML_TYPES[max(weights, key=weights.__getitem__)].name if weights else "unknown"

    @property
    def n_params(self) -> int:
        return sum(t.n_elements for t in self.tensors)

    @property
    def tensor_bytes(self) -> int:
        return sum(t.n_bytes for t in self.tensors)

    @property
    def has_chat_template(self) -> bool:
        return bool(self.metadata.get("tokenizer.chat_template"))

    def tensor(self, name: str) -> TensorInfo | None:
        if not self._by_name:
            self._by_name = {t.name: t for t in self.tensors}
        return self._by_name.get(name)


class _Reader:
    """Little-endian reads that refuse to go past the end of the file."""

    def __init__(self, file: BinaryIO, size: int):
        self.file, self.size, self.pos = file, size, 0
        self.where = "the header"

    def take(self, n: int) -> bytes:
        if n > self.size - self.pos:
            raise _Refused(
                f"the file is truncated in {self.where}: it needs bytes up to {self.pos + n:,} "
                f"but the file has {self.size:,}"
            )
        data = self.file.read(n)
        if len(data) != n:
            raise _Refused(f"the file could not be read in {self.where} (it shrank while being read)")
        self.pos += n
        return data

    def scalar(self, fmt: str, size: int):
        return struct.unpack("<" + fmt, self.take(size))[0]

    def count(self, what: str, min_item_bytes: int) -> int:
        """A u64 count, refused when even the smallest items would not fit in the rest of the file."""
        return self.fits(self.scalar("Q", 8), what, min_item_bytes)

    def fits(self, n: int, what: str, min_item_bytes: int) -> int:
        if n * min_item_bytes > self.size - self.pos:
            raise _Refused(
                f"the file is truncated or corrupt in {self.where}: it declares {n:,} {what} "
                f"but only {self.size - self.pos:,} bytes are left"
            )
        return n

    def string(self, what: str = "bytes of text") -> str:
        return self.take(self.count(what, 1)).decode("utf-8", errors="replace")

    def value(self, kind: int, depth: int = 0):
        if kind in _SCALARS:
            return self.scalar(*_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY and depth < MAX_ARRAY_DEPTH:
            item = self.scalar("I", 4)
            if item in _SCALARS:
                fmt, size = _SCALARS[item]
                n = self.count("array items", size)
                return list(struct.unpack(f"<{n}{fmt}", self.take(n * size)))
            n = self.count("array items", 8 if item in (_STRING, _ARRAY) else 1)
            return [self.value(item, depth + 1) for _ in range(n)]
        raise _Refused(f"{self.where} has an unknown value type {kind}")


def _header(reader: _Reader) -> tuple[int, int, int]:
    """Magic, version, tensor count and metadata count."""
    if reader.size < 4 or reader.take(4) != MAGIC:
        raise _Refused("it is not a GGUF file (the first bytes are not 'GGUF')")
    version = reader.scalar("I", 4)
    if version not in SUPPORTED_VERSIONS:
        raise _Refused(f"GGUF version {version} is not supported (only versions 2 and 3 are)")
    # The counts are checked where their items start: a loop over them ends with the file anyway.
    return version, reader.scalar("Q", 8), reader.scalar("Q", 8)


def _read(file: BinaryIO, path: str, size: int) -> GGUFFile:
    reader = _Reader(file, size)
    version, n_tensors, n_kv = _header(reader)
    metadata: dict = {}
    for i in range(n_kv):
        reader.where = f"the metadata at entry {i + 1} of {n_kv}"
        key = reader.string()
        reader.where = f"the metadata at entry {i + 1} of {n_kv} ('{key}')"
        if key in metadata:
            raise _Refused(f"the metadata key '{key}' appears twice")
        metadata[key] = reader.value(reader.scalar("I", 4))
    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or isinstance(alignment, bool) or alignment <= 0 or alignment & (alignment - 1):
        raise _Refused(f"general.alignment is {alignment!r}, not a power of two")
    reader.where = "the tensor table"
    reader.fits(n_tensors, "tensors", 32)  # the smallest tensor entry takes 32 bytes
    tensors = []
    for i in range(n_tensors):
        reader.where = f"the tensor table at entry {i + 1} of {n_tensors}"
        name = reader.string()
        reader.where = f"the tensor table at entry {i + 1} of {n_tensors} ('{name}')"
        n_dims = reader.scalar("I", 4)
        if not 1 <= n_dims <= MAX_DIMS:
            raise _Refused(f"tensor '{name}' has {n_dims} dimensions (at most {MAX_DIMS} are allowed)")
        shape = struct.unpack(f"<{n_dims}Q", reader.take(8 * n_dims))
        ggml_type, offset = reader.scalar("I", 4), reader.scalar("Q", 8)
        tensors.append((name, shape, ggml_type, offset))
    data_offset = -(-reader.pos // alignment) * alignment
    return GGUFFile(path, version, metadata, [_tensor(*t) for t in tensors], data_offset, size, alignment)


def _tensor(name: str, shape: tuple[int, ...], ggml_type: int, offset: int) -> TensorInfo:
    kind = GGML_TYPES.get(ggml_type)
    if kind is None:
        raise _Refused(f"tensor '{name}' has unknown ggml type {ggml_type}")
    if shape[0] % kind.block_size:
        raise _Refused(
            f"tensor '{name}' has rows of {shape[0]} values, not a multiple of the "
            f"{kind.block_size}-value blocks of {kind.name}"
        )
    n_elements = 1
    for dim in shape:
        n_elements *= dim
    return TensorInfo(name, tuple(shape), ggml_type, offset, n_elements // kind.block_size * kind.type_size)


def read_gguf(path: str | os.PathLike) -> GGUFFile:
    """Read a GGUF file's metadata and tensor table; raises InvalidModelFileError when they are unreadable."""
    return _open(path, _read)


def _open(path, action):
    path = str(path)
    if not os.path.isfile(path):
        raise ModelLoadError(f"The model file '{path}' does not exist.")
    try:
        with open(path, "rb") as file:
            return action(file, path, os.fstat(file.fileno()).st_size)
    except OSError as exc:
        raise ModelLoadError(
            f"The model file '{path}' cannot be read: {exc.strerror or exc}.", detail=repr(exc)
        ) from exc
    except _Refused as exc:
        raise _invalid(path, str(exc)) from None


def _invalid(path: str, problem: str) -> InvalidModelFileError:
    return InvalidModelFileError(
        f"Locus could not load '{Path(path).name}' (corrupt or unsupported model file): {problem}.",
        hint="Download it again or choose another model.",
        detail=path,
    )


def _check_layout(gguf: GGUFFile) -> None:
    # llama.cpp's gguf reader wants the tensors packed in table order, each padded to the alignment.
    names: set[str] = set()
    expected = 0
    previous: TensorInfo | None = None
    for tensor in gguf.tensors:
        if tensor.name in names:
            raise _Refused(f"the tensor '{tensor.name}' appears twice")
        names.add(tensor.name)
        if tensor.offset % gguf.alignment:
            raise _Refused(
                f"tensor '{tensor.name}' starts at offset {tensor.offset:,}, "
                f"not a multiple of the alignment {gguf.alignment}"
            )
        if previous is not None and tensor.offset < expected:  # (expected is 0 before the first)
            raise _Refused(
                f"tensor '{tensor.name}' at offset {tensor.offset:,} overlaps the data of "
                f"'{previous.name}', which ends at {previous.offset + previous.n_bytes:,}"
            )
        if tensor.offset > expected:
            raise _Refused(
                f"tensor '{tensor.name}' starts at offset {tensor.offset:,} but the tensor "
                f"before it ends at {expected:,} (corrupt tensor table)"
            )
        expected = tensor.offset + -(-tensor.n_bytes // gguf.alignment) * gguf.alignment
        previous = tensor
    for tensor in gguf.tensors:
        end = gguf.data_offset + tensor.offset + tensor.n_bytes
        if end > gguf.file_size:
            raise _Refused(
                f"the file is truncated: tensor '{tensor.name}' needs bytes up to {end:,} "
                f"but the file has {gguf.file_size:,} ({end - gguf.file_size:,} bytes missing)"
            )


def _check_model(gguf: GGUFFile) -> None:
    arch = gguf.metadata.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise _Refused("the required metadata key 'general.architecture' is missing")
    if known_architecture(arch) is False:
        raise _Refused(f"the architecture '{arch}' is not supported by the bundled llama.cpp")
    blocks = gguf.metadata.get(f"{arch}.block_count")
    if not isinstance(blocks, int) or isinstance(blocks, bool) or blocks <= 0:
        raise _Refused(f"the required metadata key '{arch}.block_count' is missing or invalid")


def check_gguf(path: str | os.PathLike) -> GGUFFile:
    """Read and check a GGUF file as llama.cpp would need it; raises InvalidModelFileError naming the problem."""
    gguf = read_gguf(path)
    try:
        _check_model(gguf)
        _check_layout(gguf)
    except _Refused as exc:
        raise _invalid(gguf.path, str(exc)) from None
    return gguf


def quick_check(path: str | os.PathLike) -> None:
    """Check only the 24-byte header (magic, version, counts): cheap enough for a file picker."""
    _open(path, lambda file, _path, size: _header(_Reader(file, size)))


class NeedMoreBytes(Exception):
    """The bytes given end inside the header: fetch a longer prefix of the file."""


def read_gguf_prefix(data: bytes, name: str, file_size: int) -> GGUFFile:
    """A GGUF header from the first bytes of a file of ``file_size`` bytes (e.g. a Range request's answer)."""
    import io

    try:
        return _read(io.BytesIO(data), name, file_size)
    except _Refused as exc:
        if len(data) < file_size and "shrank" in str(exc):
            raise NeedMoreBytes(str(exc)) from None
        raise _invalid(name, str(exc)) from None
