"""What the bundled llama.cpp understands: ggml tensor types, file types and model architectures."""

from __future__ import annotations

import functools
import importlib.util
import re
from pathlib import Path
from typing import NamedTuple


class GGMLType(NamedTuple):
    """A ggml tensor type: values per block and bytes per block (ggml.c's type_traits)."""

    name: str
    block_size: int
    type_size: int


# ggml.h's enum ggml_type with the block and byte sizes of ggml.c's type_traits.
# The gaps (4, 5, 31-33, 36-38) are types llama.cpp removed; files using them are refused.
GGML_TYPES: dict[int, GGMLType] = {
    0: GGMLType("F32", 1, 4),
    1: GGMLType("F16", 1, 2),
    2: GGMLType("Q4_0", 32, 18),
    3: GGMLType("Q4_1", 32, 20),
    6: GGMLType("Q5_0", 32, 22),
    7: GGMLType("Q5_1", 32, 24),
    8: GGMLType("Q8_0", 32, 34),
    9: GGMLType("Q8_1", 32, 36),
    10: GGMLType("Q2_K", 256, 84),
    11: GGMLType("Q3_K", 256, 110),
    12: GGMLType("Q4_K", 256, 144),
    13: GGMLType("Q5_K", 256, 176),
    14: GGMLType("Q6_K", 256, 210),
    15: GGMLType("Q8_K", 256, 292),
    16: GGMLType("IQ2_XXS", 256, 66),
    17: GGMLType("IQ2_XS", 256, 74),
    18: GGMLType("IQ3_XXS", 256, 98),
    19: GGMLType("IQ1_S", 256, 50),
    20: GGMLType("IQ4_NL", 32, 18),
    21: GGMLType("IQ3_S", 256, 110),
    22: GGMLType("IQ2_S", 256, 82),
    23: GGMLType("IQ4_XS", 256, 136),
    24: GGMLType("I8", 1, 1),
    25: GGMLType("I16", 1, 2),
    26: GGMLType("I32", 1, 4),
    27: GGMLType("I64", 1, 8),
    28: GGMLType("F64", 1, 8),
    29: GGMLType("IQ1_M", 256, 56),
    30: GGMLType("BF16", 1, 2),
    34: GGMLType("TQ1_0", 256, 54),
    35: GGMLType("TQ2_0", 256, 66),
    39: GGMLType("MXFP4", 32, 17),
}

# llama.h's enum llama_ftype, the value of general.file_type.
_FILE_TYPES = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    19: "IQ2_XXS",
    20: "IQ2_XS",
    21: "Q2_K_S",
    22: "IQ3_XS",
    23: "IQ3_XXS",
    24: "IQ1_S",
    25: "IQ4_NL",
    26: "IQ3_S",
    27: "IQ3_M",
    28: "IQ2_S",
    29: "IQ2_M",
    30: "IQ4_XS",
    31: "IQ1_M",
    32: "BF16",
    36: "TQ1_0",
    37: "TQ2_0",
    38: "MXFP4_MOE",
}

_ARCH_NAME = re.compile(r"^[a-z0-9][a-z0-9_.\-]{0,63}$")


def file_type_name(value) -> str | None:
    """The quantization name of a general.file_type value, ignoring llama.cpp's 'guessed' flag (1024)."""
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    return _FILE_TYPES.get(value & ~1024)


def llama_library() -> Path | None:
    """The libllama shared library inside the installed llama_cpp package, found without loading it."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        for pattern in ("lib/libllama.so", "lib/libllama.dylib", "lib/llama.dll", "libllama.*", "llama.dll"):
            found = sorted(Path(folder).glob(pattern))
            if found:
                return found[0]
    return None


@functools.lru_cache(maxsize=1)
def _library_strings() -> bytes | None:
    path = llama_library()
    try:
        return path.read_bytes() if path else None
    except OSError:
        return None


def known_architecture(name: str) -> bool | None:
    """Whether the bundled llama.cpp knows this architecture; None when that cannot be told.

    llama.cpp has no API that lists its architectures: their names are the C strings
    of LLM_ARCH_NAMES (llama-arch.cpp), compiled into libllama. So an architecture is
    known when its name, NUL-terminated, occurs in the library's bytes (read once).
    The end is matched, not the start, because the linker stores "bert" inside
    "nomic-bert". This errs towards accepting: a name that happens to occur elsewhere
    in the library passes here and is then refused by llama.cpp itself at load.
    """
    if not _ARCH_NAME.match(name):
        return False
    strings = _library_strings()
    if strings is None:
        return None
    return name.encode("ascii") + b"\0" in strings
