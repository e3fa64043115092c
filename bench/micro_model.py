"""A 2-layer model with the bundled model's tokenizer and shapes, for measuring per-token overhead.

The bundled SmolLM2-135M GGUF is copied with only its first ``layers`` transformer blocks
(block_count rewritten, the other blocks' tensors left out): the vocabulary, tokenizer,
embedding and output head stay those of the bundled model, so sampling over the whole
vocabulary costs what it costs there, while a decode step costs ~0.2 ms instead of ~7 ms and
every microsecond spent outside ``llama_decode`` shows. Weights do not change speed, so these
(the bundled model's own first blocks) serve as well as random ones.

    python bench/micro_model.py /tmp/micro.gguf           # 2 layers
"""

from __future__ import annotations

import statistics
import struct
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import llama_cpp

from engine.models.bundled import bundled_llm_path
from engine.models.gguf import read_gguf
from engine.runtime.context import NativeContext
from engine.runtime.native import NativeModel
from engine.runtime.runtime import Runtime
from engine.runtime.sampler import SamplerChain
from engine.runtime.types import ChatMessage, Done, GenerationRequest, ModelConfig, SamplingParams

_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def _skip_value(data: bytes, pos: int, kind: int) -> int:
    if kind in _SCALAR_SIZES:
        return pos + _SCALAR_SIZES[kind]
    if kind == 8:
        (n,) = struct.unpack_from("<Q", data, pos)
        return pos + 8 + n
    if kind == 9:
        item, n = struct.unpack_from("<IQ", data, pos)
        pos += 12
        if item in _SCALAR_SIZES:
            return pos + n * _SCALAR_SIZES[item]
        for _ in range(n):
            pos = _skip_value(data, pos, item)
        return pos
    raise ValueError(f"unknown GGUF value type {kind}")


def make_micro_model(out: str | Path, layers: int = 2, source: str | Path | None = None) -> Path:
    """Write the bundled model cut to its first ``layers`` blocks to ``out`` (kept if it exists)."""
    out = Path(out)
    if out.is_file():
        return out
    src = Path(source or bundled_llm_path() or "")
    info = read_gguf(src)
    arch = info.architecture
    head = src.open("rb").read(info.data_offset)
    n_kv = struct.unpack_from("<Q", head, 16)[0]
    pos, kv = 24, bytearray()
    for _ in range(n_kv):
        (klen,) = struct.unpack_from("<Q", head, pos)
        key = head[pos + 8 : pos + 8 + klen].decode()
        (kind,) = struct.unpack_from("<I", head, pos + 8 + klen)
        end = _skip_value(head, pos + 12 + klen, kind)
        entry = bytearray(head[pos:end])
        if key == f"{arch}.block_count":
            entry[12 + klen :] = struct.pack("<I" if kind == 4 else "<Q", layers)
        kv += entry
        pos = end
    keep = [t for t in info.tensors if not t.name.startswith("blk.") or int(t.name.split(".")[1]) < layers]
    align = info.alignment
    table, offset, spans = bytearray(), 0, []
    for t in keep:
        name = t.name.encode()
        table += struct.pack("<Q", len(name)) + name + struct.pack("<I", len(t.shape))
        table += struct.pack(f"<{len(t.shape)}Q", *t.shape) + struct.pack("<IQ", t.ggml_type, offset)
        spans.append((t, offset))
        offset += -(-t.n_bytes // align) * align
    header = b"GGUF" + struct.pack("<IQQ", 3, len(keep), n_kv) + bytes(kv) + bytes(table)
    header += b"\0" * (-len(header) % align)
    tmp = out.with_suffix(".part")
    with src.open("rb") as fin, tmp.open("wb") as fout:
        fout.write(header)
        for t, at in spans:
            fin.seek(info.data_offset + t.offset)
            fout.seek(len(header) + at)
            fout.write(fin.read(t.n_bytes))
        fout.truncate(len(header) + offset)
    tmp.replace(out)
    return out


def native_chain(model: NativeModel, sampling: dict, seed: int):
    """llama.cpp's own chain for these settings, as its common sampler builds it (penalties first)."""
    params = llama_cpp.llama_sampler_chain_default_params()
    params.no_perf = True
    chain = llama_cpp.llama_sampler_chain_init(params)
    p = SamplingParams(**sampling)
    parts = []
    if p.repeat_penalty != 1.0 and p.repeat_last_n > 0:
        parts.append(llama_cpp.llama_sampler_init_penalties(model.n_vocab, p.repeat_last_n, p.repeat_penalty, 0.0, 0.0))
    if p.temperature <= 0:
        parts.append(llama_cpp.llama_sampler_init_greedy())
    else:
        parts += [
            llama_cpp.llama_sampler_init_top_k(p.top_k),
            llama_cpp.llama_sampler_init_top_p(p.top_p, 1),
            llama_cpp.llama_sampler_init_min_p(p.min_p, 1),
            llama_cpp.llama_sampler_init_temp(p.temperature),
            llama_cpp.llama_sampler_init_dist(seed),
        ]
    for part in parts:
        llama_cpp.llama_sampler_chain_add(chain, part)
    return chain


# Speculative decoding (where the engine has it) would change what a decode step is: measure plain decoding.
PLAIN = {"speculative": "off"} if "speculative" in ModelConfig.__dataclass_fields__ else {}
HAS_DEVICE_SAMPLING = "backend_sampling" in ModelConfig.__dataclass_fields__


class Split:
    """Time spent in llama_decode and in sampling, summed over calls: wall and this thread's CPU time."""

    def __init__(self) -> None:
        self.decode = self.sample = self.decode_cpu = self.sample_cpu = 0.0
        self.n_decode = self.n_sample = 0

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]

    def snapshot(self) -> tuple[float, ...]:
        return (time.perf_counter(), time.thread_time(), self.decode, self.decode_cpu, self.sample, self.sample_cpu)


