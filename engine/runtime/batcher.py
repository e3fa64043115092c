"""Iteration-level (continuous) batching: every admitted sequence advances in one llama_decode per step.

Each step puts into one batch the next token of every decoding sequence, the last token of
those that just finished (so the cache holds their whole answer), and chunks of prompts
being evaluated; then it samples every sequence that has logits at its own batch index.
A sequence joins between two steps and leaves as soon as it is done, as in Orca, vLLM and
TGI. Prompts share the batch with running streams, in chunks, so that no step runs long:
an interactive prompt is evaluated whole (up to the batch size) unless an interactive stream
is decoding; any other prompt gets at most ``prefill_chunk`` tokens a step, and none at all
while a more important prompt is being evaluated. On a CPU a step of 64 prompt tokens costs
about what 64 tokens cost in a bigger batch, so a short step loses no throughput and bounds
how long a new interactive request waits for the step in progress.
"""

from __future__ import annotations

import logging
import time

from engine.errors import EngineError, GenerationError
from engine.runtime.context import NO_ROOM, NativeContext, decode_error
from engine.runtime.sequence import DECODE, DONE, PREFILL, TRAILING, Sequence
from engine.runtime.slots import SlotTable
from engine.runtime.speculative import Speculator
from engine.runtime.types import Priority

log = logging.getLogger(__name__)


