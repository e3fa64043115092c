"""A loader for the isolation tests: hangs, crashes or leaks stdout on files with telling names."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from engine.rag.loaders import load


def crashy_load(path: str, max_bytes: int):
    name = Path(path).name
    if name.startswith("hang"):
        time.sleep(3600)
    if name.startswith("segfault"):
        os.kill(os.getpid(), signal.SIGSEGV)
    if name.startswith("exit"):
        os._exit(3)
    if name.startswith("noisy"):
        print("a library printing to stdout must not break the protocol")
    if name.startswith("boom"):
        raise RuntimeError("unexpected parser bug")
    return load(path, max_bytes=max_bytes)
