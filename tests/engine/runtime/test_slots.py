"""SlotTable.place on the real bundled model: a conversation's own cache and a shared prefix, each while
the context is too full to keep every idle conversation (so the evictions run on both paths)."""

from __future__ import annotations

import threading

import pytest

from engine.runtime.generator import Generator
from engine.runtime.types import ChatMessage, Done, GenerationRequest, ModelConfig, SamplingParams

SYSTEM = ChatMessage("system", "You are a helpful assistant.")


@pytest.fixture()
def tight(model_path):
    """A context of 256 cells (llama.cpp's smallest) shared by every slot, nothing saved to RAM."""
    generator = Generator(ModelConfig(model_path, n_ctx=256, n_parallel=2, n_batch=256, kv_ram_mb=0))
    yield generator
    generator.close()


def answer(generator: Generator, key: str, messages: list[ChatMessage]) -> Done:
    request = GenerationRequest(tuple(messages), SamplingParams(temperature=0.0, max_tokens=8), conversation_key=key)
    done = generator.generate(request, threading.Event(), lambda event: None)
    assert isinstance(done, Done), done
    return done


def cached(generator: Generator) -> dict[str | None, int]:
    return {s.key: len(s.tokens) for s in generator.slots.slots if s.tokens}


def common_prefix(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def test_own_cache_and_a_shared_prefix_are_reused_while_others_are_evicted(tight):
    river = [SYSTEM, ChatMessage("user", "Name a river.")]
    first = answer(tight, "a", river)
    answer(tight, "b", [SYSTEM, ChatMessage("user", "Name a mountain in " + "the far north " * 6)])
    kept_a = cached(tight)["a"]
    assert set(cached(tight)) == {"a", "b"} and tight.slots.evicted == 0

    # a's next turn takes its own idle slot; b's idle cache must go to make room.
    longer = [*river, ChatMessage("assistant", first.text), ChatMessage("user", "Tell me more about it " * 33)]
    second = answer(tight, "a", longer)
    assert second.stats.reused_prompt_tokens == kept_a
    assert set(cached(tight)) == {"a"} and tight.slots.evicted == 1

    # c shares a's opening: that prefix is copied from a's idle slot, which is then evicted for room.
    south = [SYSTEM, ChatMessage("user", "Name a river in " + "the far south " * 6)]
    shared = common_prefix(tight.encode(south), tight.encode(longer))
    third = answer(tight, "c", south)
    assert shared > 0 and third.stats.reused_prompt_tokens == shared
    assert set(cached(tight)) == {"c"} and tight.slots.evicted == 2
