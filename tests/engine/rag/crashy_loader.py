"""A loader for the isolation tests that misbehaves on purpose, chosen by the file's name.

It runs inside ParsePool's worker processes (ParsePool(loader=CRASHY)), so it must live in an
importable module rather than in a test file.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from engine.rag.loaders import LoadedDocument, Section, load

HEAVY = ("torch", "PySide6", "llama_cpp", "lancedb", "sentence_transformers", "ui", "app")


def crashy_load(path: str, max_bytes: int):
    """Hang, crash, leak output or report the worker's imports for files named so; else load normally."""
    name = Path(path).name
    if name.startswith("hang"):
        time.sleep(3600)
    if name.startswith("segfault"):
        os.kill(os.getpid(), signal.SIGSEGV)
    if name.startswith("exit"):
        os._exit(3)
    if name.startswith("memory"):
        raise MemoryError
    if name.startswith("oomkilled"):  # what the kernel's out-of-memory killer does
        os.kill(os.getpid(), signal.SIGKILL)
    if name.startswith("noisy"):
        print("a library printing to stdout must not break the protocol")
        os.write(1, b"nor must native code writing to fd 1\n")
    if name.startswith("boom"):
        raise RuntimeError("unexpected parser bug")
    if name.startswith("modules"):
        loaded = sorted(m for m in HEAVY if m in sys.modules)
        return LoadedDocument(path, "text", name, (Section(f"pid={os.getpid()} heavy={','.join(loaded)}"),))
    return load(path, max_bytes=max_bytes)
