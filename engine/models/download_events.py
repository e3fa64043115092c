"""What a download reports (progress, paused, done, failed, cancelled), its errors, and unfinished downloads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.errors import EngineError
from engine.models.hub import FilePart


class DownloadError(EngineError):
    """A download stopped before the file was complete and verified."""

    code = "download_failed"


class ChecksumMismatchError(DownloadError):
    """The finished file's SHA-256 differs from the hub's; the file was deleted."""

    code = "download_checksum"


class InsufficientDiskSpaceError(DownloadError):
    """The disk has less free space than the rest of the download needs."""

    code = "disk_full"


@dataclass(frozen=True)
class DownloadProgress:
    """Bytes written so far (all parts together) and the current speed."""

    done: int
    total: int | None
    bytes_per_s: float
    eta_s: float | None


@dataclass(frozen=True)
class DownloadPaused:
    """The download is paused at ``done`` bytes; ``resume()`` continues it."""

    done: int
    total: int | None


@dataclass(frozen=True)
class DownloadDone:
    """Every part is on disk and verified; ``path`` is the file to load (the first part)."""

    path: Path


@dataclass(frozen=True)
class DownloadFailed:
    """The download stopped; see ``DownloadHandle.resumable``."""

    error: EngineError


@dataclass(frozen=True)
class DownloadCancelled:
    """The download was cancelled and its partial files deleted."""


@dataclass(frozen=True)
class PendingDownload:
    """An unfinished download found on disk, e.g. after a restart."""

    filename: str
    url: str
    size: int | None
    sha256: str | None
    done_bytes: int
    parts: tuple[FilePart, ...]
