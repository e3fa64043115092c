"""Assistants (presets), projects, pins and copies of conversations, on a real history database; the
answers on the real bundled model, their prompts read back from a real trace store."""

from __future__ import annotations

import pytest

from engine.assistant import ChatSettings
from engine.assistants import BUILTINS, Assistants, prompt_digest
from engine.errors import InvalidRequestError, NotFoundError
from engine.history.projects import Projects
from engine.history.store import HistoryStore
from engine.runtime.types import SamplingParams
from engine.trace.reading import trace_content
from tests.traced_engine import TracedEngine

SETTINGS_PROMPT = "You are brief."


@pytest.fixture()
def history(tmp_path):
    store = HistoryStore(tmp_path / "locus.sqlite3")
    yield store
    store.close()


@pytest.fixture()
def presets(history):
    return Assistants(history)


@pytest.fixture()
def projects(history):
    return Projects(history)


# Assistants ---------------------------------------------------------------------------------


def test_builtins_ship_and_can_be_edited_and_reset(presets):
    names = [p.name for p in presets.all()]
    assert names[:3] == ["Writing editor", "Code reviewer", "Research with my documents"]
    research = presets.get("builtin-research-documents")
    assert research.builtin and research.collections == []  # all documents
    assert not presets.is_edited(research.id)

    edited = presets.save(research.__class__(**{**research.__dict__, "system_prompt": "Only cite."}))
    assert presets.get(research.id).system_prompt == "Only cite." and edited.builtin
    assert presets.is_edited(research.id)
    assert [p.id for p in presets.all()][:3] == [p.id for p in BUILTINS]  # still in shipped order, once

    with pytest.raises(InvalidRequestError, match="cannot be deleted"):
        presets.delete(research.id)
    assert presets.reset(research.id) == research
    assert presets.get(research.id).system_prompt == research.system_prompt
    with pytest.raises(InvalidRequestError):
        presets.reset("custom-nope")


def test_custom_assistants_are_created_duplicated_and_deleted(presets, history):
    made = presets.create(
        "  Pirate <b>voice</b>  ",
        "Talk like a pirate & <i>never</i> break character.",
        model="some-model.gguf",
        sampling={"temperature": 0.9, "max_tokens": 64},
        collections=["notes"],
        tools=["calculator"],
        templates=["summarize"],
    )
    assert made.id.startswith("custom-") and not made.builtin
    got = presets.get(made.id)
    assert got.name == "Pirate <b>voice</b>"  # kept as typed (shown as plain text), spaces tidied
    assert got.system_prompt == "Talk like a pirate & <i>never</i> break character."
    assert (got.model, got.sampling, got.collections, got.tools, got.templates) == (
        "some-model.gguf",
        {"temperature": 0.9, "max_tokens": 64},
        ["notes"],
        ["calculator"],
        ["summarize"],
    )
    copy = presets.duplicate(made.id)
    assert copy.id != made.id and copy.name == "Pirate <b>voice</b> (copy)"
    assert copy.system_prompt == made.system_prompt and copy.sampling == made.sampling
    assert presets.duplicate("builtin-code-reviewer").builtin is False

    conversation = history.create_conversation("Arr")
    presets.choose(conversation.id, made.id)
    assert history.conversation(conversation.id).assistant_id == made.id
    presets.delete(made.id)
    assert history.conversation(conversation.id).assistant_id is None  # back to none
    assert presets.of_conversation(conversation.id) is None
    with pytest.raises(NotFoundError):
        presets.get(made.id)
    with pytest.raises(NotFoundError):
        presets.delete(made.id)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "   "}, "needs a name"),
        ({"sampling": {"temperature": 9.0}}, "temperature"),
        ({"sampling": {"stop": ["x"]}}, "Unknown sampling setting 'stop'"),
        ({"tools": "calculator"}, "list of names"),
        ({"model": "   "}, "model"),
    ],
)
def test_bad_assistants_are_refused_with_the_reason(presets, change, message):
    args = {"name": "Fine", "system_prompt": "Be fine.", **change}
    with pytest.raises(InvalidRequestError, match=message):
        presets.create(args.pop("name"), args.pop("system_prompt"), **args)
    assert [p for p in presets.all() if not p.builtin] == []


def test_choosing_an_assistant_sets_its_documents_and_tools_on_the_conversation(presets, history):
    conversation = history.create_conversation("Reading")
    presets.choose(conversation.id, "builtin-research-documents")
    saved = history.conversation(conversation.id)
    assert saved.assistant_id == "builtin-research-documents" and saved.collections == []
    history.set_options(conversation.id, collections=["work"])  # the user narrows it afterwards
    presets.choose(conversation.id, "builtin-code-reviewer")  # no documents of its own: leaves them
    assert history.conversation(conversation.id).collections == ["work"]
    presets.choose(conversation.id, None)
    assert history.conversation(conversation.id).assistant_id is None


