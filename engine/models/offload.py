"""How many layers of a model to put on the GPU, and whether it fits at all.

The plan follows how llama.cpp places a model: with n_gpu_layers = N <= n_layers it
offloads the last N repeating blocks, each with its share of the KV cache; N =
n_layers + 1 also offloads the output layer (output_norm and output.weight, or a
copy of token_embd when the model ties them). token_embd itself stays on the CPU.
Any offload also takes a compute buffer on the GPU. Sizes are bytes; GB in the
summaries are GiB, as GPU makers and llama.cpp count them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from engine.models.ggml import GGML_TYPES
from engine.models.gguf import GGUFFile
from engine.models.hardware import GPU, Hardware

GiB = 1024**3
DEFAULT_MARGIN_BYTES = 512 * 1024**2  # the CUDA/Metal context and driver allocations
DEFAULT_MARGIN_FRACTION = 0.05  # of the GPU's total memory: fragmentation and other programs
DEFAULT_RAM_RESERVE = 1 * GiB  # the rest of Locus (embedder, UI) and the system keep this much RAM
N_UBATCH = 512  # llama.cpp's default physical batch
_KV_TYPES = {"f32": 0, "f16": 1, "bf16": 30, "q8_0": 8, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7}


@dataclass(frozen=True)
class ModelShape:
    """What the planner needs of a model: bytes per layer and the attention geometry."""

    name: str
    n_layers: int
    layer_bytes: tuple[int, ...]
    input_bytes: int  # token_embd and other tensors outside the blocks that stay on the CPU
    output_bytes: int  # what the output layer takes on the GPU when offloaded
    output_file_bytes: int  # of which stored in the file as their own tensors (0 when tied)
    n_embd: int
    n_head: int
    n_head_kv: tuple[int, ...]  # per layer
    head_dim_k: int
    head_dim_v: int
    n_vocab: int
    file_size: int

    @property
    def weights_bytes(self) -> int:
        return self.input_bytes + sum(self.layer_bytes) + self.output_file_bytes

    @classmethod
    def from_gguf(cls, gguf: GGUFFile) -> ModelShape:
        """The shape read from a GGUF file's tensor table and metadata."""
        n = gguf.n_layers
        layers = [0] * n
        input_bytes = output_file = 0
        for tensor in gguf.tensors:
            if tensor.layer is not None and tensor.layer < n:
                layers[tensor.layer] += tensor.n_bytes
            elif tensor.name.startswith("output"):
                output_file += tensor.n_bytes
            else:
                input_bytes += tensor.n_bytes
        embd = gguf.tensor("token_embd.weight")
        tied = gguf.tensor("output.weight") is None and embd is not None
        kv = gguf.n_head_kv
        heads = tuple(int(h) for h in kv) if isinstance(kv, list) else (int(kv),) * n
        arch = gguf.architecture
        head_k = gguf.metadata.get(f"{arch}.attention.key_length") or gguf.embedding_length // max(gguf.n_head, 1)
        head_v = gguf.metadata.get(f"{arch}.attention.value_length") or head_k
        return cls(
            str(gguf.metadata.get("general.name") or arch),
            n,
            tuple(layers),
            input_bytes,
            output_file + (embd.n_bytes if tied and embd is not None else 0),
            output_file,
            gguf.embedding_length,
            gguf.n_head,
            heads,
            int(head_k),
            int(head_v),
            gguf.n_vocab,
            gguf.file_size,
        )

    def scaled(self, file_size: int) -> ModelShape:
        """The same model in another quantization of this total size: every tensor scaled alike."""
        ratio = file_size / self.file_size

        def scale(n: int) -> int:
            return round(n * ratio)

        return replace(
            self,
            layer_bytes=tuple(scale(b) for b in self.layer_bytes),
            input_bytes=scale(self.input_bytes),
            output_bytes=scale(self.output_bytes),
            output_file_bytes=scale(self.output_file_bytes),
            file_size=file_size,
        )


@dataclass(frozen=True)
class OffloadPlan:
    """The verdict for one model on one machine, with the figures behind it."""

    verdict: str  # "full_gpu", "partial", "cpu_only" or "wont_fit"
    n_gpu_layers: int  # for llama.cpp: n_layers + 1 means everything, output layer included
    n_layers: int
    gpu_name: str | None
    layer_bytes: tuple[int, ...]
    kv_bytes_per_layer: tuple[int, ...]
    compute_bytes: int
    vram_needed: int
    vram_budget: int
    vram_total: int
    ram_needed: int
    ram_budget: int
    summary: str

    @property
    def kv_bytes(self) -> int:
        return sum(self.kv_bytes_per_layer)