def _per_token(a: tuple[float, ...], b: tuple[float, ...], n: int) -> dict:
    wall, cpu, dec, dec_cpu, smp, smp_cpu = ((y - x) / n for x, y in zip(a, b, strict=True))
    return dict(total=wall, decode=dec, sample=smp, cpu_outside=cpu - dec_cpu, sample_cpu=smp_cpu)


def bare_loop(
    model: NativeModel, ctx: NativeContext, prompt: list[int], tokens: int, sampling: dict, device: bool = False
) -> dict:
    """A plain llama-cpp-python loop: sample with the native chain, decode one token, repeat. ``device``: the
    chain runs in the decode's graph (llama.cpp's backend sampling; ``ctx`` made with backend_sampling)."""
    chain = native_chain(model, sampling, seed=1)
    for tok in prompt[-64:]:
        llama_cpp.llama_sampler_accept(chain, tok)
    if device:
        assert llama_cpp.llama_set_sampler(ctx.ctx, 0, chain)
    ctx.clear()
    ctx.decode(prompt, 0)
    split = Split()
    pos, clock, cpu = len(prompt), time.perf_counter, time.thread_time
    start = split.snapshot()
    for _ in range(tokens):
        a, a_cpu = clock(), cpu()
        tok = llama_cpp.llama_sampler_sample(chain, ctx.ctx, -1)
        b, b_cpu = clock(), cpu()
        ctx.batch.clear()
        ctx.batch.add_one(tok, pos, 0, True)
        pos += 1
        ctx.decode_batch()
        split.decode += clock() - b
        split.decode_cpu += cpu() - b_cpu
        split.sample += b - a
        split.sample_cpu += b_cpu - a_cpu
    end = split.snapshot()
    if device:
        llama_cpp.llama_set_sampler(ctx.ctx, 0, None)
    llama_cpp.llama_sampler_free(chain)
    return _per_token(start, end, tokens)


def engine_loop(runtime: Runtime, split: Split, messages, tokens: int, sampling: dict) -> dict:
    """One request through the Runtime (submit -> events, consumed on the runtime thread), split by the
    wrappers of ``instrument``; counted from the first token's event to Done."""
    request = GenerationRequest(messages, SamplingParams(max_tokens=tokens + 1, **sampling))
    seen = threading.Event()
    marks: list[tuple[float, ...]] = []

    def on_event(event) -> None:
        if not marks or isinstance(event, Done):
            marks.append(split.snapshot())
        if isinstance(event, Done):
            seen.set()

    split.reset()
    handle = runtime.submit(request, on_event)
    seen.wait()
    n = max(1, handle.result.stats.completion_tokens - 1)
    return dict(_per_token(marks[0], marks[-1], n), tokens=n + 1)


def instrument(runtime: Runtime, split: Split) -> None:
    """Time every llama_decode of the runtime's context and every SamplerChain.sample (runtime thread)."""
    gen = runtime.generator
    assert gen is not None
    ctx, clock, cpu = gen.ctx, time.perf_counter, time.thread_time
    decode_batch = ctx.decode_batch

    def timed_decode() -> int:
        t, c = clock(), cpu()
        rc = decode_batch()
        split.decode += clock() - t
        split.decode_cpu += cpu() - c
        split.n_decode += 1
        return rc

    ctx.decode_batch = timed_decode  # type: ignore[method-assign]
    sample = SamplerChain.sample

    def timed_sample(self, c, index=-1):
        t, c0 = clock(), cpu()
        tok = sample(self, c, index)
        split.sample += clock() - t
        split.sample_cpu += cpu() - c0
        split.n_sample += 1
        return tok

    SamplerChain.sample = timed_sample  # type: ignore[method-assign]


