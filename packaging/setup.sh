#!/usr/bin/env bash
# Set up Locus from this checkout on Debian/Ubuntu: system packages, a virtual
# environment in .venv, and every Python dependency from pyproject.toml.
#
#   packaging/setup.sh          the app
#   packaging/setup.sh --test   the app plus what the tests (and the package test) need
#
# Environment:
#   PYTHON=python3.12       interpreter for .venv (3.11 or newer; default python3)
#   LOCUS_TORCH=skip        keep the torch already in .venv (e.g. a CUDA build you installed)
#   CMAKE_ARGS=...          passed to the llama.cpp build, e.g. "-DGGML_CUDA=on" for NVIDIA GPUs
set -euo pipefail

cd "$(dirname "$0")/.."
extras=""
[ "${1:-}" = "--test" ] && extras="[test,package]"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

# --- System packages -----------------------------------------------------------------
# Compilers for llama.cpp; the libraries Qt loads (also offscreen); an X server, a
# tray host and a keyring for the tests that need a desktop session.
debs=(build-essential cmake pkg-config git python3-venv python3-dev
      libgl1 libegl1 libxkbcommon0 libxkbcommon-x11-0 libfontconfig1 libdbus-1-3 libglib2.0-0
      libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0 libxcb-randr0 libxcb-render-util0
      libxcb-image0 libxcb-xinerama0 fonts-dejavu-core
      xvfb xauth trayer dbus dbus-x11 gnome-keyring)
# The package test (packaging/test_linux_packages.py) builds and installs the .deb and
# watches the installed app's window: binutils for PyInstaller, zstd for the packages,
# xdotool to see the window appear, desktop-file-validate for the menu entry.
if [ -n "$extras" ]; then debs+=(binutils zstd xdotool desktop-file-utils); fi
if command -v apt-get >/dev/null 2>&1; then
  missing=()
  for pkg in "${debs[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    say "Installing system packages: ${missing[*]}"
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
else
  say "Not a Debian/Ubuntu system: install a C++ compiler, CMake and Qt's X11 libraries yourself."
fi

# --- Python environment --------------------------------------------------------------
python="${PYTHON:-python3}"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "Locus needs Python 3.11 or newer; $python is $("$python" --version 2>&1)." >&2; exit 1; }
if [ ! -x .venv/bin/python ]; then
  say "Creating .venv with $("$python" --version 2>&1)"
  "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip --disable-pip-version-check)
"${pip[@]}" install -q --upgrade pip setuptools wheel
# Every package at the version the project was tested with (see the file's header).
constraints=(-c packaging/constraints.txt)

# torch first, pinned: left to itself a dependency resolver may pick a multi-GB CUDA
# build. The CPU build is enough for embeddings; see README for CUDA.
if [ "${LOCUS_TORCH:-}" != "skip" ]; then
  say "Installing torch 2.13.0"
  "${pip[@]}" install -q "${constraints[@]}" "torch==2.13.0"
fi

# llama-cpp-python compiles llama.cpp (about 10 minutes on two cores the first time).
# Locus builds it without llamafile's tinyBLAS kernels (GGML_LLAMAFILE=OFF): with them a
# position's logits differ by rounding depending on how many rows share its batch, so speculative
# decoding could part from plain decoding; without them a CPU gives the same logits either way
# (docs/benchmarks.md, "Speculative decoding"). pip's own wheel cache does not tell builds apart
# by CMAKE_ARGS, so the wheel is kept in a cache of ours, one per set of build options and CPU.
# CMAKE_ARGS="-DGGML_LLAMAFILE=ON" keeps the kernels (prompts of Q8_0 and f16 models are read faster on
# a CPU; speculative decoding is then not exact).
llama_flags="-DGGML_LLAMAFILE=OFF${CMAKE_ARGS:+ $CMAKE_ARGS}"
want_llamafile=0
case "$(printf '%s' "${CMAKE_ARGS:-}" | tr '[:upper:]' '[:lower:]')" in
  *ggml_llamafile=on*|*ggml_llamafile=1*|*ggml_llamafile=true*|*ggml_llamafile=yes*) want_llamafile=1 ;;
esac
# A GPU build (CUDA, Metal, ...) already installed is kept when no CMAKE_ARGS ask for another build.
keep_gpu=0; [ -z "${CMAKE_ARGS:-}" ] && keep_gpu=1
if ! .venv/bin/python -c '
import sys, llama_cpp
want_llamafile, keep_gpu = sys.argv[1] == "1", sys.argv[2] == "1"
has_llamafile = b"LLAMAFILE = 1" in llama_cpp.llama_print_system_info()
gpu = bool(llama_cpp.llama_supports_gpu_offload())
if gpu and keep_gpu and has_llamafile != want_llamafile:
    print("==> Keeping the installed GPU build of llama-cpp-python (built with llamafile: speculative decoding is not exact on its CPU path)")
sys.exit(llama_cpp.__version__ != "0.3.36" or (has_llamafile != want_llamafile and not (gpu and keep_gpu)))
' "$want_llamafile" "$keep_gpu" 2>/dev/null; then
  cpu="$(uname -m) $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)"
  key=$(printf '%s\n%s\n' "$llama_flags" "$cpu" | sha256sum | cut -c1-16)
  wheels="${XDG_CACHE_HOME:-$HOME/.cache}/locus/wheels/llama-cpp-python-0.3.36-$key"
  if ! ls "$wheels"/llama_cpp_python-0.3.36-*.whl >/dev/null 2>&1; then
    say "Building llama-cpp-python 0.3.36 (llama.cpp from source, CMAKE_ARGS=$llama_flags)"
    rm -rf "$wheels.partial"
    CMAKE_ARGS="$llama_flags" "${pip[@]}" wheel -q --no-cache-dir --no-deps "${constraints[@]}" \
      "llama-cpp-python==0.3.36" -w "$wheels.partial"
    rm -rf "$wheels" && mv "$wheels.partial" "$wheels"
  fi
  say "Installing llama-cpp-python 0.3.36 ($wheels)"
  "${pip[@]}" install -q --force-reinstall --no-deps "$wheels"/llama_cpp_python-0.3.36-*.whl
  "${pip[@]}" install -q "${constraints[@]}" "$wheels"/llama_cpp_python-0.3.36-*.whl
fi

say "Installing Locus${extras:+ with test tools}"
"${pip[@]}" install -q "${constraints[@]}" -e ".${extras}"
say "Done. Start Locus with: .venv/bin/locus"
