"""Find or build llama.cpp's own benchmark tools (llama-bench, llama-batched-bench) for the installed
llama-cpp-python, so the engine is measured against the same llama.cpp version on the same model.

Lookup order: $LLAMA_BENCH_DIR, PATH, ~/.cache/locus/llama.cpp-<version>/build/bin. When none has the tool,
the llama-cpp-python sdist of the installed version is downloaded with pip and its vendored llama.cpp is built
(Release, shared libraries, llama-cpp-python's defaults: GGML_NATIVE on, curl off) for just the two targets.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

TOOLS = ("llama-bench", "llama-batched-bench")


def llama_cpp_version() -> str:
    """The installed llama-cpp-python version (its vendored llama.cpp is what the engine runs)."""
    import llama_cpp

    return llama_cpp.__version__


def cache_dir() -> Path:
    """Where the tools of this llama-cpp-python version are built once and kept."""
    return Path.home() / ".cache" / "locus" / f"llama.cpp-{llama_cpp_version()}"


def installed_lib_dir() -> Path:
    """llama-cpp-python's own shared libraries (libllama, libggml*): the build the engine runs."""
    import llama_cpp

    return Path(llama_cpp.__file__).parent / "lib"


def find_tool(name: str) -> Path | None:
    """The first `name` executable found in $LLAMA_BENCH_DIR, PATH or the build cache, or None."""
    candidates = []
    if os.environ.get("LLAMA_BENCH_DIR"):
        candidates.append(Path(os.environ["LLAMA_BENCH_DIR"]) / name)
    on_path = shutil.which(name)
    if on_path:
        candidates.append(Path(on_path))
    candidates.append(cache_dir() / "build" / "bin" / name)
    return next((c for c in candidates if c.is_file() and os.access(c, os.X_OK)), None)


def _source_dir(log) -> Path:
    """The vendored llama.cpp of the installed llama-cpp-python version, unpacked from its sdist."""
    version = llama_cpp_version()
    root = cache_dir()
    src = root / f"llama_cpp_python-{version}" / "vendor" / "llama.cpp"
    if (src / "CMakeLists.txt").is_file():
        return src
    sdist_dir = root / "sdist"
    sdist = sdist_dir / f"llama_cpp_python-{version}.tar.gz"
    if not sdist.is_file():
        log(f"downloading the llama-cpp-python {version} sdist with pip ...")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                f"llama-cpp-python=={version}",
                "--no-deps",
                "--no-binary",
                ":all:",
                "-d",
                str(sdist_dir),
            ],
            check=True,
        )
    log(f"unpacking {sdist.name} ...")
    with tarfile.open(sdist) as tar:
        tar.extractall(root, filter="data")
    return src


def build_tools(log=print, jobs: int | None = None) -> Path:
    """Build llama-bench and llama-batched-bench from the matching sources; returns their bin folder."""
    src = _source_dir(log)
    build = cache_dir() / "build"
    flags = [
        "-DCMAKE_BUILD_TYPE=Release",
        "-DBUILD_SHARED_LIBS=ON",
        "-DLLAMA_CURL=OFF",
        "-DLLAMA_OPENSSL=OFF",
        "-DLLAMA_BUILD_COMMON=ON",
        "-DLLAMA_BUILD_TOOLS=ON",
        "-DLLAMA_BUILD_EXAMPLES=OFF",
        "-DLLAMA_BUILD_TESTS=OFF",
        "-DLLAMA_BUILD_SERVER=OFF",
        "-DGGML_LLAMAFILE=OFF",  # as packaging/setup.sh builds the engine's llama.cpp
    ]
    log(f"configuring llama.cpp in {build} ...")
    subprocess.run(["cmake", "-S", str(src), "-B", str(build), *flags], check=True)
    log("building llama-bench and llama-batched-bench (several minutes on 2 cores) ...")
    subprocess.run(
        [
            "cmake",
            "--build",
            str(build),
            "--config",
            "Release",
            "-j",
            str(jobs or os.cpu_count() or 2),
            "--target",
            *TOOLS,
        ],
        check=True,
    )
    return build / "bin"


def same_buffers(name: str) -> list[str]:
    """Arguments that load the model as the engine does: without llama.cpp's extra CPU buffers where the
    engine found they crash this machine (engine/runtime/cpu_check.py), else nothing."""
    from engine.runtime.cpu_check import extra_buffers_ok

    if extra_buffers_ok():
        return []
    return ["--repack", "0"] if name == "llama-bench" else ["--no-repack"]


def require_tool(name: str, build: bool = True, log=print) -> Path:
    """Find `name`, building the tools when missing and `build` is set; a clear error otherwise."""
    found = find_tool(name)
    if found is None and build:
        build_tools(log)
        found = find_tool(name)
    if found is None:
        raise SystemExit(
            f"{name} not found: set LLAMA_BENCH_DIR, put it on PATH, or run "
            f"`python bench/llama_tools.py` to build it into {cache_dir() / 'build' / 'bin'}"
        )
    return found


if __name__ == "__main__":
    for tool in TOOLS:
        print(tool, require_tool(tool))
