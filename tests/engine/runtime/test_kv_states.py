"""KV states across conversations: kept in the context, saved to RAM within a budget, spilled to
disk, and put back so a returning conversation does not evaluate its history again."""

from __future__ import annotations

import threading
import time

import pytest

from engine.runtime.generator import Generator
from engine.runtime.kv_states import KvStateStore, SavedState
from engine.runtime.runtime import Runtime
from engine.runtime.types import ChatMessage, Done, GenerationRequest, ModelConfig, SamplingParams

SYSTEM = ChatMessage("system", "You are a helpful assistant.")


class Conversation:
    """A conversation's messages and its turns through a generator or a runtime (greedy)."""

    def __init__(self, key: str, first: str):
        self.key = key
        self.messages = [SYSTEM, ChatMessage("user", first)]
        self.turns: list[Done] = []

    def request(self, max_tokens: int) -> GenerationRequest:
        return GenerationRequest(
            tuple(self.messages), SamplingParams(temperature=0.0, max_tokens=max_tokens), conversation_key=self.key
        )

    def answered(self, done: Done, follow_up: str | None) -> Done:
        self.turns.append(done)
        self.messages.append(ChatMessage("assistant", done.text))
        if follow_up:
            self.messages.append(ChatMessage("user", follow_up))
        return done

    def turn(self, gen: Generator, follow_up: str | None = None, max_tokens: int = 40) -> Done:
        return self.answered(gen.generate(self.request(max_tokens), threading.Event(), lambda e: None), follow_up)

    def previous_length(self) -> int:
        """What the last turn left in the cache: its prompt and its answer."""
        last = self.turns[-1].stats
        return last.prompt_tokens + last.completion_tokens


def test_switching_back_to_a_conversation_reuses_its_whole_history(runtime):
    a = Conversation("conversation:1", "Name a large river.")
    b = Conversation("conversation:2", "Name a tall mountain.")
    for conv, follow_up in ((a, "How long is it?"), (b, "How high is it?")):
        conv.answered(runtime.submit(conv.request(30)).wait(60), follow_up)
    for conv in (a, b):  # back to a after b ran, then back to b
        expected = conv.previous_length()
        done = conv.answered(runtime.submit(conv.request(30)).wait(60), None)
        assert done.stats.reused_prompt_tokens == expected
        assert done.stats.prompt_tokens > expected


def pressure(model_path, **config) -> Generator:
    """A generator whose cache holds about one conversation: the next one pushes the idle one out."""
    return Generator(ModelConfig(model_path, n_ctx=256, n_parallel=1, **config))


def interleaved(gen: Generator, long_turn: bool) -> tuple[Conversation, Done]:
    """Conversation a's first turn, then (if long_turn) another conversation that needs the whole
    cache, then a's second turn; returns a and its second turn."""
    a = Conversation("conversation:a", "Name a large river.")
    a.turn(gen, "How long is it?")
    if long_turn:
        b = Conversation("conversation:b", "Write a long story about the sea.")
        b.turn(gen, None, max_tokens=200)  # its prompt plus 200 cells leave no room for a's
    return a, a.turn(gen, None)


@pytest.fixture(scope="module")
def undisturbed(model_path):
    """Conversation a's second turn with its history resident all along."""
    gen = pressure(model_path)
    try:
        a, second = interleaved(gen, long_turn=False)
        return a.turns[0], second
    finally:
        gen.close()


def test_a_state_evicted_to_ram_comes_back_with_the_same_answer(model_path, undisturbed):
    first, expected = undisturbed
    gen = pressure(model_path)
    try:
        a, second = interleaved(gen, long_turn=True)
        assert gen.slots.evicted >= 1 and gen.slots.restored == 1
        assert gen.store.restored_from_disk == 0
    finally:
        gen.close()
    assert a.turns[0].text == first.text
    assert second.stats.reused_prompt_tokens == first.stats.prompt_tokens + first.stats.completion_tokens
    assert second.text == expected.text  # the restored cache is the cache it was


def test_a_state_spilled_to_disk_comes_back_with_the_same_answer(model_path, undisturbed, tmp_path):
    first, expected = undisturbed
    gen = pressure(model_path, kv_ram_mb=0, kv_spill_dir=str(tmp_path / "spill"))
    try:
        _a, second = interleaved(gen, long_turn=True)
        assert gen.store.spilled >= 1 and gen.store.restored_from_disk == 1
        assert gen.slots.restored == 1
        gen.store.flush()
        folder = next((tmp_path / "spill").iterdir())
        assert len(list(folder.iterdir())) == 1  # b's state is on disk now; a's file went when it came back
    finally:
        gen.close()
    assert not any((tmp_path / "spill").iterdir())  # closing removes the spill folder
    assert second.stats.reused_prompt_tokens == first.stats.prompt_tokens + first.stats.completion_tokens
    assert second.text == expected.text


