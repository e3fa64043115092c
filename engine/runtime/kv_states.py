"""Saved KV states of idle conversations: in RAM within a byte budget, least recently used first
out, optionally spilled to files in a folder of their own (also within a byte budget).

A state is the bytes llama.cpp gives for one sequence (``llama_state_seq_get_data``) plus the
tokens (and the text they spell) it holds, so a returning conversation can put it back into a
free slot and reuse as much of it as its new prompt shares. Files are written by a thread of
the store's own, so pushing a state out never makes the runtime thread wait for the disk; a
state taken back before its file is written comes straight from memory.

The RAM budget covers the states kept in RAM and the spare buffers kept for the next save,
each counted by the whole buffer it keeps alive; a state on its way to disk leaves RAM as
soon as the writer has written it.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import mmap
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil

log = logging.getLogger(__name__)

_SPARE_BUFFERS = 2  # switching back and forth needs one: the state restored is the buffer of the next save


@dataclass
class SavedState:
    """One conversation's cached tokens and llama.cpp's bytes for them (in RAM, or in ``path``)."""

    key: str
    tokens: list[int]
    text: str | None  # what the tokens spell, when known (so the next prompt can extend it verbatim)
    data: np.ndarray | None  # uint8 (a view of a possibly larger buffer)
    nbytes: int
    path: Path | None = None
    writing: bool = False  # its file is being written
    gone: bool = False  # taken back or dropped: a file written for it is removed

    @property
    def held(self) -> int:
        """Bytes of RAM its data keeps alive: a view of a recycled, larger buffer keeps all of it."""
        return len(_whole(self.data)) if isinstance(self.data, np.ndarray) else self.nbytes


class KvStateStore:
    """Saved states by conversation key: RAM first, then disk, dropping the least recently used."""

    def __init__(self, ram_bytes: int, spill_dir: str | Path | None = None, spill_bytes: int = 0):
        self.ram_bytes = max(0, ram_bytes)
        self.spill_bytes = max(0, spill_bytes) if spill_dir else 0
        self._ram: OrderedDict[str, SavedState] = OrderedDict()
        self._disk: OrderedDict[str, SavedState] = OrderedDict()
        self._ram_used = self._disk_used = 0
        self._folder: Path | None = None
        self._lock = threading.Lock()  # between the runtime thread and the writer, over writing/gone/data
        self._writer: ThreadPoolExecutor | None = None
        self._names = itertools.count()
        self._spare: list[np.ndarray] = []  # buffers of states put back into the context, for the next save
        if spill_dir and self.spill_bytes:
            Path(spill_dir).mkdir(parents=True, exist_ok=True)
            remove_orphans(Path(spill_dir))
            # A folder of this store's own: two processes spilling to one place never mix states.
            self._folder = Path(tempfile.mkdtemp(prefix=f"kv-{os.getpid()}-", dir=spill_dir))
        self.spilled = self.restored_from_disk = self.dropped = 0  # counters, for tests and benchmarks

    @property
    def ram_used(self) -> int:
        return self._ram_used

    @property
    def folder(self) -> Path | None:
        """This store's own spill folder (None without spilling)."""
        return self._folder

    def spare_sizes(self) -> list[int]:
        """The sizes of the buffers kept for the next saves, oldest first (diagnostics)."""
        return [len(b) for b in self._spare]

    def held_in_ram(self) -> int:
        """What the states in RAM and the spare buffers really keep alive, from the arrays themselves rather
        than the running count (diagnostics; states on their way to disk leave RAM once written)."""
        return sum(s.held for s in list(self._ram.values())) + sum(len(b) for b in list(self._spare))

    @property
    def disk_used(self) -> int:
        return self._disk_used

    def __contains__(self, key: str) -> bool:
        return key in self._ram or key in self._disk

    def peek(self, key: str) -> SavedState | None:
        """The saved state of a conversation without loading its bytes (to match prompts against)."""
        return self._ram.get(key) or self._disk.get(key)

    def put(self, state: SavedState) -> None:
        """Keep a state (replacing the key's older one), pushing the least recently used out."""
        self.discard(state.key)
        if state.held > self.ram_bytes:
            self._spill(state)
            return
        self._ram[state.key] = state
        self._ram_used += state.held
        while self._ram_used > self.ram_bytes:
            _, oldest = self._ram.popitem(last=False)
            self._ram_used -= oldest.held
            self._spill(oldest)
        self._trim_spares()

    def take(self, key: str) -> SavedState | None:
        """Remove and return a conversation's state with its bytes in RAM (read back from disk if spilled)."""
        state = self._ram.pop(key, None)
        if state is not None:
            self._ram_used -= state.held
            return state
        state = self._disk.pop(key, None)
        if state is None:
            return None
        self._disk_used -= state.nbytes
        with self._lock:
            data, writing, state.gone = state.data, state.writing, True
        path = state.path
        if data is None and path is None:  # its file could not be written: the state is lost
            return None
        try:
            if data is None and path is not None:
                data = self.buffer(state.nbytes)[: state.nbytes]
                with open(path, "rb") as file:
                    if file.readinto(memoryview(data)) != state.nbytes:  # type: ignore[arg-type] # a buffer
                        raise OSError(f"{state.path} is shorter than the state written to it")
        except OSError as exc:
            log.warning("a spilled KV state could not be read back: %s", exc)
            return None
        finally:
            if not writing:  # else the writer removes the file once written
                _unlink(state.path)
        state.data, state.path = data, None
        self.restored_from_disk += 1
        return state

    def discard(self, key: str) -> None:
        """Forget a conversation's state (it is stale: the conversation is in the context again)."""
        state = self._ram.pop(key, None)
        if state is not None:
            self._ram_used -= state.held
        state = self._disk.pop(key, None)
        if state is not None:
            self._disk_used -= state.nbytes
            self._forget_file(state)

    def forget(self, key: str) -> int:
        """Drop a deleted conversation's states from RAM and disk (``key``'s and every key under it: its
        branches'); returns how many there were."""
        held = [k for k in dict.fromkeys([*self._ram, *self._disk]) if under(k, key)]
        for k in held:
            self.discard(k)
        if held:
            self.flush()  # a file being written when it was dropped is removed by the writer: wait for that
        return len(held)

    def clear(self) -> None:
        for key in list(self._ram) + list(self._disk):
            self.discard(key)

    def has_room(self, size: int) -> bool:
        """Whether a state of ``size`` bytes can be kept without pushing any other out."""
        if size <= self.ram_bytes:
            return self._ram_used + size <= self.ram_bytes
        return self._folder is not None and self._disk_used + size <= self.spill_bytes

    def has_ram_room(self, size: int) -> bool:
        """Whether a state of ``size`` bytes fits in the RAM budget beside the states kept there."""
        return self._ram_used + size <= self.ram_bytes

    def buffer(self, size: int) -> np.ndarray:
        """A uint8 array of at least ``size`` bytes to save a state into: a spare one when one fits."""
        fits = [i for i, b in enumerate(self._spare) if size <= len(b) <= size * 3 // 2 + 4096]
        if fits:  # by index: ``list.remove`` would compare arrays element by element
            return self._spare.pop(min(fits, key=lambda i: len(self._spare[i])))
        return _allocate(size)

    def recycle(self, data: np.ndarray | None) -> None:
        """A state's bytes went back into the context: keep its buffer (its pages are mapped) for a save."""
        if not isinstance(data, np.ndarray):
            return
        self._spare.append(_whole(data))
        self._spare.sort(key=len)
        self._trim_spares()

    def _trim_spares(self) -> None:
        """Spare buffers count against the RAM budget too: keep the largest that fit beside the states."""
        while self._spare and (
            len(self._spare) > _SPARE_BUFFERS or self._ram_used + sum(len(b) for b in self._spare) > self.ram_bytes
        ):
            self._spare.pop(0)

    def flush(self) -> None:
        """Wait until every spilled state is on disk."""
        if self._writer is not None:
            self._writer.submit(lambda: None).result()

    def close(self) -> None:
        """Forget every state and remove the spill folder."""
        self.clear()
        self._spare.clear()
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def _spill(self, state: SavedState) -> None:
        if self._folder is None or state.nbytes > self.spill_bytes:
            self.dropped += 1
            return
        while self._disk and self._disk_used + state.nbytes > self.spill_bytes:
            _, oldest = self._disk.popitem(last=False)
            self._disk_used -= oldest.nbytes
            self._forget_file(oldest)
            self.dropped += 1
        name = f"{_file_stem(state.key)}-{next(self._names)}.kv"
        state.path, state.writing, state.gone = self._folder / name, True, False
        self._disk[state.key] = state
        self._disk_used += state.nbytes
        self.spilled += 1
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="locus-kv-spill")
        self._writer.submit(self._write, state)

    def _write(self, state: SavedState) -> None:
        """On the writer thread: the state's bytes to its file, then out of memory."""
        with self._lock:
            data, path = (None if state.gone else state.data), state.path
            if data is None or path is None:  # taken back or dropped before its turn came
                state.writing = False
                return
        try:
            path.write_bytes(memoryview(data))  # type: ignore[arg-type] # an ndarray (or bytearray) is a buffer
            written = True
        except OSError as exc:  # a full disk: the state is given up (its conversation is evaluated again)
            log.warning("a KV state could not be spilled to %s: %s", path, exc)
            written = False
        with self._lock:
            state.writing = False
            if state.gone or not written:
                _unlink(path)
            if not state.gone:  # (a state taken back while written keeps its bytes for the taker)
                state.data = None
                state.path = path if written else None

    def _forget_file(self, state: SavedState) -> None:
        with self._lock:
            state.gone = True
            writing = state.writing
        if not writing:  # else the writer removes it
            state.data = None
            _unlink(state.path)


