"""The local models: the bundled one and the GGUF files in <data>/models, with what their metadata says.

Importing a file checks it first (engine/models/gguf.py) and copies it in
chunks with progress into a hidden temporary name that is renamed at the end,
so a cancelled or crashed import never leaves a half file that looks like a
model. Only files inside the models folder can be deleted.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine.errors import EngineError, InvalidRequestError, NotFoundError
from engine.models.gguf import check_gguf

COPY_CHUNK = 8 << 20


@dataclass(frozen=True)
class LocalModel:
    """One model file on this machine and what its GGUF metadata says (``problem`` when it is refused)."""

    path: str
    name: str
    bundled: bool
    size_bytes: int
    architecture: str = ""
    n_params: int = 0
    quantization: str = ""
    context_length: int = 0
    n_layers: int = 0
    has_chat_template: bool = False
    problem: str | None = None


class ImportCancelled(EngineError):
    """The user stopped an import; nothing was left behind."""

    code = "import_cancelled"


class ModelCatalog:
    """Lists, imports and deletes the GGUF models Locus can load."""

    def __init__(self, models_dir: str | Path, bundled: Path | None = None, bundled_name: str = ""):
        self.models_dir = Path(models_dir)
        self.bundled = bundled
        self.bundled_name = bundled_name
        self._cache: dict[tuple[str, int, int], LocalModel] = {}
        self._headers: dict[tuple[str, int, int], object] = {}  # the GGUFFile read for each listed model
        self._lock = threading.Lock()

    def models(self) -> list[LocalModel]:
        """The bundled model first, then the models folder's GGUF files by name."""
        out = []
        if self.bundled is not None and self.bundled.exists():
            out.append(self.describe(self.bundled, bundled=True))
        if self.models_dir.is_dir():
            files = sorted(
                p
                for p in self.models_dir.iterdir()
                if p.suffix.lower() == ".gguf" and p.is_file() and not p.name.startswith(".")
            )
            out.extend(self.describe(p) for p in files)
        return out

    def describe(self, path: Path, *, bundled: bool = False) -> LocalModel:
        """What one file is (read once per size and modification time)."""
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None:
            return cached
        name = self.bundled_name if bundled and self.bundled_name else path.stem
        try:
            info = check_gguf(path)
            with self._lock:
                self._headers[key] = info
        except EngineError as exc:
            model = LocalModel(str(path), name, bundled, stat.st_size, problem=exc.user_text())
        else:
            model = LocalModel(
                str(path),
                name,
                bundled,
                stat.st_size,
                architecture=info.architecture or "",
                n_params=info.n_params,
                quantization=info.file_type or "",
                context_length=info.context_length or 0,
                n_layers=info.n_layers or 0,
                has_chat_template=info.has_chat_template,
            )
        with self._lock:
            self._cache[key] = model
        return model

    def header(self, path: str | Path):
        """The GGUFFile of a listed model (read once with its listing; read now if it changed since)."""
        path = Path(path)
        stat = path.stat()
        with self._lock:
            found = self._headers.get((str(path), stat.st_size, stat.st_mtime_ns))
        return found if found is not None else check_gguf(path)

    def import_file(
        self,
        source: str | Path,
        *,
        on_progress: Callable[[int, int], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> LocalModel:
        """Check a GGUF file and copy it into the models folder (refused files raise the check's error)."""
        source = Path(source).expanduser()
        if not source.is_file():
            raise NotFoundError(f"'{source}' is not a file.")
        check_gguf(source)
        self.models_dir.mkdir(parents=True, exist_ok=True)
        target = self.models_dir / source.name
        if self.bundled is not None and source.resolve() == self.bundled.resolve():
            raise InvalidRequestError("That is the bundled model; it is already in the list.")
        if target.exists():
            raise InvalidRequestError(
                f"A model named '{source.name}' is already in the models folder.",
                hint="Rename the file or delete the existing model first.",
            )
        total = source.stat().st_size
        free = shutil.disk_usage(self.models_dir).free
        if free < total + (256 << 20):
            raise EngineError(
                f"Not enough disk space to import '{source.name}': it needs {total / 1e9:.1f} GB "
                f"and {free / 1e9:.1f} GB are free."
            )
        temporary = self.models_dir / f".{source.name}.importing"
        done = 0
        try:
            with open(source, "rb") as src, open(temporary, "wb") as dst:
                while chunk := src.read(COPY_CHUNK):
                    if cancel is not None and cancel.is_set():
                        raise ImportCancelled(f"Importing '{source.name}' was cancelled.")
                    dst.write(chunk)
                    done += len(chunk)
                    if on_progress is not None:
                        on_progress(done, total)
                dst.flush()
                os.fsync(dst.fileno())
            os.replace(temporary, target)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return self.describe(target)

    def delete(self, path: str | Path) -> None:
        """Remove a model file from the models folder (the bundled model and other folders are refused)."""
        path = Path(path).resolve()
        if path.parent != self.models_dir.resolve():
            raise InvalidRequestError(
                "Only models in Locus's models folder can be deleted here.", hint=f"That folder is {self.models_dir}."
            )
        if not path.exists():
            raise NotFoundError(f"'{path.name}' is not in the models folder any more.")
        path.unlink()