# Answers with an assistant (the real model, a real trace store) -------------------------------


class Traced(TracedEngine):
    def __init__(self, root, model_path):
        settings = ChatSettings(SETTINGS_PROMPT, SamplingParams(seed=1, temperature=0.0, max_tokens=12))
        super().__init__(root, model_path, settings, save_interval_s=0.05)
        self.presets = Assistants(self.history)

    def prompt_of(self, trace_id: str) -> str:
        self.tracing.flush()
        return trace_content(self.store.trace(trace_id)).prompt or ""


@pytest.fixture()
def traced(tmp_path, model_path):
    t = Traced(tmp_path, model_path)
    yield t
    t.close()


def test_the_conversations_assistant_sets_the_prompt_and_sampling_and_is_recorded(traced):
    reviewer = traced.presets.get("builtin-code-reviewer")
    plain = traced.assistant.ask("Say hi.")
    done = plain.wait(120)
    assert done.complete, done
    conversation = plain.started.conversation_id
    assert SETTINGS_PROMPT in traced.prompt_of(done.trace_id)
    first = traced.history.message(plain.started.assistant_message_id).answered_by
    assert first["assistant"] is None and first["system_prompt"] == prompt_digest(SETTINGS_PROMPT)

    traced.presets.choose(conversation, reviewer.id)
    second = traced.assistant.ask("Is x = x + 1 fine?", conversation)
    done = second.wait(120)
    assert done.complete, done
    prompt = traced.prompt_of(done.trace_id)
    assert reviewer.system_prompt in prompt and SETTINGS_PROMPT not in prompt
    record = traced.history.message(second.started.assistant_message_id).answered_by
    assert record == {
        "assistant": reviewer.id,
        "name": "Code reviewer",
        "model": traced.runtime.model_info.name,
        "sampling": {
            "temperature": 0.2,
            "top_p": 0.95,
            "top_k": 40,
            "min_p": 0.05,
            "repeat_penalty": 1.1,
            "max_tokens": 12,
        },
        "system_prompt": prompt_digest(reviewer.system_prompt),
    }
    # What the model will see next starts with the assistant's prompt too.
    assert traced.assistant.context_for(conversation)[0].content == reviewer.system_prompt
    # The earlier answer keeps its own record.
    assert traced.history.message(plain.started.assistant_message_id).answered_by == first


def test_an_assistant_chosen_with_the_first_question_is_saved_and_the_request_sampling_wins(traced):
    editor = traced.presets.create("Terse", "Answer in one word.", sampling={"temperature": 1.5, "max_tokens": 30})
    answer = traced.assistant.ask("Colour of the sky?", assistant=editor.id, sampling=SamplingParams(max_tokens=5))
    done = answer.wait(120)
    assert done.complete, done
    conversation = traced.history.conversation(answer.started.conversation_id)
    assert conversation.assistant_id == editor.id
    record = traced.history.message(answer.started.assistant_message_id).answered_by
    assert record["assistant"] == editor.id and record["sampling"]["max_tokens"] == 5  # the request's own
    assert "Answer in one word." in traced.prompt_of(done.trace_id)

    regenerated = traced.assistant.regenerate(conversation.id)  # the conversation's assistant again
    done = regenerated.wait(120)
    again = traced.history.message(regenerated.started.assistant_message_id).answered_by
    assert again["assistant"] == editor.id and again["sampling"]["temperature"] == 1.5
    assert again["sampling"]["max_tokens"] == 30


def test_an_assistant_wanting_another_model_answers_with_the_loaded_one_and_says_so(traced):
    other = traced.presets.create("Big brain", "Think hard.", model="qwen3-32b-q4_k_m.gguf")
    answer = traced.assistant.ask("Hello?", assistant=other.id)
    done = answer.wait(120)
    assert done.complete, done
    record = traced.history.message(answer.started.assistant_message_id).answered_by
    assert record["model"] == traced.runtime.model_info.name
    assert record["model_wanted"] == "qwen3-32b-q4_k_m.gguf"
    loaded = traced.presets.create("Same", "x", model=traced.runtime.model_info.path)
    assert not loaded.wants_other_model(traced.runtime.model_info)


def test_an_unknown_assistant_refuses_the_answer_and_saves_nothing(traced):
    answer = traced.assistant.ask("Hello?", assistant="custom-gone")
    done = answer.wait(60)
    assert done.failed and isinstance(done.error, NotFoundError)
    assert traced.history.conversations() == []


# Projects, pins, copies -----------------------------------------------------------------------


