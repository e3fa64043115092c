"""The offload planner on recorded machines, against sizes computed by hand from the models' shapes."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest

from engine.models.gguf import GGUFFile, TensorInfo, read_gguf
from engine.models.hardware import Hardware, metal_working_set, probe
from engine.models.offload import ModelShape, plan_for_quantizations, plan_offload

PROFILES = Path(__file__).resolve().parents[2] / "data" / "hardware"
MiB, GiB = 1024**2, 1024**3
MARGIN = 512 * MiB  # the planner's default fixed margin, plus 5 % of the card's total memory
# Bytes per block of 256 values (Q4_K, Q6_K) and of 32 values (Q8_0, Q4_1), from ggml's block structs.
Q4_K, Q6_K, Q8_0, Q4_1 = 144 / 256, 210 / 256, 34 / 32, 20 / 32


def hw(name: str) -> Hardware:
    return Hardware.load(PROFILES / f"{name}.json")


def budget(profile: Hardware) -> int:
    gpu = profile.gpus[0]
    return int(gpu.free_bytes - MARGIN - 0.05 * gpu.total_bytes)


def compute(n_vocab: int, n_ctx: int, n_head: int) -> int:
    return 4 * 512 * (n_vocab + n_ctx * n_head)


def synthetic(n_layers, n_embd, n_ff, n_head, n_head_kv, n_vocab) -> GGUFFile:
    """A Q4_K_M-like llama: attention q/k/o and ffn gate/up in Q4_K, v and down in Q6_K, norms F32."""
    kv_dim = n_embd // n_head * n_head_kv
    tensors, offset = [], 0

    def add(name, shape, ggml_type, per_value):
        nonlocal offset
        n_bytes = int(shape[0] * shape[1] * per_value) if len(shape) == 2 else shape[0] * 4
        tensors.append(TensorInfo(name, shape, ggml_type, offset, n_bytes))
        offset += n_bytes

    add("token_embd.weight", (n_embd, n_vocab), 12, Q4_K)
    for i in range(n_layers):
        add(f"blk.{i}.attn_norm.weight", (n_embd,), 0, 4)
        add(f"blk.{i}.attn_q.weight", (n_embd, n_embd), 12, Q4_K)
        add(f"blk.{i}.attn_k.weight", (n_embd, kv_dim), 12, Q4_K)
        add(f"blk.{i}.attn_v.weight", (n_embd, kv_dim), 14, Q6_K)
        add(f"blk.{i}.attn_output.weight", (n_embd, n_embd), 12, Q4_K)
        add(f"blk.{i}.ffn_norm.weight", (n_embd,), 0, 4)
        add(f"blk.{i}.ffn_gate.weight", (n_embd, n_ff), 12, Q4_K)
        add(f"blk.{i}.ffn_up.weight", (n_embd, n_ff), 12, Q4_K)
        add(f"blk.{i}.ffn_down.weight", (n_ff, n_embd), 14, Q6_K)
    add("output_norm.weight", (n_embd,), 0, 4)
    add("output.weight", (n_embd, n_vocab), 14, Q6_K)
    metadata = {
        "general.architecture": "llama",
        "general.name": f"synthetic {n_layers}-layer",
        "llama.block_count": n_layers,
        "llama.embedding_length": n_embd,
        "llama.attention.head_count": n_head,
        "llama.attention.head_count_kv": n_head_kv,
        "llama.vocab_size": n_vocab,
        "general.file_type": 15,
    }
    return GGUFFile("synthetic.gguf", 3, metadata, tensors, 1024 * 1024, 1024 * 1024 + offset)


# Llama-2-7B and Llama-2-70B shapes, by hand: per-layer bytes and the output layer (Q6_K) + norm.
LAYER_7B = 3 * 4096 * 4096 * Q4_K + 4096 * 4096 * Q6_K + 2 * 4096 * 11008 * Q4_K + 11008 * 4096 * Q6_K + 2 * 4096 * 4
OUTPUT_7B = 4096 * 32000 * Q6_K + 4096 * 4
WEIGHTS_7B = 32 * LAYER_7B + 4096 * 32000 * Q4_K + OUTPUT_7B
LAYER_70B = (
    2 * 8192 * 8192 * Q4_K + 8192 * 1024 * (Q4_K + Q6_K) + 2 * 8192 * 28672 * Q4_K + 28672 * 8192 * Q6_K + 2 * 8192 * 4
)
OUTPUT_70B = 8192 * 32000 * Q6_K + 8192 * 4
WEIGHTS_70B = 80 * LAYER_70B + 8192 * 32000 * Q4_K + OUTPUT_70B


@pytest.fixture(scope="module")
def llama7b():
    return synthetic(32, 4096, 11008, 32, 32, 32000)


@pytest.fixture(scope="module")
def llama70b():
    return synthetic(80, 8192, 28672, 64, 8, 32000)


def test_the_synthetic_shapes_match_the_hand_computed_sizes(llama7b, llama70b):
    assert LAYER_7B == 129_818_624 and WEIGHTS_7B == 4_335_460_352
    assert ModelShape.from_gguf(llama7b).layer_bytes == (LAYER_7B,) * 32
    assert ModelShape.from_gguf(llama7b).weights_bytes == WEIGHTS_7B == llama7b.tensor_bytes
    assert LAYER_70B == 544_079_872 and ModelShape.from_gguf(llama70b).weights_bytes == WEIGHTS_70B


def test_recorded_profiles_round_trip_through_json():
    for path in sorted(PROFILES.glob("*.json")):
        profile = Hardware.load(path)
        assert Hardware.from_json(profile.to_json()) == profile
        assert all(gpu.free_bytes < gpu.total_bytes or gpu.unified for gpu in profile.gpus)
    assert hw("m2_pro_32gb_unified").gpus[0].total_bytes == metal_working_set(32 * GiB) == 32 * GiB * 2 // 3


@pytest.mark.parametrize("profile", ["rtx4060_8gb", "rtx4090_24gb", "a100_80gb", "m2_pro_32gb_unified"])
def test_the_bundled_model_goes_fully_on_every_gpu(model_path, profile):
    plan = plan_offload(read_gguf(model_path), hw(profile), 2048)
    layer = 2 * 576 * 4 + 3 * 576 * 1536 * Q4_1 + 2 * 576 * 192 * Q4_1 + 2 * 576 * 576 * Q4_1
    kv_layer = 2048 * (3 * 64 + 3 * 64) * 2  # n_ctx × (K + V of 3 heads of 64) × f16
    output = 576 * 49152 * Q8_0 + 576 * 4  # tied: a copy of token_embd (Q8_0) + output_norm
    assert plan.layer_bytes == (layer,) * 30 and layer == 2_216_448
    assert plan.kv_bytes_per_layer == (kv_layer,) * 30 and plan.kv_bytes == 47_185_920
    assert plan.compute_bytes == compute(49152, 2048, 9) == 138_412_032
    assert plan.verdict == "full_gpu" and plan.n_gpu_layers == 31
    assert plan.vram_needed == 30 * (layer + kv_layer) + 138_412_032 + output == 282_174_720
    assert plan.summary.startswith("Full GPU: all 30 layers on the ")


def test_the_bundled_model_runs_on_the_cpu_without_a_gpu(model_path):
    plan = plan_offload(read_gguf(model_path), hw("no_gpu_16gb"), 2048)
    assert plan.verdict == "cpu_only" and plan.n_gpu_layers == 0 and plan.vram_needed == 0
    assert plan.ram_needed == 96_576_768 + 47_185_920 + 138_412_032
    assert plan.summary.startswith("CPU only (no GPU)")


def test_a_7b_model_with_8k_context_is_split_on_an_8gb_card(llama7b):
    plan = plan_offload(llama7b, hw("rtx4060_8gb"), 8192)
    kv_layer = 8192 * (32 * 128 * 2) * 2  # 128 MiB per layer
    room = budget(hw("rtx4060_8gb")) - compute(32000, 8192, 32)
    n = room // (LAYER_7B + kv_layer)
    assert n == 24 and plan.verdict == "partial" and plan.n_gpu_layers == 24
    assert plan.vram_needed == 24 * (LAYER_7B + kv_layer) + compute(32000, 8192, 32) <= plan.vram_budget
    assert plan.ram_needed == WEIGHTS_7B - 24 * LAYER_7B + 8 * kv_layer + compute(32000, 8192, 32)
    assert "Partial offload: 24 of 32 layers on the NVIDIA GeForce RTX 4060" in plan.summary
    # With 4k context the whole model and its cache fit on the same card.
    assert plan_offload(llama7b, hw("rtx4060_8gb"), 4096).verdict == "full_gpu"


@pytest.mark.parametrize("profile", ["rtx4090_24gb", "a100_80gb", "m2_pro_32gb_unified"])
def test_a_7b_model_fits_whole_on_larger_gpus(llama7b, profile):
    plan = plan_offload(llama7b, hw(profile), 8192)
    assert plan.verdict == "full_gpu" and plan.n_gpu_layers == 33
    assert plan.vram_needed == 32 * (LAYER_7B + 128 * MiB) + compute(32000, 8192, 32) + OUTPUT_7B


def test_a_7b_model_runs_on_the_cpu_of_a_16gb_machine(llama7b):
    plan = plan_offload(llama7b, hw("no_gpu_16gb"), 8192)
    assert plan.verdict == "cpu_only"
    assert plan.ram_needed == WEIGHTS_7B + 32 * 128 * MiB + compute(32000, 8192, 32)


def test_a_70b_model_on_each_machine(llama70b):
    kv_layer = 4096 * (8 * 128 * 2) * 2  # grouped-query attention: 8 KV heads
    big_compute = compute(32000, 4096, 64)
    a100 = plan_offload(llama70b, hw("a100_80gb"), 4096)
    assert a100.verdict == "full_gpu" and a100.vram_needed == 80 * (LAYER_70B + kv_layer) + big_compute + OUTPUT_70B
    n = (budget(hw("rtx4090_24gb")) - big_compute) // (LAYER_70B + kv_layer)
    rtx4090 = plan_offload(llama70b, hw("rtx4090_24gb"), 4096)
    assert n == 40 and rtx4090.verdict == "partial" and rtx4090.n_gpu_layers == 40
    assert rtx4090.ram_needed == WEIGHTS_70B - 40 * LAYER_70B + 40 * kv_layer + big_compute
    # 11 layers would fit on the 8 GB card, but the other 69 do not fit in 24 GB of free RAM.
    rtx4060 = plan_offload(llama70b, hw("rtx4060_8gb"), 4096)
    assert rtx4060.verdict == "wont_fit" and rtx4060.n_gpu_layers == 11
    assert rtx4060.ram_needed == WEIGHTS_70B - 11 * LAYER_70B + 69 * kv_layer + big_compute
    assert plan_offload(llama70b, hw("no_gpu_16gb"), 4096).verdict == "wont_fit"
    unified = plan_offload(llama70b, hw("m2_pro_32gb_unified"), 4096)
    assert unified.verdict == "wont_fit" and unified.summary.startswith("Will not fit")


def test_per_quantization_verdicts_before_download(llama70b):
    shape = ModelShape.from_gguf(llama70b)
    sizes = {"Q2_K": 25_000_000_000, "Q4_K_M": llama70b.file_size, "Q8_0": 73_000_000_000, "F16": 138_000_000_000}
    a100 = plan_for_quantizations(shape, sizes, hw("a100_80gb"), 4096)
    assert a100["Q4_K_M"] == plan_offload(shape, hw("a100_80gb"), 4096)
    assert [p.verdict for p in a100.values()] == ["full_gpu", "full_gpu", "full_gpu", "partial"]
    ratio = 138_000_000_000 / llama70b.file_size
    assert a100["F16"].layer_bytes[0] == round(LAYER_70B * ratio)
    n = (budget(hw("a100_80gb")) - compute(32000, 4096, 64)) // (round(LAYER_70B * ratio) + 4096 * 2048 * 2)
    assert a100["F16"].n_gpu_layers == n == 45
    assert a100["F16"].kv_bytes == a100["Q2_K"].kv_bytes  # the cache does not depend on the quantization
    rtx4090 = plan_for_quantizations(shape, sizes, hw("rtx4090_24gb"), 4096)
    assert [p.verdict for p in rtx4090.values()] == ["partial", "partial", "wont_fit", "wont_fit"]
    assert rtx4090["Q8_0"].summary.startswith("Will not fit: needs 49.2 GB of RAM besides 24 layers on the NVIDIA")
    on_16gb = plan_for_quantizations(shape, sizes, hw("no_gpu_16gb"), 4096)
    assert {q: p.verdict for q, p in on_16gb.items()} == dict.fromkeys(sizes, "wont_fit")
    assert on_16gb["Q2_K"].summary.startswith("Will not fit: needs 25.1 GB of RAM but 10.0 GB are free. KV cache: ")


def test_a_bigger_margin_moves_layers_back_to_the_cpu(llama7b):
    default = plan_offload(llama7b, hw("rtx4060_8gb"), 8192)
    careful = plan_offload(llama7b, hw("rtx4060_8gb"), 8192, margin_bytes=2 * GiB)
    assert careful.n_gpu_layers < default.n_gpu_layers
    q8 = plan_offload(llama7b, hw("rtx4060_8gb"), 8192, kv_type="q8_0")
    assert q8.kv_bytes_per_layer[0] == 8192 * 2 * (4096 // 32 * 34) and q8.n_gpu_layers > default.n_gpu_layers


def test_a_quantized_kv_cache_is_counted_in_the_plan_and_the_verdict(llama7b):
    """32k tokens of a 7B's f16 cache (16 GiB) leave a layer off a 24 GB card; q8_0 (34 bytes per 32
    values) and q4_0 (18 per 32) fit it all, and the summary names the cache's size and type."""
    plans = {t: plan_offload(llama7b, hw("rtx4090_24gb"), 32768, kv_type=t) for t in ("f16", "q8_0", "q4_0")}
    row = 4096  # n_head_kv × head_dim of K, and of V
    assert plans["f16"].kv_bytes == 32 * 32768 * 2 * row * 2
    assert plans["q8_0"].kv_bytes == 32 * 32768 * 2 * (row // 32 * 34)
    assert plans["q4_0"].kv_bytes == 32 * 32768 * 2 * (row // 32 * 18)
    assert [p.verdict for p in plans.values()] == ["partial", "full_gpu", "full_gpu"]
    assert plans["f16"].vram_needed > plans["q8_0"].vram_needed > plans["q4_0"].vram_needed
    assert plans["q8_0"].summary.endswith("KV cache: 8.5 GB (q8_0, 32768 tokens).")
    assert plans["f16"].summary.endswith("KV cache: 16.0 GB (f16, 32768 tokens).")


def test_flash_attention_drops_the_attention_scores_from_the_compute_buffer(llama7b):
    """With flash attention (on, or implied by a quantized cache) the n_ubatch × n_ctx × n_head scores are
    never held; 'auto' with an f16 cache is planned without it (the device may not support it)."""
    without = plan_offload(llama7b, hw("rtx4060_8gb"), 8192)
    assert without.compute_bytes == compute(32000, 8192, 32)
    flash = plan_offload(llama7b, hw("rtx4060_8gb"), 8192, flash_attention="on")
    assert flash.compute_bytes == 4 * 512 * (32000 + 4 * 4096) < without.compute_bytes
    assert plan_offload(llama7b, hw("rtx4060_8gb"), 8192, kv_type="q4_0").compute_bytes == flash.compute_bytes
    assert flash.n_gpu_layers >= without.n_gpu_layers


def test_probing_this_machine():
    found = probe()
    assert found.ram_total > GiB and 0 < found.ram_available <= found.ram_total
    assert found.cpu.cores_logical >= found.cpu.cores_physical >= 1
    if platform.machine() in ("x86_64", "AMD64"):
        assert found.cpu.flags and "avx" in found.cpu.flags
    assert Hardware.from_json(found.to_json()) == found
    assert all(gpu.total_bytes >= gpu.free_bytes >= 0 for gpu in found.gpus)
