"""Saved KV states of idle conversations: in RAM within a byte budget, least recently used first
out, optionally spilled to files in a folder of their own (also within a byte budget).

A state is the bytes llama.cpp gives for one sequence (``llama_state_seq_get_data``) plus the
tokens (and the text they spell) it holds, so a returning conversation can put it back into a
free slot and reuse as much of it as its new prompt shares.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass
class SavedState:
    """One conversation's cached tokens and llama.cpp's bytes for them (in RAM, or in ``path``)."""

    key: str
    tokens: list[int]
    text: str | None  # what the tokens spell, when known (so the next prompt can extend it verbatim)
    data: bytearray | None
    nbytes: int
    path: Path | None = None


class KvStateStore:
    """Saved states by conversation key: RAM first, then disk, dropping the least recently used."""

    def __init__(self, ram_bytes: int, spill_dir: str | Path | None = None, spill_bytes: int = 0):
        self.ram_bytes = max(0, ram_bytes)
        self.spill_bytes = max(0, spill_bytes) if spill_dir else 0
        self._ram: OrderedDict[str, SavedState] = OrderedDict()
        self._disk: OrderedDict[str, SavedState] = OrderedDict()
        self._ram_used = self._disk_used = 0
        self._folder: Path | None = None
        if spill_dir and self.spill_bytes:
            Path(spill_dir).mkdir(parents=True, exist_ok=True)
            # A folder of this store's own: two processes spilling to one place never mix states.
            self._folder = Path(tempfile.mkdtemp(prefix="kv-", dir=spill_dir))
        self.spilled = self.restored_from_disk = self.dropped = 0  # counters, for tests and benchmarks

    @property
    def ram_used(self) -> int:
        return self._ram_used

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
        if state.nbytes > self.ram_bytes:
            self._spill(state)
            return
        self._ram[state.key] = state
        self._ram_used += state.nbytes
        while self._ram_used > self.ram_bytes:
            _, oldest = self._ram.popitem(last=False)
            self._ram_used -= oldest.nbytes
            self._spill(oldest)

    def take(self, key: str) -> SavedState | None:
        """Remove and return a conversation's state with its bytes in RAM (read back from disk if spilled)."""
        state = self._ram.pop(key, None)
        if state is not None:
            self._ram_used -= state.nbytes
            return state
        state = self._disk.pop(key, None)
        if state is None:
            return None
        self._disk_used -= state.nbytes
        try:
            state.data = bytearray(state.path.read_bytes())
        except OSError as exc:
            log.warning("a spilled KV state could not be read back: %s", exc)
            return None
        finally:
            _unlink(state.path)
        state.path = None
        self.restored_from_disk += 1
        return state

    def discard(self, key: str) -> None:
        """Forget a conversation's state (it is stale: the conversation is in the context again)."""
        state = self._ram.pop(key, None)
        if state is not None:
            self._ram_used -= state.nbytes
        state = self._disk.pop(key, None)
        if state is not None:
            self._disk_used -= state.nbytes
            _unlink(state.path)

    def clear(self) -> None:
        for key in list(self._ram) + list(self._disk):
            self.discard(key)

    def close(self) -> None:
        """Forget every state and remove the spill folder."""
        self.clear()
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
            _unlink(oldest.path)
            self.dropped += 1
        path = self._folder / (hashlib.sha256(state.key.encode()).hexdigest()[:32] + ".kv")
        try:
            path.write_bytes(state.data)
        except OSError as exc:  # a full disk costs a recomputation later, nothing more
            log.warning("a KV state could not be spilled to %s: %s", path, exc)
            _unlink(path)
            self.dropped += 1
            return
        state.data, state.path = None, path
        self._disk[state.key] = state
        self._disk_used += state.nbytes
        self.spilled += 1


def _unlink(path: Path | None) -> None:
    if path is not None:
        try:
            os.unlink(path)
        except OSError:
            pass
