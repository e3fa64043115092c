"""Where sequences live in the shared KV cache: one slot per llama.cpp sequence id.

A slot is free (empty), idle (holding the cache of a finished request: a conversation's
history, or an anonymous prefix) or owned by a running sequence. The cells of the cache are
accounted for conservatively: a running sequence reserves its prompt plus its max_tokens,
an idle slot holds its tokens, and cells shared between sequences count once for each.
Idle slots are given up least recently used first when a sequence needs room; a keyed one
is saved to the KvStateStore on the way out, so its conversation can come back.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field

import numpy as np

from engine.runtime.context import NativeContext
from engine.runtime.kv_states import KvStateStore, SavedState, under
from engine.runtime.sequence import TRAILING, Sequence

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Slot:
    """One sequence id of the context and what it holds."""

    seq_id: int
    tokens: list[int] = field(default_factory=list)  # cached at positions 0..len-1
    text: str | None = None  # what the tokens spell, when known
    key: str | None = None  # the conversation they belong to
    owner: Sequence | None = None  # the running Sequence, if any
    last_used: int = 0
    saved: bool = False  # the store holds a copy of exactly these tokens (made while the runtime was idle)

    @property
    def cells(self) -> int:
        return self.owner.cells if self.owner is not None else len(self.tokens)


def _cells_needed(seq, state: SavedState | None) -> int:
    # A saved state goes back whole before the part the new prompt does not share is removed.
    return max(seq.cells, len(state.tokens)) if state is not None else seq.cells


def common_prefix(a: list[int], b: list[int], limit: int) -> int:
    """How many leading tokens ``a`` and ``b`` share, at most ``limit``."""
    n, limit = 0, min(len(a), len(b), limit)
    while n < limit and a[n] == b[n]:
        n += 1
    return n


class SlotTable:
    """The context's sequence ids and the cells they use; places sequences, evicts idle ones."""

    def __init__(self, ctx: NativeContext, n_slots: int, store: KvStateStore, *, share_prefixes: bool = True):
        self.ctx = ctx
        self.store = store
        self.slots = [Slot(i) for i in range(n_slots)]
        # Recurrent and hybrid models (Mamba, LFM2, ...) keep one state per sequence, not one per
        # position: a copy would hand over the source's whole state, so prefixes are not shared there.
        self.share_prefixes = share_prefixes
        self._tick = itertools.count(1)
        self.evicted = self.restored = self.recomputed = 0  # counters, for tests and benchmarks

    def waits_for_own_turn(self, seq) -> bool:
        """Whether ``seq``'s conversation is still putting its previous turn's last token in (a step)."""
        key = seq.key
        return bool(key) and any(s.key == key and s.owner is not None and s.owner.phase == TRAILING for s in self.slots)

    def used_cells(self) -> int:
        return sum(s.cells for s in self.slots)

    def text_caches(self, key: str | None) -> list[tuple[list[int], str]]:
        """(tokens, text) pairs a new prompt may extend verbatim: idle slots and the key's saved state."""
        out = [(s.tokens, s.text) for s in self.slots if s.owner is None and s.text and s.tokens]
        saved = self.store.peek(key) if key else None
        if saved is not None and saved.text:
            out.append((saved.tokens, saved.text))
        return out

    def place(self, seq) -> int | None:
        """Give ``seq`` a slot holding as much of its target as can be reused; returns how many tokens
        that is, or None (changing nothing) when no slot or not enough cells are free.

        Reuse, best first: the conversation's own idle slot; its saved state (or, resuming after
        preemption, the sequence's own); the longest shared prefix, taking over an anonymous idle
        slot or sharing the cells of a running or another conversation's slot.
        """
        idle = [s for s in self.slots if s.owner is None]
        target, key = seq.target, seq.key
        if not idle or self.waits_for_own_turn(seq):
            return None
        limit = len(target) - (1 if seq.samples_after_prefill else 0)

        def prefix(s: Slot) -> int:
            return common_prefix(s.tokens, target, limit)

        copy_n, source = 0, None  # the slot whose first copy_n cells are shared into the one taken, if any
        slot, state = self._own_cache(seq)
        if slot is None and state is None:
            anon_n, anon = max(
                ((prefix(s), s) for s in idle if s.key is None and s.tokens), key=lambda p: p[0], default=(0, None)
            )
            copy_n, source = max(
                (
                    (prefix(s), s)
                    for s in self.slots
                    if self.share_prefixes and s.tokens and (s.owner is not None or s.key is not None)
                ),
                key=lambda p: p[0],
                default=(0, None),
            )
            if copy_n <= anon_n:
                source = None
                slot = anon if anon_n > 0 else None
        takes_over = slot is not None  # its own tokens are the start of the new cache
        if slot is None:
            choices = [s for s in idle if s is not source]
            if not choices:  # the only idle slot is the one to copy from: evaluate instead
                choices, source = idle, None
            empty = [s for s in choices if not s.tokens]
            slot = empty[0] if empty else min(choices, key=lambda s: s.last_used)

        need = _cells_needed(seq, state)
        free = self.ctx.n_ctx - self.used_cells() + len(slot.tokens)
        evictable = [s for s in idle if s is not slot and s.tokens]
        if need > free + sum(len(s.tokens) for s in evictable):
            return None

        saved = None
        if state is not None:  # taken out of the store now: the evictions below may push others out
            saved = seq.saved if seq.saved is not None else self._take(state.key)
            seq.saved = None
        if not takes_over and slot.tokens:
            self.evict(slot)
        for victim in sorted(evictable, key=lambda s: (s is source, s.last_used)):
            if free >= need:
                break
            if victim is source:  # share its prefix before it goes
                self._copy(source, slot, copy_n)
                source = None
            free += len(victim.tokens)
            self.evict(victim)
        if saved is not None:  # (taken above, when there is a state to restore)
            self._restore(slot, *saved)
        elif source is not None:
            self._copy(source, slot, copy_n)

        n = prefix(slot)
        if n < len(slot.tokens):
            if not self.ctx.remove_from(n, slot.seq_id):
                self.ctx.remove_sequence(slot.seq_id)
                n = 0
            del slot.tokens[n:]
        if key and slot.saved:
            self.store.discard(key)  # the copy made while idle: the cache is about to change
        slot.owner, slot.key, slot.text, slot.last_used, slot.saved = seq, key, None, next(self._tick), False
        seq.slot = slot
        return n

    def _own_cache(self, seq) -> tuple[Slot | None, SavedState | None]:
        """Where ``seq``'s own cache is: its conversation's idle slot, or a saved state (its own after
        preemption, else its conversation's in the store); (None, None) when it has none."""
        if seq.saved is not None:
            tokens, data = seq.saved
            return None, SavedState(seq.key or "", tokens, None, data, 0 if data is None else len(data))
        key = seq.key
        slot = next((s for s in self.slots if s.owner is None and key and s.key == key and s.tokens), None)
        return slot, (self.store.peek(key) if slot is None and key else None)

    def cells_needed(self, seq) -> int:
        """Cells ``seq`` takes once placed: its reservation, or more where it comes back with a longer state."""
        return _cells_needed(seq, self._own_cache(seq)[1])

    def _copy(self, source: Slot, slot: Slot, n: int) -> None:
        self.ctx.remove_sequence(slot.seq_id)
        self.ctx.copy_prefix(source.seq_id, slot.seq_id, n)
        slot.tokens, slot.text = source.tokens[:n], None

    def _take(self, key: str) -> tuple[list[int], np.ndarray | None]:
        taken = self.store.take(key)
        return (taken.tokens, taken.data) if taken is not None else ([], None)

    def _restore(self, slot: Slot, tokens: list[int], data: np.ndarray | None) -> None:
        self.ctx.remove_sequence(slot.seq_id)
        slot.tokens, slot.text = [], None
        if not tokens:
            return
        restored = self._put_back(slot, tokens, data)
        if not restored and data is not None:
            # llama.cpp puts a state back into one run of free cells; streams decoding together leave
            # the free cells scattered, so give up the idle caches (saved first) and try once more.
            for other in [s for s in self.slots if s is not slot and s.owner is None and s.tokens]:
                self.evict(other)
            restored = self._put_back(slot, tokens, data)
        self.store.recycle(data)
        if restored:
            slot.tokens = list(tokens)
            self.restored += 1
            return
        self.recomputed += 1
        log.warning("a saved KV state could not be restored; its tokens are evaluated again")

    def _put_back(self, slot: Slot, tokens: list[int], data: np.ndarray | None) -> bool:
        if data is None or not self.ctx.restore_sequence(slot.seq_id, data):
            return False
        if self.ctx.last_position(slot.seq_id) == len(tokens) - 1:
            return True
        self.ctx.remove_sequence(slot.seq_id)
        return False

    def release(self, slot: Slot, text: str | None) -> None:
        """Its sequence is done: the slot keeps the cache, idle, for the conversation's next turn."""
        slot.owner, slot.text, slot.last_used, slot.saved = None, text, next(self._tick), False
        if slot.key:
            for other in self.slots:
                if other is not slot and other.key == slot.key and other.owner is None:
                    other.key = None  # an older copy of the conversation: only a prefix cache now
            self.store.discard(slot.key)

    def suspend(self, slot: Slot) -> tuple[list[int], np.ndarray | None]:
        """Save a running sequence's cache and free its slot (preemption)."""
        tokens = list(slot.tokens)
        data = self.ctx.save_sequence(slot.seq_id, self.store.buffer) if tokens else None
        self.drop(slot)
        return tokens, data

    def evict(self, slot: Slot) -> None:
        """Give up an idle slot's cells, saving a conversation's state to the store first."""
        already = slot.saved and slot.key is not None and slot.key in self.store
        if slot.key and slot.tokens and not already and (self.store.ram_bytes or self.store.spill_bytes):
            self._save(slot, slot.key)
        self.evicted += 1
        self.drop(slot)

    def _save(self, slot: Slot, key: str) -> None:
        data = self.ctx.save_sequence(slot.seq_id, self.store.buffer)
        self.store.put(SavedState(key, list(slot.tokens), slot.text, data, len(data)))

    def save_one_idle(self) -> bool:
        """While nothing runs: copy one idle conversation's cache to the store ahead of need, so
        evicting it later costs nothing on a request's way. Into free RAM within the budget; to the
        spill folder only when the context could not hold another conversation as long beside it
        (an eviction is likely), since the conversation's next turn makes the copy stale. False when
        there is nothing to do."""
        pending = [s for s in self.slots if s.owner is None and s.key and s.tokens and not s.saved]
        free = self.ctx.n_ctx - self.used_cells()
        for slot in sorted(pending, key=lambda s: s.last_used):  # the next to be evicted first
            size = self.ctx.state_size(slot.seq_id)
            if slot.key and (self.store.has_ram_room(size) or (len(slot.tokens) > free and self.store.has_room(size))):
                self._save(slot, slot.key)
                slot.saved = True
                return True
        return False

    def forget(self, key: str) -> int:
        """A conversation was deleted: empty its idle slots, keep a running one's cache under no key (it is
        never saved or spilled), and drop its saved states (``key``'s and its branches', ``key/...``).
        Returns how many caches were dropped."""
        dropped = 0
        for slot in self.slots:
            if slot.key is None or not under(slot.key, key):
                continue
            if slot.owner is None:
                self.drop(slot)
                dropped += 1
            else:
                slot.key = slot.owner.key = None
        return dropped + self.store.forget(key)

    def drop(self, slot: Slot) -> None:
        """Empty a slot without saving anything (after a failure, or when its owner leaves it empty)."""
        self.ctx.remove_sequence(slot.seq_id)
        slot.tokens, slot.text, slot.key, slot.owner, slot.saved = [], None, None, None, False

    def evict_idle(self) -> int:
        """Give up every idle slot's cells (the cache ran out of room after all); returns how many."""
        idle = [s for s in self.slots if s.owner is None and s.tokens]
        for slot in idle:
            self.evict(slot)
        return len(idle)

    def clear(self, keep_saved: bool = False) -> None:
        """Forget everything cached (no sequence may be running); the saved states too unless ``keep_saved``."""
        self.ctx.clear()
        for slot in self.slots:
            slot.tokens, slot.text, slot.key, slot.owner, slot.saved = [], None, None, None, False
        if not keep_saved:
            self.store.clear()
