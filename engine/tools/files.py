"""read_file's rules: only inside folders the user allowed, no hidden files, no link out, text capped.

A path is taken as given (absolute) or under each allowed folder (relative), every link in it is
resolved, and the real path must still lie inside an allowed folder; no part of it below that folder
may be hidden (a name starting with "."), so ``.ssh``, ``.env`` and ``.git`` stay out even inside an
allowed folder. The file is opened without following a final link and checked again through its open
descriptor, so a link swapped in after the check leads nowhere. Text files are read directly up to a
size cap; PDFs, Word files and web pages are parsed by Locus's document loaders in a worker process
(engine/rag/isolation.py), with the call's time limit.
"""

from __future__ import annotations

import os
import stat
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from engine.rag.loaders import DocumentError, decode_text, kind_for
from engine.tools.errors import ToolError

READ_MAX_BYTES = 4 * 2**20  # the most of a text file read (the result is capped again to result_max_chars)
PARSE_MAX_BYTES = 64 * 2**20  # the largest PDF, Word or HTML file given to a parser
LIST_MAX_ENTRIES = 200  # a folder's entries listed, at most
_PARSED_KINDS = {"pdf", "docx", "html"}


class FileAccessError(ToolError):
    """read_file refused a path, or could not read it."""

    code = "file_access"


@dataclass(frozen=True)
class AllowedPath:
    """A path read_file may open: its real location and the allowed folder it lies in."""

    real: Path
    folder: Path


def resolve_allowed(requested: str, folders: tuple[str, ...]) -> AllowedPath:
    """The real path ``requested`` names inside one of ``folders``; raises FileAccessError in words."""
    if not folders:
        raise FileAccessError(
            "No folder is allowed for reading files.",
            hint="Add one under Settings > Tools > Allowed folders (tools.allowed_folders).",
        )
    if not requested or "\x00" in requested:
        raise FileAccessError("No file name was given.")
    given = Path(requested).expanduser()
    roots = [
        (Path(os.path.abspath(Path(f).expanduser())), Path(os.path.realpath(Path(f).expanduser()))) for f in folders
    ]
    candidates = [given] if given.is_absolute() else [written / given for written, _ in roots]
    outside = False
    for candidate in candidates:
        real = Path(os.path.realpath(candidate))  # every link resolved: this decides where the file is
        root = next((r for _, r in roots if _inside(real, r)), None)
        if root is None:
            outside = outside or os.path.lexists(candidate)
            continue
        _refuse_hidden(real, root, requested)
        as_written = Path(os.path.abspath(candidate))
        for written, _ in roots:
            if _inside(as_written, written):
                _refuse_hidden(as_written, written, requested)
        if real.exists():
            return AllowedPath(real, root)
    if outside:
        raise FileAccessError(
            f"'{requested}' is outside the folders allowed for reading.",
            hint="Only files inside " + ", ".join(folders) + " can be read.",
        )
    raise FileAccessError(f"There is no file '{requested}' in the allowed folders.")


def read_text(path: AllowedPath, *, timeout_s: float, cancel: threading.Event) -> tuple[str, str]:
    """(title line, text) of an allowed file or folder: text read directly, documents parsed in a worker."""
    real = path.real
    if real.is_dir():
        return f"Folder {real}", _list_folder(real)
    kind = kind_for(real)
    if kind in _PARSED_KINDS:
        return f"File {real}", _parse_document(real, timeout_s, cancel)
    data, size = _read_checked(real, path.folder)
    try:
        text = decode_text(data, real.name)
    except DocumentError as exc:
        raise FileAccessError(f"'{real.name}' is not a text file (binary data); it was not read.") from exc
    if size > len(data):
        text += f"\n\n[Only the first {len(data):,} of {size:,} bytes were read.]"
    return f"File {real}", text


def _inside(real: Path, root: Path) -> bool:
    return real == root or root in real.parents


def _refuse_hidden(real: Path, root: Path, requested: str) -> None:
    for part in real.relative_to(root).parts:
        if part.startswith("."):
            raise FileAccessError(
                f"'{requested}' is a hidden file or inside a hidden folder; read_file does not "
                "read those (they hold settings, keys and version history)."
            )


def _read_checked(real: Path, root: Path) -> tuple[bytes, int]:
    """Up to READ_MAX_BYTES of a regular file, opened without following a final link and checked again
    through its descriptor (a link swapped in after the check is caught here)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(real, flags)
    except OSError as exc:
        raise FileAccessError(f"'{real.name}' could not be opened ({exc.strerror}).") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileAccessError(f"'{real.name}' is not a regular file; it was not read.")
        if sys.platform.startswith("linux"):
            opened = Path(os.readlink(f"/proc/self/fd/{fd}"))
            if not _inside(opened, root):
                raise FileAccessError(f"'{real.name}' moved outside the allowed folders while it was opened.")
        chunks, total = [], 0
        while total < READ_MAX_BYTES:
            chunk = os.read(fd, min(1 << 20, READ_MAX_BYTES - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        return b"".join(chunks), max(info.st_size, total)
    finally:
        os.close(fd)


def _list_folder(folder: Path) -> str:
    try:
        entries = sorted((e for e in os.scandir(folder) if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError as exc:
        raise FileAccessError(f"The folder '{folder.name}' could not be listed ({exc.strerror}).") from exc
    lines = [f"{e.name}/" if e.is_dir(follow_symlinks=False) else e.name for e in entries[:LIST_MAX_ENTRIES]]
    if len(entries) > LIST_MAX_ENTRIES:
        lines.append(f"[… and {len(entries) - LIST_MAX_ENTRIES} more]")
    return "\n".join(lines) if lines else "(empty folder)"


def _parse_document(real: Path, timeout_s: float, cancel: threading.Event) -> str:
    """A PDF's, Word file's or web page's text, parsed in a worker process within ``timeout_s``."""
    from engine.rag.isolation import ParsePool

    with ParsePool(workers=1, timeout_s=max(1.0, timeout_s), max_bytes=PARSE_MAX_BYTES) as pool:
        outcome = pool.parse(real, cancel)
    if outcome.error is not None:
        raise FileAccessError(str(outcome.error))
    if outcome.document is None:
        raise FileAccessError(f"Reading '{real.name}' was stopped.")
    parts = []
    for section in outcome.document.sections:
        where = f"[page {section.page}] " if section.page is not None else ""
        parts.append(where + section.text.strip())
    return "\n\n".join(p for p in parts if p)
