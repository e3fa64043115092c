"""Where Locus keeps its files: platform folders, or everything under $LOCUS_HOME."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP_NAME = "locus"


@dataclass(frozen=True)
class Paths:
    data_dir: Path
    config_dir: Path

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"

    @property
    def history_db(self) -> Path:
        return self.data_dir / "locus.sqlite3"

    @property
    def traces_db(self) -> Path:
        return self.data_dir / "traces.sqlite3"

    @property
    def kv_cache_dir(self) -> Path:
        """Where conversation KV states pushed out of RAM are spilled (a folder per running engine)."""
        return self.data_dir / "kv-cache"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "locus.log"

    def ensure(self) -> None:
        for directory in (self.data_dir, self.config_dir, self.models_dir):
            directory.mkdir(parents=True, exist_ok=True)


def resolve_paths(env: Mapping[str, str] = os.environ) -> Paths:
    """$LOCUS_HOME (data and config.toml together) when set, else the platform's folders."""
    home = env.get("LOCUS_HOME")
    if home:
        root = Path(home).expanduser().resolve()
        return Paths(data_dir=root, config_dir=root)
    return Paths(
        data_dir=Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)),
        config_dir=Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)),
    )