def test_without_a_saved_state_the_history_is_evaluated_again_and_says_so(model_path, undisturbed):
    first, _ = undisturbed
    gen = pressure(model_path, kv_ram_mb=0)  # no RAM, no spill folder: evicted states are dropped
    try:
        _a, second = interleaved(gen, long_turn=True)
        assert gen.slots.evicted >= 1 and gen.slots.restored == 0 and "conversation:a" not in gen.store
    finally:
        gen.close()
    # Only the system prompt it shares with the other conversation is reused.
    assert second.stats.reused_prompt_tokens < first.stats.prompt_tokens
    assert second.stats.finish_reason in ("stop", "length") and second.text


def state(key: str, nbytes: int) -> SavedState:
    return SavedState(key, [1, 2, 3], "abc", bytearray(b"x" * nbytes), nbytes)


def test_the_ram_budget_keeps_the_most_recent_states_and_spills_the_rest(tmp_path):
    store = KvStateStore(ram_bytes=250, spill_dir=tmp_path, spill_bytes=250)
    for key in ("a", "b", "c"):
        store.put(state(key, 100))
    store.flush()
    assert store.ram_used == 200 and store.disk_used == 100 and store.spilled == 1
    assert "a" in store and store.peek("a").data is None  # the oldest went to disk, its tokens stay known
    assert len(list(next(tmp_path.iterdir()).iterdir())) == 1
    store.put(state("d", 100))
    assert store.disk_used == 200 and store.dropped == 0  # b followed a to disk
    store.put(state("e", 100))
    assert store.dropped == 1 and "a" not in store and store.disk_used == 200  # c pushed a off the disk
    store.flush()
    back = store.take("b")
    assert back is not None and bytes(back.data) == b"x" * 100 and store.restored_from_disk == 1
    assert "b" not in store and store.take("b") is None
    assert len(list(next(tmp_path.iterdir()).iterdir())) == 1  # c's file; a's was dropped, b's read back
    store.close()
    assert not any(tmp_path.iterdir())


def test_a_state_taken_back_while_its_file_is_written_comes_from_memory_and_leaves_no_file(tmp_path):
    store = KvStateStore(ram_bytes=0, spill_dir=tmp_path, spill_bytes=10**9)
    big = state("big", 50_000_000)  # long enough to write that taking it back races the writer
    store.put(big)
    back = store.take("big")
    assert back is not None and len(back.data) == 50_000_000
    store.flush()
    assert not any(next(tmp_path.iterdir()).iterdir())
    store.close()


def test_a_state_larger_than_ram_goes_straight_to_disk_and_stale_ones_are_discarded(tmp_path):
    store = KvStateStore(ram_bytes=50, spill_dir=tmp_path, spill_bytes=1000)
    store.put(state("big", 100))
    assert store.ram_used == 0 and store.disk_used == 100
    store.put(state("big", 40))  # a newer turn of the same conversation replaces it
    assert store.ram_used == 40 and store.disk_used == 0
    store.discard("big")
    assert "big" not in store and store.ram_used == 0
    store.close()


def test_a_runtime_serves_many_conversations_with_a_small_cache(model_path, tmp_path):
    """Eight conversations take turns in a cache that holds a few of them: states go to RAM (room for
    about one) and to disk and come back, and every second turn reuses its whole first turn."""
    rt = Runtime()
    rt.load(ModelConfig(model_path, n_ctx=256, n_parallel=2, kv_ram_mb=2, kv_spill_dir=str(tmp_path))).result(60)
    try:
        convs = [Conversation(f"conversation:{i}", f"Name a city in country number {i}.") for i in range(8)]
        for conv in convs:
            conv.answered(rt.submit(conv.request(24)).wait(60), "Why is it known?")
        for conv in convs:
            expected = conv.previous_length()
            done = conv.answered(rt.submit(conv.request(24)).wait(60), None)
            assert done.stats.reused_prompt_tokens == expected, conv.key
        store = rt.generator.store
        assert store.spilled > 0 and store.restored_from_disk > 0
    finally:
        rt.shutdown()