def _row_bytes(kv_type: str, n_values: int) -> int:
    kind = GGML_TYPES[_KV_TYPES[kv_type]]
    return -(-n_values // kind.block_size) * kind.type_size


def kv_cache_bytes(shape: ModelShape, n_ctx: int, kv_type: str = "f16") -> tuple[int, ...]:
    """The K and V cache of each layer for n_ctx tokens."""
    return tuple(
        n_ctx * (_row_bytes(kv_type, heads * shape.head_dim_k) + _row_bytes(kv_type, heads * shape.head_dim_v))
        for heads in shape.n_head_kv
    )


def compute_buffer_bytes(shape: ModelShape, n_ctx: int, flash_attention: bool = False) -> int:
    """An estimate of llama.cpp's compute buffer: f32 logits and attention scores of one batch.

    Without flash attention the largest intermediates are the batch's logits
    (n_ubatch × n_vocab) and its attention scores (n_ubatch × n_ctx × n_head). Flash attention
    never holds the scores; a few activations of n_embd per token remain (the bundled model at
    4096 tokens: 98.3 MiB measured, 100.5 estimated).
    """
    n_ubatch = min(N_UBATCH, n_ctx)
    if flash_attention:
        return 4 * n_ubatch * (shape.n_vocab + 4 * shape.n_embd)
    return 4 * n_ubatch * (shape.n_vocab + n_ctx * shape.n_head)


def uses_flash_attention(kv_type: str, flash_attention: str) -> bool:
    """Whether the plan may count on flash attention: "on", or a quantized cache (which needs it).

    "auto" with an f16 cache is planned without it: llama.cpp enables it only where the device
    supports it, and the plan must fit either way.
    """
    return flash_attention == "on" or (kv_type != "f16" and flash_attention != "off")


def _gb(n: int) -> str:
    return f"{n / GiB:.1f}"


def plan_offload(
    model: GGUFFile | ModelShape,
    hardware: Hardware,
    n_ctx: int,
    *,
    margin_bytes: int = DEFAULT_MARGIN_BYTES,
    margin_fraction: float = DEFAULT_MARGIN_FRACTION,
    ram_reserve: int = DEFAULT_RAM_RESERVE,
    kv_type: str = "f16",
    flash_attention: str = "auto",
) -> OffloadPlan:
    """Plan the most layers that fit on the GPU with the most free memory, leaving a margin.

    ``kv_type`` is the K and V cache's element type (f16, q8_0, q4_0: a quantized cache is smaller)
    and ``flash_attention`` auto, on or off, as the model settings have them.
    """
    shape = model if isinstance(model, ModelShape) else ModelShape.from_gguf(model)
    n = shape.n_layers
    kv = kv_cache_bytes(shape, n_ctx, kv_type)
    compute = compute_buffer_bytes(shape, n_ctx, uses_flash_attention(kv_type, flash_attention))
    gpu: GPU | None = max(hardware.gpus, key=lambda g: g.free_bytes, default=None)
    free = 0 if gpu is None else min(gpu.free_bytes, hardware.ram_available) if gpu.unified else gpu.free_bytes
    budget = 0 if gpu is None else max(0, int(free - margin_bytes - margin_fraction * gpu.total_bytes))

    def on_gpu(k: int) -> int:
        # The last k blocks (llama.cpp offloads from the end), then the output layer.
        if k == 0:
            return 0
        blocks = min(k, n)
        return (
            sum(shape.layer_bytes[n - blocks :])
            + sum(kv[n - blocks :])
            + compute
            + (shape.output_bytes if k > n else 0)
        )

    k = 0
    while k <= n and on_gpu(k + 1) <= budget:
        k += 1
    if gpu is not None and gpu.unified:
        # Metal maps the same pages the CPU uses: the whole model counts once, against the RAM.
        ram_needed = shape.weights_bytes + sum(kv) + compute
    else:
        # The CPU keeps the blocks and KV cache not offloaded, and a compute buffer unless nothing is left.
        blocks = min(k, n)
        ram_needed = (
            shape.weights_bytes
            - sum(shape.layer_bytes[n - blocks :])
            - sum(kv[n - blocks :])
            + sum(kv)
            - (shape.output_file_bytes if k > n else 0)
            + (compute if k <= n else 0)
        )
    ram_budget = max(0, hardware.ram_available - ram_reserve)
    vram_needed = on_gpu(k)
    where = f"the {gpu.name}" if gpu else ""
    gpu_total = gpu.total_bytes if gpu is not None else 0  # (k > 0 only with a GPU)
    if ram_needed > ram_budget:
        verdict = "wont_fit"
        besides = f" besides {k} layers on {where}" if k and gpu is not None and not gpu.unified else ""
        summary = f"Will not fit: needs {_gb(ram_needed)} GB of RAM{besides} but {_gb(ram_budget)} GB are free."
    elif k > n:
        verdict = "full_gpu"
        summary = f"Full GPU: all {n} layers on {where} ({_gb(vram_needed)} of {_gb(gpu_total)} GB)."
    elif k > 0:
        verdict = "partial"
        layers = f"all {n} layers (the output layer stays on the CPU)" if k >= n else f"{k} of {n} layers"
        summary = (
            f"Partial offload: {layers} on {where} ({_gb(vram_needed)} of "
            f"{_gb(gpu_total)} GB), the rest in RAM ({_gb(ram_needed)} GB)."
        )
    else:
        verdict = "cpu_only"
        reason = "no GPU" if gpu is None else f"not one layer fits on {where}"
        summary = f"CPU only ({reason}): {_gb(ram_needed)} GB of RAM."
    summary += f" KV cache: {_gb(sum(kv))} GB ({kv_type}, {n_ctx} tokens)."
    return OffloadPlan(
        verdict,
        k,
        n,
        gpu.name if gpu else None,
        shape.layer_bytes,
        kv,
        compute,
        vram_needed,
        budget,
        gpu.total_bytes if gpu else 0,
        ram_needed,
        ram_budget,
        summary,
    )


def plan_for_quantizations(
    shape: GGUFFile | ModelShape, sizes_by_quant: dict[str, int], hardware: Hardware, n_ctx: int, **options
) -> dict[str, OffloadPlan]:
    """A plan per quantization before download, when only each file's total size is known.

    The shape (read from any one quantization's header) is scaled by the ratio of file
    sizes: quantizations differ in bytes per weight, not in layers or attention geometry.
    Norms stay F32 in every quantization, an error well under one percent.
    """
    base = shape if isinstance(shape, ModelShape) else ModelShape.from_gguf(shape)
    return {
        quant: plan_offload(base.scaled(size), hardware, n_ctx, **options) for quant, size in sizes_by_quant.items()
    }
