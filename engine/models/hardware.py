"""What this machine offers a model: CPU, RAM and GPUs with their free memory.

Each probe is allowed to fail (no driver, no torch, an odd OS): it then reports
less, never raises. A Hardware round-trips through JSON, so tests use recorded ones.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from os import PathLike  # the field `os` below hides the module in annotations
from pathlib import Path

log = logging.getLogger(__name__)

# The instruction sets that decide which ggml CPU kernels run fast.
INTERESTING_FLAGS = (
    "sse3",
    "ssse3",
    "avx",
    "avx2",
    "avx512f",
    "avx512bw",
    "avx512vnni",
    "avx512_bf16",
    "fma",
    "f16c",
    "amx_int8",
    "neon",
    "asimd",
    "asimddp",
    "sve",
    "i8mm",
)


@dataclass
class CPU:
    """The processor: its name, cores and the instruction sets ggml can use."""

    model: str = ""
    arch: str = ""
    cores_physical: int = 1
    cores_logical: int = 1
    flags: list[str] = field(default_factory=list)


@dataclass
class GPU:
    """One accelerator; with unified memory (Apple) its bytes are shared with the RAM."""

    name: str
    backend: str  # "cuda" or "metal"
    total_bytes: int
    free_bytes: int
    unified: bool = False


@dataclass
class Hardware:
    """A snapshot of the machine, as JSON-friendly plain values."""

    cpu: CPU
    ram_total: int
    ram_available: int
    gpus: list[GPU] = field(default_factory=list)
    os: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> Hardware:
        data = json.loads(text)
        return cls(
            cpu=CPU(**data.get("cpu", {})),
            ram_total=int(data["ram_total"]),
            ram_available=int(data.get("ram_available", data["ram_total"])),
            gpus=[GPU(**gpu) for gpu in data.get("gpus", [])],
            os=data.get("os", ""),
        )

    @classmethod
    def load(cls, path: str | PathLike[str]) -> Hardware:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))


def metal_working_set(ram_total: int) -> int:
    """The share of unified memory Metal lets the GPU use.

    macOS reports it as recommendedMaxWorkingSetSize; measured values are about 2/3
    of RAM on machines up to 36 GB and about 3/4 above, which this rule reproduces.
    """
    return ram_total * 3 // 4 if ram_total > 36 * 1024**3 else ram_total * 2 // 3


def _cpu() -> CPU:
    cpu = CPU(model=platform.processor() or "", arch=platform.machine())
    try:
        import psutil

        cpu.cores_logical = psutil.cpu_count(logical=True) or os.cpu_count() or 1
        cpu.cores_physical = psutil.cpu_count(logical=False) or cpu.cores_logical
    except Exception:  # noqa: BLE001 - a probe that fails reports less
        cpu.cores_logical = cpu.cores_physical = os.cpu_count() or 1
    flags: set[str] = set()
    model_name = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name":
                    model_name = model_name or value.strip()
                elif key in ("flags", "Features"):
                    flags.update(value.split())
    except OSError:
        if platform.system() == "Darwin":
            cpu.model = _sysctl("machdep.cpu.brand_string") or cpu.model
            # Every Apple Silicon core has NEON and dot products; Intel Macs list their features.
            intel = f"{_sysctl('machdep.cpu.features')} {_sysctl('machdep.cpu.leaf7_features')}".lower()
            flags.update(["neon", "asimd", "asimddp"] if cpu.arch == "arm64" else intel.split())
    # platform.processor() is often just "x86_64" on Linux; /proc/cpuinfo names the chip.
    cpu.model = model_name or cpu.model
    cpu.flags = sorted(f.replace(".", "_") for f in flags if f.replace(".", "_") in INTERESTING_FLAGS)
    return cpu


def _sysctl(name: str) -> str:
    try:
        return subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _nvml_gpus() -> list[GPU]:
    import pynvml

    pynvml.nvmlInit()
    try:
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(handle)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            gpus.append(
                GPU(name.decode() if isinstance(name, bytes) else name, "cuda", int(memory.total), int(memory.free))
            )
        return gpus
    finally:
        pynvml.nvmlShutdown()


_TORCH_PROBE = """
import json, torch
gpus = []
if torch.cuda.is_available():
    for i in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(i)
        gpus.append([torch.cuda.get_device_name(i), int(total), int(free)])
print(json.dumps(gpus))
"""


def _torch_gpus() -> list[GPU]:
    """CUDA devices as torch sees them, asked in a child process: the app's own process never imports
    torch (seconds and hundreds of MB; embeddings run in their own worker)."""
    import json
    import subprocess
    import sys

    # -I: `-c` would put the working directory first on sys.path, and a torch.py there would run
    # (engine/rag/ipc.py starts the workers the same way).
    done = subprocess.run([sys.executable, "-I", "-c", _TORCH_PROBE], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip()[-300:] or f"exit {done.returncode}")
    return [GPU(name, "cuda", total, free) for name, total, free in json.loads(done.stdout)]


def _gpus(ram_total: int, ram_available: int, cpu: CPU) -> list[GPU]:
    if platform.system() == "Darwin" and cpu.arch == "arm64":
        total = metal_working_set(ram_total)
        return [GPU(cpu.model or "Apple GPU", "metal", total, min(total, ram_available), unified=True)]
    for probe in (_nvml_gpus, _torch_gpus):
        try:
            found = probe()
        except Exception as exc:  # noqa: BLE001 - no driver, no library: try the next way
            log.debug("GPU probe %s failed: %s", probe.__name__, exc)
            continue
        if found:
            return found
    return []


def probe() -> Hardware:
    """Look at this machine now; never raises."""
    cpu = _cpu()
    try:
        import psutil

        memory = psutil.virtual_memory()
        ram_total, ram_available = int(memory.total), int(memory.available)
    except Exception:  # noqa: BLE001 - without psutil, the page count is still there on POSIX
        try:
            ram_total = ram_available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            ram_total = ram_available = 0
    return Hardware(
        cpu,
        ram_total,
        ram_available,
        _gpus(ram_total, ram_available, cpu),
        os=f"{platform.system()} {platform.release()}".strip(),
    )