def test_spill_folders_left_by_ended_processes_are_removed_and_live_ones_kept(tmp_path):
    import os
    import subprocess
    import sys

    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    orphan = tmp_path / f"kv-{ended.stdout.strip()}-abc"  # a process that crashed with states on disk
    orphan.mkdir()
    (orphan / "0.kv").write_bytes(b"x" * 10)
    live = tmp_path / f"kv-{os.getppid()}-def"  # another running engine's folder (our parent is alive)
    live.mkdir()
    store = KvStateStore(ram_bytes=0, spill_dir=tmp_path, spill_bytes=1000)
    try:
        assert not orphan.exists() and live.exists()
        own = [p for p in tmp_path.iterdir() if p.name.startswith(f"kv-{os.getpid()}-")]
        assert len(own) == 1
    finally:
        store.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name]


def test_spare_buffers_stay_within_the_ram_budget():
    import numpy as np

    store = KvStateStore(ram_bytes=1000)
    store.recycle(np.zeros(600, dtype=np.uint8))
    store.recycle(np.zeros(300, dtype=np.uint8))
    assert sorted(store.spare_sizes()) == [300, 600]
    store.put(state("a", 200))  # states come first: the smaller spare goes
    store.recycle(np.zeros(100, dtype=np.uint8))
    assert sum(store.spare_sizes()) + store.ram_used <= 1000
    none = KvStateStore(ram_bytes=0)  # no conversation cache: no buffers kept either
    none.recycle(np.zeros(10, dtype=np.uint8))
    assert none.spare_sizes() == []


def test_a_save_takes_whichever_spare_buffer_fits_and_counts_all_of_it():
    import numpy as np

    store = KvStateStore(ram_bytes=2000)
    small, large = np.zeros(100, dtype=np.uint8), np.zeros(1400, dtype=np.uint8)
    store.recycle(small)
    store.recycle(large)
    got = store.buffer(1000)  # the larger spare, behind the smaller one in the list
    assert got is large and store.spare_sizes() == [len(small)]
    store.put(SavedState("a", [1, 2], None, got[:1000], 1000))
    assert store.ram_used == 1400  # the view keeps the whole buffer alive: all of it counts
    assert store.ram_used + sum(store.spare_sizes()) <= 2000
    store.put(SavedState("b", [3], None, np.zeros(550, dtype=np.uint8), 550))
    assert store.spare_sizes() == []  # a new state comes before a spare buffer
    assert store.take("a").nbytes == 1000 and store.ram_used == 550


def test_a_runtime_saves_into_a_spare_buffer_of_any_place_and_keeps_serving(model_path):
    """Restores of different sizes leave spare buffers [small, fitting]: the next save takes the
    second (an element-wise comparison of arrays once broke that and stopped the runtime thread)."""
    import numpy as np

    rt = Runtime()
    rt.load(ModelConfig(model_path, n_ctx=1024, n_parallel=1, kv_ram_mb=64)).result(60)
    try:
        first = Conversation("conversation:a", "Say hi.")
        first.answered(rt.submit(first.request(8)).wait(60), None)
        store = rt.generator.store
        deadline = time.monotonic() + 10
        while "conversation:a" not in store and time.monotonic() < deadline:
            time.sleep(0.05)  # the idle runtime copies it to RAM, then waits for work
        size = store.peek("conversation:a").nbytes
        store.recycle(np.zeros(16, dtype=np.uint8))
        store.recycle(np.zeros(size + 64, dtype=np.uint8))
        for key in ("conversation:b", "conversation:c"):
            conv = Conversation(key, "Say hi.")
            assert isinstance(conv.answered(rt.submit(conv.request(8)).wait(60), None), Done)
        assert rt.diagnostics().thread_alive
    finally:
        rt.shutdown()


def test_a_state_whose_file_cannot_be_written_is_given_up_and_holds_no_memory(tmp_path):
    import shutil

    store = KvStateStore(ram_bytes=0, spill_dir=tmp_path, spill_bytes=1000)
    shutil.rmtree(store.folder)  # the spill folder is gone (removed by a cleaner, a disk unmounted)
    store.put(state("a", 100))
    store.flush()
    lost = store.peek("a")
    assert lost.data is None and lost.path is None
    assert store.take("a") is None and "a" not in store and store.disk_used == 0
    store.close()