def run_micro(
    path: Path, threads: list[int], tokens: int, pairs: int, prompt, chains: dict[str, dict], device: bool = False
) -> None:
    """Interleaved pairs of bare loop and engine for each thread count and chain; prints µs/token. ``device``:
    both sides sample in the decode's graph (llama.cpp's backend sampling), so 'decode' includes sampling."""
    print(
        f"micro model {path.name} ({path.stat().st_size / 2**20:.0f} MiB, 2 layers, bundled vocabulary), "
        f"{tokens} tokens, {pairs} interleaved pairs; medians, µs/token (wall)"
        f"{'; chains sampled in the graph (backend sampling), so in llama_decode' if device else ''}"
    )
    print(
        "wall µs/token: total, in llama_decode, sampling, the rest (engine bookkeeping); "
        "cpu: CPU µs/token of the decoding thread outside llama_decode (load-independent)"
    )
    print(
        f"{'threads':>7} {'chain':>8} | {'bare total':>10} {'decode':>7} {'sample':>7} {'cpu':>5} | "
        f"{'engine total':>12} {'decode':>7} {'sample':>7} {'other':>7} {'cpu':>5} | {'engine/bare':>11}"
    )
    for n_threads in threads:
        runtime = Runtime()
        split = Split()
        try:
            mode = {"backend_sampling": "on" if device else "off"} if device or HAS_DEVICE_SAMPLING else {}
            runtime.load(
                ModelConfig(str(path), n_ctx=1024, n_threads=n_threads, n_parallel=1, **PLAIN, **mode)
            ).result()
            instrument(runtime, split)
            gen = runtime.generator
            assert gen is not None
            prompt_tokens = gen.encode(prompt)
            model = NativeModel(path)
            ctx = NativeContext(model, n_ctx=1024, n_threads=n_threads, backend_sampling=device)
            engine_loop(runtime, split, prompt, 8, chains["greedy"])  # warm up
            for name, sampling in chains.items():
                bare, eng = [], []
                for _ in range(pairs):
                    bare.append(bare_loop(model, ctx, prompt_tokens, tokens, sampling, device))
                    eng.append(engine_loop(runtime, split, prompt, tokens, sampling))
                keys = ("total", "decode", "sample", "cpu_outside")
                b = {k: statistics.median(r[k] for r in bare) * 1e6 for k in keys}
                e = {k: statistics.median(r[k] for r in eng) * 1e6 for k in keys}
                ratio = statistics.median(r2["total"] / r1["total"] for r1, r2 in zip(bare, eng, strict=True))
                short = min(r["tokens"] for r in eng)
                print(
                    f"{n_threads:>7} {name:>8} | {b['total']:>10.0f} {b['decode']:>7.0f} {b['sample']:>7.0f} "
                    f"{b['cpu_outside']:>5.0f} | {e['total']:>12.0f} {e['decode']:>7.0f} {e['sample']:>7.0f} "
                    f"{e['total'] - e['decode'] - e['sample']:>7.0f} {e['cpu_outside']:>5.0f} | {ratio:>11.3f}"
                    f"{'' if short > tokens else f'  (an answer stopped at {short} tokens)'}"
                )
            ctx.close()
            model.close()
        finally:
            runtime.shutdown()


def _messages():
    return (ChatMessage("user", "Write a long essay about the Roman Empire."),)


if __name__ == "__main__":
    out = make_micro_model(sys.argv[1] if len(sys.argv) > 1 else "/tmp/locus-micro.gguf")
    print(out, f"{out.stat().st_size / 2**20:.1f} MiB")


def sampling_cost(path: Path, rounds: int = 5, calls: int = 300) -> None:
    """CPU µs per token of sampling one logits row: llama.cpp's own chain (llama_sampler_sample,
    penalties sampler included) against the engine's SamplerChain, interleaved rounds, medians."""
    from engine.runtime.generator import Generator

    gen = Generator(ModelConfig(str(path), n_ctx=512, n_threads=1, **PLAIN))
    prompt = gen.encode(_messages())
    gen.ctx.decode(prompt, 0)
    row = gen.ctx.logits_row(-1)
    saved = row.copy()
    cases = {
        "greedy": dict(temperature=0.0, repeat_penalty=1.0),
        "greedy + repeat penalty": dict(temperature=0.0),
        "default chain": dict(seed=1),
    }
    print(f"sampling one row of {gen.model.n_vocab} logits, CPU µs per token ({rounds} rounds of {calls})")
    for name, sampling in cases.items():
        times: dict[str, list[float]] = {"llama.cpp": [], "engine": []}
        for _ in range(rounds):
            for side in times:
                theirs = native_chain(gen.model, sampling, 1) if side == "llama.cpp" else None
                ours = SamplerChain(gen.model, SamplingParams(**sampling), 1) if theirs is None else None
                for tok in prompt[-64:]:
                    llama_cpp.llama_sampler_accept(theirs, tok) if theirs is not None else ours.accept(tok)  # type: ignore[union-attr]
                spent = 0.0
                for _ in range(calls):
                    row[:] = saved
                    start = time.thread_time()
                    if theirs is not None:
                        llama_cpp.llama_sampler_sample(theirs, gen.ctx.ctx, -1)
                    else:
                        ours.sample(gen.ctx)  # type: ignore[union-attr]
                    spent += time.thread_time() - start
                times[side].append(spent / calls * 1e6)
                llama_cpp.llama_sampler_free(theirs) if theirs is not None else ours.close()  # type: ignore[union-attr]
        print(
            f"  {name:<24} llama.cpp {statistics.median(times['llama.cpp']):7.1f}   "
            f"engine {statistics.median(times['engine']):7.1f}"
        )
    gen.close()
