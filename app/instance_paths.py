"""Where the single-instance socket lives: its name and the private folders it may be in (app/single_instance.py
says why). Without Qt, so that a terminal's `locus ask` finds the running Locus quickly (app/ask_handoff.py)."""

from __future__ import annotations

import getpass
import hashlib
import logging
import os
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("app.single_instance")

_SUN_PATH_MAX = 108 if sys.platform.startswith("linux") else 104  # bytes in a socket's path, with its NUL


def server_name(data_dir: Path) -> str:
    """The local socket's name: per user and per data folder, short enough for any platform (on Windows,
    the named pipe's name; elsewhere the socket file's name inside a private folder)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (containers)
        user = str(os.getuid()) if hasattr(os, "getuid") else "user"
    digest = hashlib.sha256(f"{user}\0{Path(data_dir).resolve()}".encode()).hexdigest()[:16]
    safe_user = "".join(c for c in user if c.isalnum())[:16] or "user"
    return f"locus-{safe_user}-{digest}"


def socket_folders(data_dir: Path, env=os.environ) -> list[Path]:
    """Where the socket may live, best first (each is still checked by ``untrusted_because``)."""
    folders = []
    runtime = env.get("XDG_RUNTIME_DIR", "")
    if runtime and Path(runtime).is_absolute():
        folders.append(Path(runtime) / "locus")
    folders.append(Path(data_dir))
    folders.append(Path(tempfile.gettempdir()) / f"locus-{os.getuid()}")
    return folders


def untrusted_because(folder: Path, uid: int | None = None) -> str | None:
    """Why another user could reach or replace a socket in ``folder``; None when only ``uid`` can."""
    uid = os.getuid() if uid is None else uid
    try:
        info = os.lstat(folder)
        parent = os.lstat(folder.parent)
    except OSError as exc:
        return f"it cannot be read ({exc.strerror})"
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        return "it is not a folder"
    if info.st_uid != uid:
        return f"it belongs to user {info.st_uid}"
    if info.st_mode & 0o077:
        return f"others may enter it (mode {stat.S_IMODE(info.st_mode):o})"
    if parent.st_uid not in (uid, 0) or (parent.st_mode & 0o022 and not parent.st_mode & stat.S_ISVTX):
        return "the folder above it lets others rename it"
    return None


def socket_paths(data_dir: Path, *, create: bool = False, env=os.environ) -> Iterator[str]:
    """The socket paths this user can trust for ``data_dir``, best first, found as they are asked for
    (``create``, for the listener: make a missing folder of Locus's own, 0700, and log the folders passed
    over). Windows: the named pipe's name."""
    name = server_name(data_dir)
    if os.name == "nt":
        yield name
        return
    for folder in socket_folders(data_dir, env):
        if create and folder != Path(data_dir) and not folder.exists() and folder.parent.is_dir():
            try:
                folder.mkdir(mode=0o700)
            except OSError:
                pass
        why = untrusted_because(folder)
        path = str(folder / f"{name}.sock")
        if why is not None:
            if create and folder.exists():
                log.warning("single instance: not using %s: %s", folder, why)
        elif len(os.fsencode(path)) < _SUN_PATH_MAX:
            yield path
