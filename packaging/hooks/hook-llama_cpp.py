"""PyInstaller hook for llama-cpp-python: its llama.cpp shared libraries and server-free parts.

llama_cpp loads libllama, libggml* (and libmtmd for vision models) with ctypes from
llama_cpp/lib at import time, so static analysis never sees them. Collect them
where the package looks. CUDA and Metal builds add their back-end libraries to the
same folder and are collected the same way.
"""

from PyInstaller.utils.hooks import PY_DYLIB_PATTERNS, collect_dynamic_libs

binaries = collect_dynamic_libs("llama_cpp", search_patterns=[*PY_DYLIB_PATTERNS, "*.so.*", "*.metal", "*.metallib"])
# The OpenAI-compatible server is llama.cpp's, used by the tests only; its web stack stays out.
excludedimports = ["llama_cpp.server"]
