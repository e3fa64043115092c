"""The KV cache type and flash attention settings, from ModelConfig to llama.cpp's context, on the bundled model."""

from __future__ import annotations

import pytest

from engine.errors import InvalidRequestError, ModelLoadError
from engine.models.gguf import read_gguf
from engine.models.offload import ModelShape, kv_cache_bytes
from engine.runtime.context import NativeContext
from engine.runtime.generator import Generator
from engine.runtime.native import NativeModel
from engine.runtime.types import ModelConfig

PROMPT_TOKENS = 40


def cached_bytes(model_path: str, kv_cache_type: str, flash_attention: str = "auto") -> int:
    """What llama.cpp says one sequence's cache holds after the same 40 tokens, under the given settings."""
    config = ModelConfig(model_path, n_ctx=512, kv_cache_type=kv_cache_type, flash_attention=flash_attention)
    gen = Generator(config)
    try:
        assert (gen.ctx.kv_cache_type, gen.ctx.flash_attention) == (kv_cache_type, flash_attention)
        gen.ctx.decode(list(range(100, 100 + PROMPT_TOKENS)), 0)
        return gen.ctx.state_size(0)
    finally:
        gen.close()


def test_the_cache_type_reaches_the_context_and_sizes_the_cache_as_the_planner_counts_it(model_path):
    """llama.cpp's state of a sequence holds its cached K and V rows in the cache's type: q8_0 takes 34 bytes
    per 32 values and q4_0 18, against f16's 64. The planner's kv_cache_bytes gives the same bytes; the rest
    of the state (positions, a header) is the same under every type."""
    shape = ModelShape.from_gguf(read_gguf(model_path))
    sizes = {t: cached_bytes(model_path, t) for t in ("f16", "q8_0", "q4_0")}
    planned = {t: sum(kv_cache_bytes(shape, PROMPT_TOKENS, t)) for t in sizes}
    assert sizes["f16"] > sizes["q8_0"] > sizes["q4_0"]
    overheads = {sizes[t] - planned[t] for t in sizes}
    assert len(overheads) == 1 and 0 <= overheads.pop() < 4096, (sizes, planned)
    # Flash attention forced on gives the same cache; with an f16 cache it may also be off.
    assert cached_bytes(model_path, "q8_0", "on") == sizes["q8_0"]
    assert cached_bytes(model_path, "f16", "off") == sizes["f16"]


def test_a_quantized_cache_with_flash_attention_off_is_refused_with_the_reason(model_path):
    with pytest.raises(InvalidRequestError, match="q4_0 KV cache needs flash attention") as refused:
        ModelConfig(model_path, kv_cache_type="q4_0", flash_attention="off")
    assert "'auto' or 'on'" in str(refused.value) and "'f16'" in str(refused.value)
    with pytest.raises(InvalidRequestError, match="KV cache type 'q5_9' is not one of f16, q8_0, q4_0"):
        ModelConfig(model_path, kv_cache_type="q5_9")
    # The context refuses it too, before llama.cpp (which would only log why it returned no context).
    model = NativeModel(model_path)
    try:
        with pytest.raises(ModelLoadError, match="q8_0 KV cache needs flash attention"):
            NativeContext(model, n_ctx=512, n_threads=1, kv_cache_type="q8_0", flash_attention="off")
    finally:
        model.close()


def test_llama_cpp_itself_refuses_a_quantized_v_cache_without_flash_attention(model_path):
    """Why the combination is refused: the vendored llama.cpp returns no context for it."""
    import llama_cpp

    from engine.runtime.kv_cache import GGML_TYPE_IDS, QUANTIZED_V_NEEDS_FA
    from engine.runtime.native import clear_recent_log, recent_errors

    model = NativeModel(model_path)
    try:
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = 512
        params.type_k = params.type_v = GGML_TYPE_IDS["q8_0"]
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        clear_recent_log()
        assert not llama_cpp.llama_init_from_model(model.model, params)
        assert QUANTIZED_V_NEEDS_FA in recent_errors()
    finally:
        model.close()
