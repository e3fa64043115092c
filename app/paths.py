"""Where Locus keeps its files: platform folders, or everything under $LOCUS_HOME. All of it is private:
folders 0700, files 0600 (see ``keep_private``)."""

from __future__ import annotations

import logging
import os
import stat
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import platformdirs

log = logging.getLogger(__name__)

APP_NAME = "locus"
PRIVATE_UMASK = 0o077  # what Locus creates: folders 0700, files 0600
_OPEN_BITS = 0o077  # group and other access
# What Locus puts in its folders (the walk that closes old files touches nothing else, so a LOCUS_HOME
# that also holds the user's own files keeps them as they are): stores, logs, lock, settings, prompts,
# each with the files SQLite, Qt and atomic saves put beside it.
_OWN_NAMES = frozenset(
    {
        "models",
        "index",
        "kv-cache",
        "prompts",
        "locus.sqlite3",
        "traces.sqlite3",
        "locus.log",
        "locus.lock",
        "ui-state.ini",
        "config.toml",
        "stored-secrets.json",
    }
)
_BESIDE = ("-wal", "-shm", "-journal", ".lock", ".tmp")
_OWN_PREFIXES = (".config-", "index.old-")  # a settings save in progress; an index set aside for a new embedder
_user_umask: int | None = None  # the umask Locus started with, for folders above its own that it creates


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
        """Create Locus's folders, private (0700) whatever the umask."""
        for directory in (self.data_dir, self.config_dir, self.models_dir):
            make_private_dir(directory)

    @property
    def roots(self) -> tuple[Path, ...]:
        """Locus's top folders (one when data and config are together)."""
        return tuple(dict.fromkeys((self.data_dir, self.config_dir)))


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


def make_private_dir(directory: Path) -> None:
    """Create ``directory`` 0700 if it is missing; folders above it that are missing too are the user's,
    made as the user's own umask says."""
    missing = []
    for folder in (directory, *directory.parents):
        if folder.exists():
            break
        missing.append(folder)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not missing:
        return
    os.chmod(directory, 0o700)  # mkdir's mode passes through the umask; this one is exact
    if _user_umask is not None:
        for folder in missing[1:]:
            os.chmod(folder, 0o777 & ~_user_umask)


def keep_private(paths: Paths | None = None) -> threading.Thread | None:
    """At start-up, before anything is written: make everything this process and its workers create
    private (umask 077), close Locus's folders to other users now, and in the background take group and
    other access off what earlier runs left in them. Returns that background walk (None on Windows,
    where the per-user profile's ACLs protect these folders and chmod cannot)."""
    global _user_umask
    if os.name == "nt":
        return None
    previous = os.umask(PRIVATE_UMASK)
    if _user_umask is None:
        _user_umask = previous
    paths = paths or resolve_paths()
    roots = [root for root in paths.roots if _tighten_root(root)]
    walk = threading.Thread(target=_tighten_all, args=(roots,), name="locus-permissions")
    walk.start()  # not a daemon: a short command waits for it at exit rather than leaving it half done
    return walk


def tighten(root: Path) -> int:
    """Take group and other access off Locus's own entries in ``root`` and everything under them; the
    number of entries changed. Links are neither followed nor changed, so nothing outside is touched."""
    changed = 0
    try:
        names = os.listdir(root)
    except OSError:
        return 0
    for name in names:
        if not _is_own(name):
            continue
        path = root / name
        try:
            info = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISREG(info.st_mode):
            changed += _tighten_file(name, info, dir_fd=None, where=path)
        elif stat.S_ISDIR(info.st_mode):
            changed += _tighten_tree(path)
    return changed


def _is_own(name: str) -> bool:
    for suffix in _BESIDE:
        name = name.removesuffix(suffix)
    return name in _OWN_NAMES or name.startswith(_OWN_PREFIXES)


def _tighten_all(roots: list[Path]) -> None:
    for root in roots:
        try:
            changed = tighten(root)
        except Exception:  # a walk that fails leaves files as they were; it never stops Locus starting
            log.exception("could not check the permissions under %s", root)
            continue
        if changed:
            log.info("made %d of Locus's folders and files in %s private", changed, root)


def _tighten_root(root: Path) -> bool:
    """Close ``root`` itself when it is Locus's own folder; False when it is missing. A root that holds more
    than Locus's files (the home folder, a shared folder such as /tmp) keeps its mode."""
    try:
        info = os.stat(root)
    except OSError:
        return False
    if not stat.S_ISDIR(info.st_mode):
        return False
    home = Path.home().resolve()
    resolved = root.resolve()
    shared = bool(info.st_mode & stat.S_ISVTX) or resolved == home or resolved in home.parents
    if shared or info.st_uid != os.getuid():
        log.warning("%s is not Locus's own folder: only Locus's files in it are made private", root)
    elif info.st_mode & _OPEN_BITS:
        try:
            os.chmod(root, stat.S_IMODE(info.st_mode) & ~_OPEN_BITS)
        except OSError as exc:
            log.warning("could not make %s private: %s", root, exc)
    return True


def _tighten_tree(top: Path) -> int:
    changed = 0
    # fwalk holds each folder open and never enters a link, so a link swapped in cannot lead the walk out.
    for where, folders, files, folder_fd in os.fwalk(top, follow_symlinks=False):
        info = os.fstat(folder_fd)
        if info.st_mode & _OPEN_BITS:
            try:
                os.fchmod(folder_fd, stat.S_IMODE(info.st_mode) & ~_OPEN_BITS)  # first: then no one else
                changed += 1  # can put anything in it while its files are checked
            except OSError as exc:
                log.warning("could not make %s private: %s", where, exc)
                folders.clear()  # not ours to walk
                continue
        for name in files:
            try:
                entry = os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(entry.st_mode):
                changed += _tighten_file(name, entry, dir_fd=folder_fd, where=Path(where, name))
    return changed


def _tighten_file(name: str, info: os.stat_result, *, dir_fd: int | None, where: Path) -> int:
    if not info.st_mode & _OPEN_BITS:
        return 0
    try:
        os.chmod(name if dir_fd is not None else where, stat.S_IMODE(info.st_mode) & ~_OPEN_BITS, dir_fd=dir_fd)
    except OSError as exc:
        log.warning("could not make %s private: %s", where, exc)
        return 0
    return 1
