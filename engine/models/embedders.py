"""The local embedding models documents can use: the bundled one, and sentence-transformers folders.

A folder is usable when it declares its output dimension (modules.json and the
Pooling/Dense configs) and has the tokenizer.json the chunker counts passages
with. Nothing is loaded here: the folder is only read, so listing is quick.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.models.bundled import BUNDLED_EMBEDDER_NAME, bundled_embedder_path
from engine.rag.embed import declared_dim

EMBEDDINGS_FOLDER = "embeddings"  # <models>/embeddings/<name>/: sentence-transformers folders


@dataclass(frozen=True)
class EmbeddingModel:
    name: str  # what the index records: the bundled model's name, else the folder's path
    path: str  # the folder ("" when the bundled package is missing)
    dim: int | None
    bundled: bool
    problem: str | None  # why the folder cannot be used, in words for people


def describe_folder(folder: str | Path) -> EmbeddingModel:
    """An embedding model folder as the model manager lists it (with what is wrong with it, if anything)."""
    folder = Path(folder).expanduser()
    dim = declared_dim(folder)
    problem = None
    if not folder.is_dir():
        problem = "The folder does not exist."
    elif not (folder / "modules.json").is_file():
        problem = "Not a sentence-transformers model folder (no modules.json)."
    elif dim is None:
        problem = "The model does not declare its vector dimension."
    elif not (folder / "tokenizer.json").is_file():
        problem = "The model has no tokenizer.json (passages are measured with it)."
    return EmbeddingModel(str(folder), str(folder), dim, False, problem)


def embedding_models(models_dir: str | Path, configured: str = "") -> list[EmbeddingModel]:
    """The bundled model, the folders under <models>/embeddings, and the configured folder if elsewhere."""
    found = []
    bundled = bundled_embedder_path()
    if bundled is not None:
        found.append(EmbeddingModel(BUNDLED_EMBEDDER_NAME, str(bundled), declared_dim(bundled), True, None))
    root = Path(models_dir) / EMBEDDINGS_FOLDER
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    found.extend(describe_folder(p) for p in folders)
    if configured and all(m.path != str(Path(configured).expanduser()) for m in found):
        found.append(describe_folder(configured))
    return found