def test_projects_group_conversations_and_set_defaults(projects, history, presets):
    work = projects.create("Work", assistant_id="builtin-code-reviewer", collections=["repo"])
    home = projects.create("  Home  ")
    assert [p.name for p in projects.all()] == ["Work", "Home"]
    assert (work.assistant_id, work.collections) == ("builtin-code-reviewer", ["repo"])
    assert projects.rename(home.id, "House").name == "House"
    changed = projects.set_defaults(home.id, assistant_id="builtin-writing-editor", collections=[])
    assert (changed.assistant_id, changed.collections) == ("builtin-writing-editor", [])
    with pytest.raises(InvalidRequestError):
        projects.rename(home.id, " ")
    with pytest.raises(NotFoundError):
        projects.rename(999, "x")

    a, b, c = (history.create_conversation(t) for t in ("alpha notes", "beta notes", "gamma notes"))
    projects.move(a.id, work.id)
    projects.move(b.id, work.id)
    assert history.conversation(a.id).project_id == work.id
    assert projects.conversation_ids(work.id) == [a.id, b.id]
    projects.move(b.id, None)
    assert history.conversation(b.id).project_id is None
    with pytest.raises(NotFoundError):
        projects.move(c.id, 999)

    history.add_message(a.id, "user", "the quarterly roadmap")
    history.add_message(c.id, "user", "the quarterly garden plan")
    assert {h.conversation.id for h in projects.search("quarterly")} == {a.id, c.id}
    assert [h.conversation.id for h in projects.search("quarterly", work.id)] == [a.id]
    assert [h.conversation.id for h in projects.search("quarterly", None)] == [c.id]  # in no project

    deleted = projects.delete(work.id)
    assert deleted.moved_out == 1 and deleted.deleted == 0 and "kept" in deleted.describe()
    assert history.conversation(a.id).project_id is None and history.messages(a.id)
    assert [p.name for p in projects.all()] == ["House"]


def test_pinned_conversations_come_first(projects, history):
    old, middle, _new = (history.create_conversation(t) for t in ("old", "middle", "new"))
    history.add_message(old.id, "user", "active again")  # the most recently active now
    assert [c.title for c in projects.listed()] == ["old", "new", "middle"]
    assert projects.pin(middle.id).pinned
    assert [c.title for c in projects.listed()] == ["middle", "old", "new"]
    assert history.conversation(middle.id).pinned
    projects.pin(middle.id, False)
    assert [c.title for c in projects.listed()] == ["old", "new", "middle"]
    with pytest.raises(NotFoundError):
        projects.pin(999)


def test_duplicate_copies_the_whole_tree_and_its_settings(projects, history, presets):
    project = projects.create("Trips")
    original = history.create_conversation("Lisbon")
    history.set_options(original.id, collections=["travel"], backend="local", tools=["calculator"])
    presets.choose(original.id, "builtin-writing-editor")
    projects.move(original.id, project.id)
    projects.pin(original.id)
    q1 = history.add_message(original.id, "user", "Where to eat?")
    a1 = history.add_message(original.id, "assistant", "Try the bifana stall.")
    history.update_message(a1.id, stats={"completion_tokens": 5}, sources=[{"number": 1, "title": "guide"}])
    # A second branch: the question edited, answered again.
    q2 = history.add_message(original.id, "user", "Where to eat fish?", parent_id=None)
    history.add_message(original.id, "assistant", "Grilled sardines at the port.")
    history.switch_to(a1.id)  # the first branch is the one shown

    copy = projects.duplicate(original.id)
    assert copy.id != original.id and copy.title == "Lisbon (copy)"
    assert (copy.collections, copy.backend, copy.tools, copy.assistant_id, copy.project_id, copy.pinned) == (
        ["travel"],
        "local",
        ["calculator"],
        "builtin-writing-editor",
        project.id,
        True,
    )

    def shape(conversation_id):
        messages = history.all_messages(conversation_id)
        index = {m.id: i for i, m in enumerate(messages)}
        return [
            (m.role, m.content, m.status, m.stats, m.sources, index.get(m.parent_id) if m.parent_id else None)
            for m in messages
        ]

    assert shape(copy.id) == shape(original.id)
    assert len(history.all_messages(copy.id)) == 4
    assert [m.content for m in history.messages(copy.id)] == ["Where to eat?", "Try the bifana stall."]
    assert not {m.id for m in history.all_messages(copy.id)} & {q1.id, q2.id, a1.id}
    assert {h.conversation.id for h in history.search("sardines")} == {original.id, copy.id}  # indexed too
    # The copy is independent: deleting the original leaves it whole.
    history.delete_conversation(original.id)
    assert len(history.all_messages(copy.id)) == 4
    with pytest.raises(NotFoundError):
        projects.duplicate(original.id)
