"""Download GGUF files from the hub: pausable, resumable after a restart, verified by SHA-256.

Bytes go to ``<name>.part`` beside a ``<name>.part.json`` sidecar (what is being fetched),
so a later ``Downloader`` finds the part through ``pending()`` and continues with a Range
request. HTTP goes through httpx2, the client huggingface-hub itself depends on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx2

from engine.errors import EngineError, InvalidRequestError
from engine.models.download_events import (
    ChecksumMismatchError,
    DownloadCancelled,
    DownloadDone,
    DownloadError,
    DownloadFailed,
    DownloadPaused,
    DownloadProgress,
    InsufficientDiskSpaceError,
    PendingDownload,
)
from engine.models.hub import TOKEN_HINT, FilePart, HubAuthError, HubNotFoundError, HubUnavailableError, QuantFile

log = logging.getLogger(__name__)

DISK_MARGIN_BYTES = 256 * 1024 * 1024


class _Paused(Exception):
    pass


class _Cancelled(Exception):
    pass


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e9:.2f} GB"


def _part_path(final: Path) -> Path:
    return final.with_name(final.name + ".part")


def _meta_path(final: Path) -> Path:
    return final.with_name(final.name + ".part.json")


class DownloadHandle:
    """One download on its own thread. Events go to ``on_event`` on that thread."""

    def __init__(self, downloader: Downloader, parts: tuple[FilePart, ...], token: str | None, on_event):
        self.path = downloader.final_path(parts[0].filename)
        self.error: EngineError | None = None
        self._dl = downloader
        self._parts = parts
        self._token = token
        self._on_event = on_event or (lambda event: None)
        self._state = "running"
        self._changed = threading.Condition()
        self._pause = threading.Event()
        self._cancel = threading.Event()
        self._wake = threading.Event()
        sizes = [p.size for p in parts]
        known = [size for size in sizes if size is not None]
        self._total = sum(known) if len(known) == len(sizes) else None  # None when any size is unknown
        self._before = 0  # bytes of the parts already finished
        self._offset = 0  # bytes of the current part on disk
        self._hasher = hashlib.sha256()
        self._samples: deque[tuple[float, int]] = deque()

    @property
    def state(self) -> str:
        """``running``, ``paused``, ``done``, ``failed`` or ``cancelled``."""
        return self._state

    @property
    def resumable(self) -> bool:
        """Whether a failed download kept bytes that ``resume()`` continues from."""
        return self._state == "failed" and any(
            _part_path(self._dl.final_path(p.filename)).exists() for p in self._parts
        )

    def pause(self) -> None:
        """Stop at the next chunk, keeping the part; ``resume()`` continues it."""
        self._pause.set()

    def resume(self, token: str | None = None) -> None:
        """Continue a paused download, or retry a failed one from the bytes already on disk."""
        with self._changed:
            self._pause.clear()
            if token:
                self._token = token
            if self._state == "paused":
                self._wake.set()
            elif self._state == "failed":
                self.error = None
                self._set_state("running")
                self._launch()

    def cancel(self) -> None:
        """Stop and delete the partial files."""
        self._cancel.set()
        self._wake.set()
        with self._changed:
            if self._state == "failed":
                self._discard()
                self._finish("cancelled", DownloadCancelled())

    def wait(self, timeout: float | None = None) -> str:
        """Block until the download is done, failed or cancelled; returns the state."""
        with self._changed:
            self._changed.wait_for(lambda: self._state in ("done", "failed", "cancelled"), timeout)
            return self._state

    def _launch(self) -> None:
        threading.Thread(target=self._run, name=f"download {self.path.name}", daemon=True).start()

    def _set_state(self, state: str) -> None:
        with self._changed:
            self._state = state
            self._changed.notify_all()

    def _emit(self, event: Any) -> None:
        try:
            self._on_event(event)
        except Exception:
            log.exception("download event handler failed")

    def _finish(self, state: str, event: Any) -> None:
        self._set_state(state)
        self._emit(event)

    def _discard(self) -> None:
        for part in self._parts:
            final = self._dl.final_path(part.filename)
            _part_path(final).unlink(missing_ok=True)
            _meta_path(final).unlink(missing_ok=True)

    def _run(self) -> None:
        try:
            self._fetch_all()
        except _Cancelled:
            self._discard()
            self._finish("cancelled", DownloadCancelled())
        except EngineError as error:
            if self._cancel.is_set():  # cancelled while the failure was on its way: honour the cancel
                self._discard()
                self._finish("cancelled", DownloadCancelled())
                return
            self.error = error
            self._finish("failed", DownloadFailed(error))
        except Exception as error:
            log.exception("download failed")
            self.error = DownloadError(
                f"The download of {self.path.name} failed unexpectedly; try again.",
                detail=self._scrub(f"{type(error).__name__}: {error}"),
            )
            self._finish("failed", DownloadFailed(self.error))
        else:
            self._finish("done", DownloadDone(self.path))

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text

    def _fetch_all(self) -> None:
        finals = [self._dl.final_path(p.filename) for p in self._parts]
        have = [f.stat().st_size if f.exists() else _size(_part_path(f)) for f in finals]
        missing = sum(max((p.size or 0) - h, 0) for p, h in zip(self._parts, have, strict=True))
        self._dl.check_space(missing, self.path.name)
        self._before = 0
        for i, (part, final) in enumerate(zip(self._parts, finals, strict=True)):
            if not final.exists():
                self._fetch_part(part, final, self._parts[i + 1 :])
            self._before += final.stat().st_size

    def _fetch_part(self, part: FilePart, final: Path, following: tuple[FilePart, ...]) -> None:
        partial, meta = _part_path(final), _meta_path(final)
        final.parent.mkdir(parents=True, exist_ok=True)
        sidecar = {**asdict(part), "etag": None, "following": [asdict(p) for p in following]}
        if meta.exists() and partial.exists():
            sidecar["etag"] = json.loads(meta.read_text()).get("etag")
        meta.write_text(json.dumps(sidecar))
        self._hasher, self._offset = hashlib.sha256(), 0
        if partial.exists() and (part.size is None or _size(partial) <= part.size):
            # hashlib state cannot be saved, so the bytes from an earlier run are hashed again.
            with partial.open("rb") as f:
                while block := f.read(1 << 20):
                    self._hasher.update(block)
                    self._offset += len(block)
        while True:
            try:
                if part.size is None or self._offset < part.size:
                    self._request(part, partial, meta, sidecar)
                break
            except _Paused:
                self._wait_paused()
        self._verify(part, final, partial, meta, self._hasher.hexdigest())

    def _request(self, part: FilePart, partial: Path, meta: Path, sidecar: dict) -> None:
        headers = {"Accept-Encoding": "identity"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        if self._offset:
            headers["Range"] = f"bytes={self._offset}-"
            if sidecar["etag"] and not sidecar["etag"].startswith("W/"):
                headers["If-Range"] = sidecar["etag"]
        try:
            with self._dl.session.stream("GET", part.url, headers=headers) as response:
                self._check_status(response.status_code, Path(part.filename).name)
                length = response.headers.get("Content-Length")
                if response.status_code == 200 and part.size is not None and length and int(length) != part.size:
                    partial.unlink(missing_ok=True)
                    meta.unlink(missing_ok=True)
                    raise DownloadError(
                        f"{self.path.name} on the hub is no longer the file that was listed "
                        "(its size changed); refresh the list and try again.",
                        detail=f"expected {part.size} bytes, the server sends {length}",
                    )
                if self._offset and response.status_code != 206:
                    # The server ignored the Range (or the file changed): start the file over.
                    self._hasher, self._offset = hashlib.sha256(), 0
                elif self._offset and not _range_ok(response.headers.get("Content-Range", ""), self._offset, part):
                    detail = f"asked from byte {self._offset}, got {response.headers.get('Content-Range')!r}"
                    partial.unlink(missing_ok=True)
                    self._hasher, self._offset = hashlib.sha256(), 0
                    raise DownloadError(
                        f"The server sent the wrong part of {self.path.name}; try again.", detail=detail
                    )
                if self._offset == 0:
                    sidecar["etag"] = response.headers.get("ETag")
                    meta.write_text(json.dumps(sidecar))
                with partial.open("ab" if self._offset else "wb") as out:
                    try:
                        for chunk in response.iter_bytes(self._dl.chunk_bytes):
                            out.write(chunk)
                            self._hasher.update(chunk)
                            self._offset += len(chunk)
                            self._progress()
                            if self._cancel.is_set():
                                raise _Cancelled
                            if self._pause.is_set():
                                raise _Paused
                    finally:
                        out.flush()
                        os.fsync(out.fileno())
        except (httpx2.ConnectError, httpx2.ConnectTimeout) as error:
            raise HubUnavailableError(
                "Cannot reach the Hugging Face hub (offline?). Check the network or proxy, then resume.",
                detail=self._scrub(f"{type(error).__name__}: {error}"),
            ) from error
        except httpx2.TransportError as error:
            done = self._before + self._offset
            where = f" at {_gb(done)} of {_gb(self._total)}" if self._total else ""
            raise DownloadError(
                f"The download of {self.path.name} was interrupted{where} (connection lost or timed out). "
                "Resume it to continue from there.",
                detail=self._scrub(f"{type(error).__name__}: {error}"),
            ) from error
        if part.size is not None and self._offset != part.size:
            raise DownloadError(
                f"The connection closed before {self.path.name} was complete. Resume it to continue from there."
            )

    def _check_status(self, status: int, final_name: str) -> None:
        if status in (200, 206):
            return
        if status in (401, 403):
            if self._token:
                raise HubAuthError(
                    f"The hub refused {final_name}: accept the repository's terms on huggingface.co with the "
                    "account of your token, or check that the token is valid.",
                    hint=TOKEN_HINT,
                )
            raise HubAuthError(
                f"{final_name} needs a token: the repository is gated or private.",
                hint="Accept its terms on huggingface.co and add a token (Settings › Models).",
            )
        if status == 404:
            raise HubNotFoundError(f"{final_name} was not found on the hub (moved or deleted?).")
        if status >= 500:
            raise HubUnavailableError(f"The Hugging Face hub is having trouble (error {status}); try again later.")
        raise DownloadError(f"The hub refused the download of {final_name} (error {status}).")

    def _verify(self, part: FilePart, final: Path, partial: Path, meta: Path, digest: str) -> None:
        if part.sha256 and digest != part.sha256.lower():
            partial.unlink(missing_ok=True)
            meta.unlink(missing_ok=True)
            raise ChecksumMismatchError(
                f"The downloaded file does not match the hub's checksum (expected {part.sha256}, got {digest}); "
                "it was deleted. Try again."
            )
        os.replace(partial, final)
        meta.unlink(missing_ok=True)

    def _wait_paused(self) -> None:
        # Under the lock, so a resume() or cancel() that raced the pause is never missed.
        with self._changed:
            if self._cancel.is_set():
                raise _Cancelled
            if not self._pause.is_set():
                return
            self._wake.clear()
            self._set_state("paused")
        self._emit(DownloadPaused(self._before + self._offset, self._total))
        self._wake.wait()
        if self._cancel.is_set():
            raise _Cancelled
        self._set_state("running")
        self._samples.clear()

    def _progress(self) -> None:
        now, done = time.monotonic(), self._before + self._offset
        self._samples.append((now, done))
        # Speed over the last five seconds, so the ETA follows the link as it changes.
        while len(self._samples) > 2 and now - self._samples[0][0] > 5:
            self._samples.popleft()
        t0, d0 = self._samples[0]
        rate = (done - d0) / (now - t0) if now > t0 else 0.0
        eta = (self._total - done) / rate if rate > 0 and self._total is not None else None
        self._emit(DownloadProgress(done, self._total, rate, eta))


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _range_ok(content_range: str, offset: int, part: FilePart) -> bool:
    """Whether ``Content-Range: bytes a-b/n`` starts at ``offset`` and names the expected size."""
    unit, _, spec = content_range.partition(" ")
    span, _, total = spec.partition("/")
    start = span.split("-")[0]
    return (
        unit == "bytes"
        and start.isdigit()
        and int(start) == offset
        and (part.size is None or total in ("*", str(part.size)))
    )


class Downloader:
    """Starts downloads into ``models_dir`` and finds the unfinished ones left from earlier runs."""

    def __init__(
        self,
        models_dir: Path | str,
        *,
        chunk_bytes: int = 1 << 20,
        session: httpx2.Client | None = None,
        disk_usage: Callable[[Path], Any] = shutil.disk_usage,
        margin_bytes: int = DISK_MARGIN_BYTES,
    ):
        self.models_dir = Path(models_dir)
        self.chunk_bytes = chunk_bytes
        self.session = session or httpx2.Client(follow_redirects=True, timeout=httpx2.Timeout(30.0, connect=15.0))
        self._disk_usage = disk_usage
        self._margin = margin_bytes
        self._active: dict[Path, DownloadHandle] = {}
        self._lock = threading.Lock()

    def final_path(self, filename: str) -> Path:
        """Where ``filename`` (relative to the models folder) ends up; refuses paths that leave it."""
        path = (self.models_dir / filename).resolve()
        if not path.is_relative_to(self.models_dir.resolve()):
            raise InvalidRequestError(f"Refusing to write outside the models folder: {filename}")
        return path

    def check_space(self, need: int, name: str) -> None:
        """Raise ``InsufficientDiskSpaceError`` unless ``need`` bytes (plus a margin) are free."""
        self.models_dir.mkdir(parents=True, exist_ok=True)
        free = self._disk_usage(self.models_dir).free
        if free < need + self._margin:
            raise InsufficientDiskSpaceError(
                f"Not enough free disk space for {name}: it needs {_gb(need + self._margin)} "
                f"and {_gb(free)} are free in {self.models_dir}.",
                hint="Free some space, then resume.",
            )

    def start(self, target: QuantFile | tuple, token: str | None = None, on_event=None) -> DownloadHandle:
        """Download a ``QuantFile`` or a ``(url, filename, size, sha256)`` into the models folder."""
        if isinstance(target, QuantFile):
            # Flat, by file name: the catalog lists the models folder's own *.gguf files.
            parts = tuple(FilePart(Path(p.filename).name, p.size, p.sha256, p.url) for p in target.parts)
        else:
            url, filename, size, sha256 = target
            parts = (FilePart(filename, size, sha256, url),)
        return self._launch(parts, token, on_event)

    def pending(self) -> list[PendingDownload]:
        """Unfinished downloads in the models folder, whose parts ``resume_pending`` continues."""
        found = []
        for meta in sorted(self.models_dir.rglob("*.part.json")):
            try:
                data = json.loads(meta.read_text())
                first = FilePart(data["filename"], data["size"], data["sha256"], data["url"])
                following = tuple(
                    FilePart(p["filename"], p["size"], p["sha256"], p["url"]) for p in data.get("following", [])
                )
            except (OSError, ValueError, KeyError, TypeError):
                log.warning("ignoring unreadable download sidecar %s", meta)
                continue
            partial = meta.with_name(meta.name.removesuffix(".json"))
            found.append(
                PendingDownload(
                    first.filename, first.url, first.size, first.sha256, _size(partial), (first, *following)
                )
            )
        return found

    def resume_pending(self, pending: PendingDownload, token: str | None = None, on_event=None) -> DownloadHandle:
        """Continue a download found by ``pending()`` from the bytes already on disk."""
        return self._launch(pending.parts, token, on_event)

    def _launch(self, parts: tuple[FilePart, ...], token: str | None, on_event) -> DownloadHandle:
        handle = DownloadHandle(self, parts, token, on_event)
        with self._lock:
            running = self._active.get(handle.path)
            if running is not None and running.state in ("running", "paused"):
                raise DownloadError(f"{handle.path.name} is already downloading.")
            self._active[handle.path] = handle
        handle._launch()
        return handle