class Batcher:
    """The running sequences of one context and the decode loop over them (runtime thread only)."""

    def __init__(self, ctx: NativeContext, slots: SlotTable, *, max_active: int, prefill_chunk: int = 64):
        self.ctx = ctx
        self.slots = slots
        self.max_active = max_active
        self.prefill_chunk = max(1, prefill_chunk)
        self.active: list[Sequence] = []
        self.steps = 0  # decode calls, for tests and benchmarks
        self.speculator: Speculator | None = None  # speculative decoding, while one sequence runs alone

    @property
    def busy(self) -> bool:
        return bool(self.active)

    def admit(self, seq: Sequence) -> bool:
        """Start ``seq`` in a free slot if one (and room in the cache) is free; False if it must wait."""
        if len(self.active) >= self.max_active:
            return False
        reused = self.slots.place(seq)
        if reused is None:
            return False
        seq.started(reused, time.perf_counter())
        if seq.sampler.on_device:
            assert seq.slot is not None  # placed above
            seq.sampler.attach(self.ctx, seq.slot.seq_id)  # its chain runs in the graph for this sequence id
        self.active.append(seq)
        if reused == len(seq.target):  # resumed with its whole cache restored
            seq.prefilled(time.perf_counter())
        return True

    def victims(self, seq: Sequence) -> list[Sequence]:
        """Running sequences of lower priority than ``seq``, the first to preempt first."""
        running = [s for s in self.active if s.phase in (PREFILL, DECODE) and s.priority > seq.priority]
        return sorted(running, key=lambda s: (-s.priority, -s.request_id))

    def could_fit(self, seq: Sequence, victims: list[Sequence]) -> bool:
        """Whether ``seq`` would fit in the cache once ``victims`` gave up their cells and idle slots were evicted."""
        held = sum(s.cells for s in self.slots.slots if s.owner is not None and s.owner not in victims)
        return held + self.slots.cells_needed(seq) <= self.ctx.n_ctx

    def preempt(self, seq: Sequence) -> None:
        """Save a running sequence's cache and take it out of the batch; it resumes where it was."""
        assert seq.slot is not None  # a running sequence has its slot
        seq.sampler.detach()  # the sequence id goes to another sequence
        tokens, data = self.slots.suspend(seq.slot)
        seq.suspended(tokens, data)
        self.active.remove(seq)

    def fail_all(self, error: EngineError) -> None:
        """Fail every running sequence and forget the context's cache (after a failure outside any one
        sequence); conversations' states already saved to RAM or disk stay."""
        for seq in list(self.active):
            if seq.phase == TRAILING:  # its answer is complete: only its cache is lost
                seq.settled()
            elif seq.phase != DONE:
                seq.fail(error)
        self.active.clear()
        self.slots.clear(keep_saved=True)

    # One step ----------------------------------------------------------------------

    def step(self) -> None:
        """Cancel what was cancelled, then one llama_decode for every active sequence, then sample."""
        for seq in self.active:
            if seq.phase in (PREFILL, DECODE) and seq.cancel.is_set():
                seq.finish("cancelled")
        self._leave()
        if not self.active:
            return
        spec = self.speculator
        if spec is not None and len(self.active) == 1 and spec.step(self.active[0], self._fail):
            self.steps += 1
            self._leave()
            return
        entries = self._fill()
        if not entries:
            raise RuntimeError(f"no tokens to decode for {[(s.request_id, s.phase) for s in self.active]}")
        rc = self.ctx.decode_batch()
        if rc == NO_ROOM and self.slots.evict_idle():
            rc = self.ctx.decode_batch()  # the accounting is conservative; this is a safety net
        self.steps += 1
        if rc:
            error = decode_error(rc)
            log.warning("decode failed for %d sequences: %s", len(entries), error.detail)
            for seq, _, _ in entries:
                self._fail(seq, error)
            self._leave()
            return
        now = time.perf_counter()
        for seq, n, index in entries:
            slot = seq.slot
            assert slot is not None  # each sequence in the batch runs in its slot
            if seq.pending is not None and seq.phase in (DECODE, TRAILING):
                tok, seq.pending = seq.pending, None
                slot.tokens.append(tok)
                seq.cached(tok)
                if seq.phase == TRAILING:
                    seq.settled()
                    continue
            else:
                start = len(slot.tokens)
                slot.tokens.extend(seq.target[start : start + n])
                if len(slot.tokens) < len(seq.target):
                    continue
                seq.prefilled(now)
            if index >= 0:
                self._sample(seq, index)
        self._leave()

    def _fill(self) -> list[tuple[Sequence, int, int]]:
        """Put this step's tokens into the context's batch: (sequence, tokens added, logits index or -1)."""
        batch = self.ctx.batch
        batch.clear()
        entries = []
        prefilling = []
        protect = None  # the best priority among decoding streams
        for seq in self.active:
            slot = seq.slot
            assert slot is not None  # an active sequence has its slot
            if seq.pending is not None and seq.phase in (DECODE, TRAILING):
                want = seq.phase == DECODE
                index = batch.add_one(seq.pending, len(slot.tokens), slot.seq_id, want)
                entries.append((seq, 1, index if want else -1))
                if want and (protect is None or seq.priority < protect):
                    protect = seq.priority
            elif seq.phase == PREFILL:
                prefilling.append(seq)
        used, served = 0, None
        for seq in sorted(prefilling, key=lambda s: (s.priority, s.request_id)):
            if served is not None and seq.priority > served:
                break  # a more important prompt is being evaluated: its first token comes first
            whole = seq.priority == Priority.INTERACTIVE and (protect is None or protect > seq.priority)
            cap = batch.capacity if whole else self.prefill_chunk
            slot = seq.slot
            assert slot is not None
            start = len(slot.tokens)
            take = min(len(seq.target) - start, batch.room, cap - used)
            if take <= 0:
                continue
            last = start + take == len(seq.target) and seq.samples_after_prefill
            index = batch.add(seq.target[start : start + take], start, slot.seq_id, last)
            entries.append((seq, take, index if last else -1))
            used += take
            served = seq.priority
        return entries

    def _sample(self, seq: Sequence, index: int) -> None:
        try:
            if seq.healing is not None and seq.healing.active and seq.pieces is not None:
                # only tokens that spell the taken-back text (or start it) may come next
                self.ctx.restrict_logits(seq.healing.allowed(seq.pieces), index)
            seq.on_token(seq.sampler.sample(self.ctx, index))
        except EngineError as exc:
            self._fail(seq, exc)
        except Exception as exc:  # noqa: BLE001 - native trouble fails this sequence only
            self._fail(seq, GenerationError("Sampling failed.", detail=f"{type(exc).__name__}: {exc}"))

    def _fail(self, seq: Sequence, error: EngineError) -> None:
        if seq.phase == TRAILING:  # already answered; only its cache is lost
            seq.settled()
        elif seq.phase != DONE:
            seq.fail(error)
        if seq.slot is not None:
            self.slots.drop(seq.slot)
            seq.slot = None

    def _leave(self) -> None:
        """Sequences that are done leave the batch at once; their slots keep the cache, idle."""
        if not any(s.phase == DONE for s in self.active):
            return
        still = []
        for seq in self.active:
            if seq.phase != DONE:
                still.append(seq)
            elif seq.slot is not None:
                self.slots.release(seq.slot, seq.cache_text())
                seq.home, seq.slot = seq.slot, None
        self.active = still
