"""Compaction on a real history database with the real bundled model: what is summarized, where the summary
goes, what the next prompt holds (checked in its trace), cancelling and refusing."""

from __future__ import annotations

import pytest

from engine.chat_settings import ChatSettings
from engine.compaction import SUMMARY_HEADING, compact, plan
from engine.runtime.types import SamplingParams
from engine.trace.store import TraceFilter
from engine.turns import model_turns
from tests.traced_engine import TracedEngine

GREEDY = SamplingParams(temperature=0.0, max_tokens=48, seed=3)
TURNS = [
    ("user", "My cat is called Pickle and she is nine years old."),
    ("assistant", "Pickle sounds lovely! Nine is a good age for a cat."),
    ("user", "She likes sardines more than chicken."),
    ("assistant", "Many cats love the strong smell of sardines."),
    ("user", "What should I buy her for her birthday?"),
    ("assistant", "A tin of sardines and a new scratching post would suit her."),
]


class Engine(TracedEngine):
    def __init__(self, root, model_path):
        super().__init__(root, model_path, ChatSettings("You are brief.", GREEDY))

    def conversation(self, turns=TURNS) -> int:
        cid = self.history.create_conversation().id
        for role, text in turns:
            self.history.add_message(cid, role, text)
        return cid

    def spans(self, trace_id):
        self.tracing.flush()
        return self.store.trace(trace_id)


@pytest.fixture()
def engine(tmp_path, model_path):
    e = Engine(tmp_path, model_path)
    yield e
    e.close()


def generation_prompt(engine, trace_id) -> str:
    prompts = [s.attributes["locus.prompt"] for s in engine.spans(trace_id) if "locus.prompt" in s.attributes]
    assert len(prompts) == 1
    return prompts[0]


def test_the_plan_keeps_the_last_exchange_and_summarizes_the_rest(engine):
    cid = engine.conversation()
    messages = engine.history.messages(cid)
    found = plan(messages)
    assert [m.id for m in found.summarize] == [m.id for m in messages[:4]]
    assert found.last.id == messages[3].id and found.keep.id == messages[4].id and found.originals == 4
    # One exchange alone: all of it (nothing would be left to summarize otherwise).
    single = engine.conversation(TURNS[:2])
    whole = plan(engine.history.messages(single))
    assert len(whole.summarize) == 2 and whole.keep is None
    assert plan([]) is None


def test_compaction_saves_a_summary_in_place_and_the_next_prompt_uses_it(engine):
    cid = engine.conversation()
    before = engine.history.messages(cid)
    handle = compact(
        engine.history,
        engine.runtime,
        engine.tracing,
        cid,
        sampling=GREEDY,
        backend_name="local",
        lock=engine.assistant.turns.lock(cid),
    )
    result = handle.future.result(timeout=120)
    assert result.outcome == "complete", result.error
    summary = result.summary
    assert summary.kind == "summary" and summary.role == "system" and summary.content.strip()
    assert summary.parent_id == before[3].id and result.originals == 4

    shown = engine.history.messages(cid)
    assert [m.id for m in shown] == [m.id for m in before[:4]] + [summary.id] + [m.id for m in before[4:]]
    assert engine.history.message(before[4].id).parent_id == summary.id  # the kept turns follow the summary
    assert len(engine.history.all_messages(cid)) == 7  # the originals are kept
    turns = model_turns(shown)
    assert turns[0].role == "system" and turns[0].content.startswith(SUMMARY_HEADING) and len(turns) == 3

    # The compaction is traced: a "compact" root whose generation saw the originals.
    compacted = generation_prompt(engine, result.trace_id)
    assert "Pickle" in compacted and "sardines more than chicken" in compacted
    assert engine.store.summary(result.trace_id).task == "compact"

    # The next question's prompt has the summary instead of the old turns, and the kept exchange.
    answer = engine.assistant.ask("How old is she?", cid)
    done = list(answer.events())[-1]
    assert done.complete, done
    prompt = generation_prompt(engine, done.trace_id)
    assert SUMMARY_HEADING in prompt and summary.content.strip()[:40] in prompt
    assert "She likes sardines more than chicken." not in prompt and TURNS[0][1] not in prompt
    assert TURNS[4][1] in prompt and TURNS[5][1] in prompt
    assert engine.history.messages(cid)[-2].parent_id == before[5].id