def remove_orphans(spill_dir: Path) -> int:
    """Remove the spill folders of processes that ended without closing their store (a crash, a kill)."""
    removed = 0
    for folder in spill_dir.glob("kv-*-*"):
        pid = folder.name.split("-")[1]
        if not pid.isdigit() or int(pid) == os.getpid() or psutil.pid_exists(int(pid)):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed += 1
    return removed


def remove_spilled(spill_dir: Path, key: str) -> int:
    """Remove a deleted conversation's spilled state files from every store's folder under ``spill_dir``
    (other Locus processes' too: a store that later looks for one finds it gone and evaluates again)."""
    removed = 0
    for path in Path(spill_dir).glob(f"kv-*-*/{_file_stem(key)}-*.kv"):
        try:
            os.unlink(path)
            removed += 1
        except OSError:
            pass
    return removed


def under(key: str, family: str) -> bool:
    """Whether ``key`` is ``family`` or one of its branches' keys (``family/...``)."""
    return key == family or key.startswith(family + "/")


def _file_stem(key: str) -> str:
    """A conversation's spill files are named after a hash of its key's first part, before any "/" (never
    the key itself): the files of all its branches go together when it is deleted."""
    return hashlib.sha256(key.split("/", 1)[0].encode()).hexdigest()[:24]


def _whole(data: np.ndarray) -> np.ndarray:
    """The whole buffer a state's bytes were saved into (they may be a view of its start)."""
    while isinstance(data.base, np.ndarray):
        data = data.base
    return data


def _allocate(size: int) -> np.ndarray:
    """Fresh memory for a state, its pages mapped up front: faulting them in one by one during the
    copy costs more than the copy (and numpy's own large arrays ask for huge pages, whose
    faults stall on compaction here)."""
    populate = getattr(mmap, "MAP_POPULATE", 0)
    if size and populate:
        try:
            return np.frombuffer(
                mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | populate), dtype=np.uint8
            )
        except OSError:
            pass
    return np.frombuffer(bytearray(size), dtype=np.uint8)


def _unlink(path: Path | None) -> None:
    if path is not None:
        try:
            os.unlink(path)
        except OSError:
            pass
