"""Whether llama.cpp's repacked CPU weight buffers (Intel AMX, the repack buffers) can be used here.

llama.cpp moves a model's CPU weights into "extra" buffer types when the build and the CPU offer
them. On a CPU with Intel AMX (Xeon Sapphire Rapids and later; seen on a VM with a llama.cpp that GCC 12,
Debian 12's compiler, built with AMX), the first prompt then kills the whole process with SIGSEGV inside
``ggml_backend_amx_mul_mat``, at the ``ldtilecfg`` that loads the AMX tile configuration (in gdb the
64 bytes it loads have the palette set but the rows and column widths never written, so the
instruction faults). The same crash is reported upstream
(ggml-org/llama.cpp#20824) and by other projects on such runners. AMX itself works on these
machines (oneDNN uses it); llama.cpp's build of it does not.

A crash cannot be caught inside the process, so the check runs in a worker process once per machine,
llama.cpp build and kernel: it loads the bundled model with the extra buffers and evaluates a short
prompt. When the worker dies, models are loaded without extra buffers (``use_extra_bufts`` off:
plain CPU buffers, slower prompts on AMX machines but no crash), and the verdict is remembered in
the user's cache folder. Builds without AMX need no check. ``LOCUS_LLAMA_EXTRA_BUFFERS=0`` or ``=1``
decides without checking.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import subprocess
import sys
import threading
from pathlib import Path

log = logging.getLogger(__name__)

ENV = "LOCUS_LLAMA_EXTRA_BUFFERS"
WORKER_FLAG = "--cpu-check-worker"
CHECK_TIMEOUT_S = 120.0
_OK = b"extra buffers ok"

_lock = threading.Lock()
_verdict: bool | None = None


def amx_in_build() -> bool:
    """Whether the loaded llama.cpp was compiled with AMX kernels (its system info says AMX_INT8 = 1)."""
    import llama_cpp

    return b"AMX_INT8 = 1" in (llama_cpp.llama_print_system_info() or b"")


def extra_buffers_ok() -> bool:
    """Whether models may be loaded with llama.cpp's extra CPU buffer types (checked once, then remembered)."""
    global _verdict
    with _lock:
        if _verdict is None:
            _verdict = _decide()
        return _verdict


def _decide() -> bool:
    forced = os.environ.get(ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    if not amx_in_build():
        return True
    path = _cache_file()
    try:
        return bool(json.loads(path.read_text(encoding="utf-8"))["extra_buffers_ok"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    ok, why = check_in_worker()
    if why is not None:  # a definite answer: remember it for this machine and build
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"extra_buffers_ok": ok, "why": why}), encoding="utf-8")
        except OSError:
            log.warning("could not remember the CPU check's verdict in %s", path, exc_info=True)
    if not ok:
        log.warning(
            "llama.cpp's AMX weight buffers are not used on this machine (%s); prompts run on plain CPU buffers",
            why or "the check could not run",
        )
    return ok


def check_in_worker(command: list[str] | None = None, timeout_s: float = CHECK_TIMEOUT_S) -> tuple[bool, str | None]:
    """Run the check in a worker process: (usable, why). ``why`` is None when the check could not decide
    (it could not start or ran out of time): then the extra buffers are not used, and nothing is remembered."""
    from engine.rag.ipc import command_for, spawn

    try:
        process = spawn(command or command_for("engine.runtime.cpu_check", WORKER_FLAG), stderr=subprocess.DEVNULL)
    except OSError:
        return False, None
    try:
        out, _ = process.communicate(b"", timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        return False, None
    code = process.returncode
    if code == 0 and _OK in out:
        return True, "a prompt evaluated with them"
    if code < 0:
        return False, f"llama.cpp crashed evaluating a prompt with them (signal {-code})"
    if code >= 0xC0000000:  # Windows: an NTSTATUS exception code (0xC0000005: access violation)
        return False, f"llama.cpp crashed evaluating a prompt with them (exception {code:#x})"
    return False, None


def _cache_file() -> Path:
    """Where the verdict is kept: per llama.cpp build (its library's size and time), CPU and kernel."""
    import llama_cpp
    import platformdirs

    lib = Path(os.environ.get("LLAMA_CPP_LIB_PATH") or Path(llama_cpp.__file__).parent / "lib")
    files = sorted(lib.glob("*ggml-cpu*")) if lib.is_dir() else []
    build = [(f.name, f.stat().st_size, int(f.stat().st_mtime)) for f in files]
    key = json.dumps([llama_cpp.__version__, build, _cpu_name(), platform.release()], sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return Path(platformdirs.user_cache_dir("Locus", appauthor=False)) / "cpu-check" / f"{digest}.json"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith(("model name", "flags")):
                return line
    except OSError:
        pass
    return platform.processor()


# In the worker ---------------------------------------------------------------------------


def worker_main() -> int:
    """Load the bundled model with the extra buffers and evaluate a short prompt, then a single token."""
    import llama_cpp

    from engine.models.bundled import bundled_llm_path

    llama_cpp.llama_backend_init()  # (its log goes to stderr, which the parent discards)
    params = llama_cpp.llama_model_default_params()
    params.n_gpu_layers = 0
    params.use_extra_bufts = True
    model = llama_cpp.llama_model_load_from_file(str(bundled_llm_path()).encode(), params)
    if not model:
        return 2
    cparams = llama_cpp.llama_context_default_params()
    cparams.n_ctx = cparams.n_batch = cparams.n_ubatch = 64
    cparams.n_threads = cparams.n_threads_batch = 2
    ctx = llama_cpp.llama_init_from_model(model, cparams)
    if not ctx:
        return 2
    batch = llama_cpp.llama_batch_init(64, 0, 1)
    for start, tokens in ((0, list(range(100, 116))), (16, [200])):
        batch.n_tokens = len(tokens)
        for i, token in enumerate(tokens):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, start + i, 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = i == len(tokens) - 1
        if llama_cpp.llama_decode(ctx, batch) != 0:
            return 2
    sys.stdout.buffer.write(_OK + b"\n")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(worker_main())