def test_a_second_compaction_summarizes_the_first_summary_and_what_followed(engine):
    cid = engine.conversation()
    first = compact(engine.history, engine.runtime, engine.tracing, cid, sampling=GREEDY).future.result(120)
    for role, text in [("user", "Thanks. Any toy ideas?"), ("assistant", "A feather wand is a classic.")]:
        engine.history.add_message(cid, role, text)
    found = plan(engine.history.messages(cid))
    assert found.summarize[0].id == first.summary.id and found.originals == 6
    second = compact(engine.history, engine.runtime, engine.tracing, cid, sampling=GREEDY).future.result(120)
    assert second.outcome == "complete" and second.summary.parent_id == found.last.id
    assert model_turns(engine.history.messages(cid))[0].content.endswith(second.summary.content)


def test_cancelling_saves_nothing_and_nothing_to_compact_is_refused_in_words(engine):
    cid = engine.conversation()
    slow = SamplingParams(temperature=0.0, max_tokens=400, seed=3)
    handle = compact(engine.history, engine.runtime, engine.tracing, cid, sampling=slow)
    handle.cancel()
    result = handle.future.result(timeout=120)
    assert result.outcome == "cancelled" and result.summary is None
    assert len(engine.history.all_messages(cid)) == 6
    engine.tracing.flush()
    assert engine.store.list_traces(TraceFilter(task="compact"))

    empty = engine.history.create_conversation().id
    refused = compact(engine.history, engine.runtime, engine.tracing, empty).future.result(timeout=30)
    assert refused.outcome == "failed" and "nothing to compact" in refused.error.user_text().lower()


def test_versions_of_the_kept_question_stay_versions_of_one_another(engine):
    cid = engine.conversation()
    before = engine.history.messages(cid)
    # Another version of the last question (an edit), then back to the first one.
    other = engine.history.add_message(cid, "user", "What toy should I buy her?", parent_id=before[3].id)
    engine.history.add_message(cid, "assistant", "A feather wand.", parent_id=other.id)
    engine.history.switch_to(before[5].id)
    result = compact(engine.history, engine.runtime, engine.tracing, cid, sampling=GREEDY).future.result(120)
    assert result.outcome == "complete", result.error
    versions = engine.history.siblings(before[4].id)
    assert [m.id for m in versions] == [before[4].id, other.id]
    assert all(m.parent_id == result.summary.id for m in versions)
    assert [m.id for m in engine.history.messages(cid)][-2:] == [before[4].id, before[5].id]  # still shown
    shown = engine.history.switch_to(other.id)
    assert [m.id for m in shown][-3:] == [result.summary.id, other.id, other.id + 1]


def test_after_compacting_a_trimmed_conversation_the_kept_turns_are_seen_again(engine):
    filler = "The ferry leaves the harbour at nine and returns before the evening tide turns. " * 18
    turns = []
    for i in range(6):
        turns += [("user", f"Note {i}: {filler}"), ("assistant", f"Noted {i}. {filler}")]
    cid = engine.conversation(turns)
    trimmed = list(engine.assistant.ask("Which note came first?", cid).events())[-1]
    assert trimmed.complete and trimmed.stats.dropped_messages > 0  # the runtime left the oldest out
    result = compact(engine.history, engine.runtime, engine.tracing, cid, sampling=GREEDY).future.result(180)
    assert result.outcome == "complete", result.error
    done = list(engine.assistant.ask("And the last one?", cid).events())[-1]
    assert done.complete and done.stats.dropped_messages == 0
    prompt = generation_prompt(engine, done.trace_id)
    assert SUMMARY_HEADING in prompt and "Which note came first?" in prompt  # the kept exchange is seen


def test_the_context_for_a_compacted_conversation_has_one_system_message(engine):
    cid = engine.conversation()
    result = compact(engine.history, engine.runtime, engine.tracing, cid, sampling=GREEDY).future.result(120)
    context = engine.assistant.context_for(cid)
    assert [m.role for m in context] == ["system", "user", "assistant"]
    assert context[0].content.startswith("You are brief.\n\n" + SUMMARY_HEADING)
    assert context[0].content.endswith(result.summary.content)
