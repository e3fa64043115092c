"""The KV cache's element type and flash attention: the choices, llama.cpp's codes for them, and
which combinations the bundled llama.cpp accepts.

A quantized cache holds more context in the same memory: q8_0 stores 32 values in 34 bytes
(0.53 of f16), q4_0 in 18 (0.28). llama.cpp reads a quantized V cache only inside its
flash-attention kernel, so a quantized cache with flash attention off is refused here with
the reason, before llama.cpp is asked (it would only log "quantized V cache requires
flash_attn to be enabled"). "auto" lets llama.cpp enable flash attention where the device
supports it (on a CPU it does), except with speculative decoding on a CPU (effective_flash_attention).
"""

from __future__ import annotations

KV_CACHE_TYPES = ("f16", "q8_0", "q4_0")
FLASH_ATTENTION = ("auto", "on", "off")

# ggml.h's enum ggml_type values, for llama_context_params.type_k / type_v.
GGML_TYPE_IDS = {"f16": 1, "q8_0": 8, "q4_0": 2}
# llama.h's enum llama_flash_attn_type (LLAMA_FLASH_ATTN_TYPE_AUTO, _ENABLED, _DISABLED).
FLASH_ATTN_TYPES = {"auto": -1, "on": 1, "off": 0}
QUANTIZED_V_NEEDS_FA = "quantized V cache requires flash_attn"  # what llama.cpp logs when it refuses


def combination_problem(kv_cache_type: str, flash_attention: str) -> str | None:
    """Why llama.cpp cannot run this cache type with this flash-attention setting, in words; None if it can."""
    if kv_cache_type not in KV_CACHE_TYPES:
        return f"KV cache type '{kv_cache_type}' is not one of {', '.join(KV_CACHE_TYPES)}."
    if flash_attention not in FLASH_ATTENTION:
        return f"Flash attention '{flash_attention}' is not one of {', '.join(FLASH_ATTENTION)}."
    if kv_cache_type != "f16" and flash_attention == "off":
        return (
            f"A {kv_cache_type} KV cache needs flash attention: llama.cpp reads a quantized cache only in its "
            "flash-attention kernel. Set flash attention to 'auto' or 'on', or the KV cache type to 'f16'."
        )
    return None


def effective_flash_attention(kv_cache_type: str, flash_attention: str, *, speculative: bool, gpu_layers: int) -> str:
    """The flash-attention setting the context is made with: "auto" is "off" while speculative decoding runs on
    a CPU with an f16 cache.

    llama.cpp's CPU flash attention evaluates one query row in chunks of the cache (from 512 cells on) but
    several rows in one pass, so a draft checked in a batch got logits that differ by rounding from the
    ones plain decoding computes one token at a time, and a greedy answer could part from the plain one at
    a near-tie. Without flash attention (and with llama.cpp built without llamafile's kernels, see
    packaging/setup.sh) every row's arithmetic is the same whatever shares its batch: the answer is the
    same token for token. Prompts are evaluated about 20% slower without it on the bundled model; checking
    drafts gets cheaper (docs/benchmarks.md). An explicit "on" is kept, and a quantized cache needs it.
    """
    if flash_attention == "auto" and speculative and gpu_layers == 0 and kv_cache_type == "f16":
        return "off"
    return flash_attention