def test_idle_conversations_are_copied_ahead_to_disk_only_when_an_eviction_is_likely(model_path, tmp_path):
    """Without a RAM budget, idle time copies a short conversation nowhere (a copy on disk would be
    stale after its next turn), but spills one that leaves no room for another as long; with a RAM
    budget the idle conversation is in RAM before anything needs its cells."""
    cases = (
        ("Name a colour.", 16, 0, None),
        ("Write a long story about the sea.", 120, 0, "disk"),
        ("Name a colour.", 16, 64, "ram"),
    )
    for i, (question, tokens, ram_mb, expected) in enumerate(cases):
        rt = Runtime()
        rt.load(
            ModelConfig(model_path, n_ctx=256, n_parallel=1, kv_ram_mb=ram_mb, kv_spill_dir=str(tmp_path / str(i)))
        ).result(60)
        try:
            conv = Conversation("conversation:idle", question)
            done = conv.answered(rt.submit(conv.request(tokens)).wait(60), None)
            assert done.stats.completion_tokens == tokens or expected is None
            store = rt.generator.store
            deadline = time.monotonic() + 10
            while expected and "conversation:idle" not in store and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.3)  # the runtime is idle: it would have copied by now
            store.flush()
            where = None if "conversation:idle" not in store else "disk" if store.spilled else "ram"
            assert where == expected, (question, ram_mb)
        finally:
            rt.shutdown()


def test_a_failed_step_keeps_the_conversations_already_saved(model_path):
    from engine.errors import GenerationError

    gen = Generator(ModelConfig(model_path, n_ctx=512, n_parallel=1))
    try:
        conv = Conversation("conversation:kept", "Name a colour.")
        conv.turn(gen, None, max_tokens=8)
        assert gen.slots.save_one_idle() and "conversation:kept" in gen.store
        gen.batcher.fail_all(GenerationError("decode failed"))
        assert "conversation:kept" in gen.store and gen.slots.used_cells() == 0
    finally:
        gen.close()


def test_a_mixed_load_ends_every_request_within_the_budgets_and_leaves_the_cache_consistent(model_path, tmp_path):
    """Forty requests over six conversations at every priority, of random lengths, a fifth of them
    cancelled at random moments, on three places with small RAM and disk budgets (fixed seed)."""
    import random

    from engine.runtime.types import Failed, Priority

    rng = random.Random(11)
    rt = Runtime()
    rt.load(
        ModelConfig(model_path, n_ctx=1024, n_parallel=3, kv_ram_mb=12, kv_spill_dir=str(tmp_path), kv_spill_mb=4)
    ).result(60)
    gen = rt.generator
    try:
        histories = {k: [ChatMessage("system", "You are terse.")] for k in range(6)}
        handles, timers, peak = [], [], [0]
        for i in range(40):
            k = rng.randrange(6)
            question = ChatMessage("user", f"Tell me about number {i} " + "and more " * rng.randrange(60))
            request = GenerationRequest(
                tuple(histories[k] + [question]),
                SamplingParams(max_tokens=rng.choice([8, 32, 96, 200]), temperature=0.7, seed=i),
                conversation_key=f"conversation:{k}" if rng.random() < 0.8 else None,
                priority=rng.choice(list(Priority)),
            )
            handle = rt.submit(request, lambda e: peak.__setitem__(0, max(peak[0], gen.store.held_in_ram())))
            handles.append(handle)
            if rng.random() < 0.2:
                timers.append(threading.Timer(rng.random() * 0.5, handle.cancel))
                timers[-1].start()
            time.sleep(rng.random() * 0.05)
        results = [h.wait(120) for h in handles]
        assert all(isinstance(r, Done) for r in results), [r for r in results if not isinstance(r, Done)]
        assert any(r.stats.finish_reason == "cancelled" for r in results)
        assert not any(isinstance(r, Failed) for r in results)
        time.sleep(0.5)  # the idle runtime copies conversations ahead
        store, slots = gen.store, gen.slots
        store.flush()
        assert slots.evicted > 0 and slots.restored > 0 and slots.recomputed == 0
        assert peak[0] <= store.ram_bytes and store.held_in_ram() <= store.ram_bytes
        assert store.ram_used <= store.ram_bytes and store.disk_used <= store.spill_bytes
        for slot in slots.slots:  # each slot's tokens are exactly what llama.cpp holds for its sequence
            assert gen.ctx.last_position(slot.seq_id) == len(slot.tokens) - 1
        assert slots.used_cells() <= gen.ctx.n_ctx and rt.queue_length == 0
    finally:
        for timer in timers:
            timer.cancel()
        rt.shutdown()
    assert not any(tmp_path.iterdir())  # the spill folder is gone with the runtime
