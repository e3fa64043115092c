"""The context meter counts the next turn's prompt with the real bundled model's tokenizer and chat template."""

from __future__ import annotations

import pytest

from engine.compaction import CompactionPlan, save_summary
from engine.context_meter import ContextMeter, ContextUsage, source_budget
from engine.history.store import HistoryStore
from engine.tasks import doc_qa
from engine.turns import Turn, TurnRequest, model_turns

SYSTEM = "You are a careful assistant."
TURNS = [
    ("user", "What is the capital of Norway?"),
    ("assistant", "Oslo is the capital of Norway. It sits at the head of the Oslofjord."),
    ("user", "And its population, roughly? Über 700 000? 🙂"),
    ("assistant", "About 700,000 people live in the city itself, and over a million in the wider area."),
]


@pytest.fixture()
def history(tmp_path):
    store = HistoryStore(tmp_path / "locus.sqlite3")
    yield store
    store.close()


def conversation(history, turns=TURNS) -> int:
    cid = history.create_conversation().id
    for role, text in turns:
        history.add_message(cid, role, text)
    return cid


def next_prompt_tokens(runtime, system: str, history, cid: int) -> int:
    """What the Assistant would send for an empty next question, counted by the runtime itself."""
    turn = Turn(TurnRequest("chat", "", cid), cid, False, "", "local", runtime, None)
    turn.earlier = model_turns(history.messages(cid))
    return runtime.render_prompt(turn.context(system, None))[1]


def test_the_meter_counts_exactly_what_the_template_and_tokenizer_make(runtime, history):
    cid = conversation(history)
    meter = ContextMeter()
    usage = meter.measure(runtime, SYSTEM, history.messages(cid), max_tokens=256)
    assert usage.used == next_prompt_tokens(runtime, SYSTEM, history, cid)
    assert usage.n_ctx == 2048 and usage.room == 2048 - 256 and usage.messages == 4
    assert usage.documents == 0 and usage.history > 0 and usage.system > 0
    assert usage.level == "ok" and usage.sentence() == ""

    # Without a system prompt too (SmolLM2's template then writes its own default one).
    assert meter.measure(runtime, "", history.messages(cid)).used == next_prompt_tokens(runtime, "", history, cid)


def test_each_message_is_tokenized_once_and_the_meter_rises_with_each_turn(runtime, history):
    cid = conversation(history)
    meter = ContextMeter()
    first = meter.measure(runtime, SYSTEM, history.messages(cid))
    counted = meter.counted
    assert counted == 4
    history.add_message(cid, "user", "Which river runs through it?")
    history.add_message(cid, "assistant", "The Akerselva runs through the middle of Oslo.")
    second = meter.measure(runtime, SYSTEM, history.messages(cid))
    assert meter.counted == counted + 2  # only the new ones
    assert second.used > first.used and second.messages == 6
    assert second.used == next_prompt_tokens(runtime, SYSTEM, history, cid)


def test_documents_reserve_what_the_document_path_reserves(runtime, history):
    cid = conversation(history)
    usage = ContextMeter().measure(runtime, SYSTEM, history.messages(cid), collections=[])
    turn = Turn(TurnRequest("chat", "", cid), cid, False, "", "local", runtime, [])
    turn.earlier = model_turns(history.messages(cid))
    rules_and_example = runtime.render_prompt(doc_qa.build_messages(SYSTEM, turn.earlier, "", []))[
        1
    ] - runtime.count_tokens(doc_qa.NO_SOURCES_NOTE)
    assert abs(usage.used - (rules_and_example + source_budget(2048))) <= 2
    assert usage.documents > source_budget(2048) == min(1500, int(2048 * 0.35))


def test_a_summary_takes_the_place_of_what_it_summarizes(runtime, history):
    cid = conversation(history)
    messages = history.messages(cid)
    before = ContextMeter().measure(runtime, SYSTEM, messages)
    plan = CompactionPlan(cid, tuple(messages[:2]), messages[1], messages[2], 2)
    save_summary(history, plan, "The user asked about Oslo, the capital of Norway.")
    after = ContextMeter().measure(runtime, SYSTEM, history.messages(cid))
    assert after.summarized == 2 and after.messages == 3
    assert after.used == next_prompt_tokens(runtime, SYSTEM, history, cid)
    assert after.used < before.used


def test_levels_and_their_sentences_follow_the_prompt_room():
    room = 1000
    ok = ContextUsage(2048, room, 100, 500, 0, 4)
    warn = ContextUsage(2048, room, 100, 650, 0, 8)
    full = ContextUsage(2048, room, 100, 950, 0, 12)
    assert (ok.level, warn.level, full.level) == ("ok", "warn", "full")
    assert not ok.wants_compaction and not warn.wants_compaction and full.wants_compaction
    assert "after about 250 more tokens the oldest messages stop fitting" in warn.sentence()
    assert "no longer sees the oldest messages" in full.sentence()
    assert full.sentence().endswith("Compact the conversation to keep their gist.")
    assert "Automatic compaction summarizes the older turns after an answer" in warn.sentence(auto_compact=True)
    assert "will summarize the older turns after the next answer" in full.sentence(auto_compact=True)
    assert "Room for the prompt before the oldest messages are left out: 1,000" in full.split()


def test_the_measure_matches_a_long_conversation_near_the_limit(runtime, history):
    words = "words and more words " * 30
    long_turns = [("user" if i % 2 == 0 else "assistant", f"Message {i}: {words}") for i in range(12)]
    cid = conversation(history, long_turns)
    usage = ContextMeter().measure(runtime, SYSTEM, history.messages(cid), max_tokens=512)
    assert usage.used == next_prompt_tokens(runtime, SYSTEM, history, cid)
    assert usage.level in ("warn", "full")
