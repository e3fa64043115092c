"""Questions over documents end to end: real files, the real embedder and LanceDB, the real bundled LLM."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from engine.answer import AnswerStarted, Cited, Retrieved
from engine.assistant import Assistant, ChatSettings
from engine.history.store import HistoryStore
from engine.models.bundled import BUNDLED_EMBEDDER_NAME, bundled_embedder_path
from engine.rag.library import DocumentLibrary
from engine.runtime.backend import BackendRegistry
from engine.runtime.types import SamplingParams

FACTS = {
    "lighthouse.md": "# The Skerry Light\n\nThe Skerry lighthouse keeper is named Morag Finlay. She has kept the light "
    "since 1987 and winds the clockwork lens every four hours.\n",
    "bakery.txt": "Pellow's Bakery on Harbour Street opens at six in the morning. Its rye loaf uses a starter "
    "that is forty years old.\n",
    "ferry.md": "# Ferry timetable\n\nThe island ferry leaves the mainland pier at 08:15 and 17:40 on weekdays. "
    "On Sundays there is a single crossing at noon.\n",
}


@pytest.fixture()
def setup(tmp_path, runtime):
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in FACTS.items():
        (docs / name).write_text(text, encoding="utf-8")
    library = DocumentLibrary(tmp_path / "index", bundled_embedder_path(), BUNDLED_EMBEDDER_NAME)
    assert library.index([docs]).wait(300).indexed == 3
    history = HistoryStore(tmp_path / "locus.sqlite3")
    assistant = Assistant(
        BackendRegistry.of(runtime),
        history,
        ChatSettings("You are a helpful assistant.", SamplingParams(temperature=0.0, max_tokens=80)),
        library=library,
    )
    yield assistant, history, docs
    assistant.close()
    library.close()
    history.close()


def test_answer_cites_the_one_document_that_holds_it(setup):
    assistant, history, docs = setup
    answer = assistant.ask("Who is the keeper of the Skerry lighthouse?", collections=[])
    events = list(answer.events())
    retrieved = [e for e in events if isinstance(e, Retrieved)]
    cited = [e for e in events if isinstance(e, Cited)]
    assert events[-1].complete and isinstance(events[0], AnswerStarted) and isinstance(events[1], Retrieved)
    assert events[0].kind == "doc_qa" and isinstance(events[-2], Cited)  # the sources come just before the end
    assert retrieved[0].passages[0].path == str(docs / "lighthouse.md")
    assert cited and cited[0].citations, f"no citation for: {events[-1].text!r}"
    sources = cited[0].citations
    assert {Path(c.passage.path).name for c in sources if c.supported} == {"lighthouse.md"}
    # Every passage the model was given is listed, those the answer rests on first.
    assert sorted(c.number for c in sources) == list(range(1, len(retrieved[0].passages) + 1))
    assert [c.supported for c in sources] == sorted((c.supported for c in sources), reverse=True)
    saved = history.message(answer.started.assistant_message_id)
    assert saved.status == "complete" and saved.sources[0]["path"].endswith("lighthouse.md")
    assert [s["supported"] for s in saved.sources] == [c.supported for c in sources]
    assert (saved.sources[0]["line_start"], saved.sources[0]["line_end"]) == (1, 3) and saved.sources[0]["quote"]
    # The saved question is the question, not the prompt with sources pasted in.
    assert history.message(answer.started.user_message_id).content == "Who is the keeper of the Skerry lighthouse?"


def test_an_answer_that_rests_on_no_passage_still_lists_them_all_unsupported(setup):
    assistant, history, _docs = setup
    answer = assistant.ask("Say hello to me in one short sentence.", collections=[])
    events = list(answer.events())
    given = next(e for e in events if isinstance(e, Retrieved)).passages
    assert given and events[-1].complete
    [cited] = [e for e in events if isinstance(e, Cited)]
    assert [c.passage for c in cited.citations] == list(given)  # in retrieval order, each once
    assert not any(c.supported for c in cited.citations), events[-1].text
    assert all(c.quote and c.quote in c.passage.text for c in cited.citations)
    saved = history.message(answer.started.assistant_message_id)
    assert len(saved.sources) == len(given) and not any(s["supported"] for s in saved.sources)


def test_collections_restrict_what_is_searched(setup):
    assistant, history, _docs = setup
    answer = assistant.ask("When does the ferry leave?", collections=["other"])
    events = list(answer.events())
    assert next(e for e in events if isinstance(e, Retrieved)).passages == ()
    assert history.conversation(answer.started.conversation_id).collections == ["other"]


def test_plain_chat_does_not_search(setup):
    assistant, _, _ = setup
    events = list(assistant.ask("Hello!").events())
    assert not any(isinstance(e, (Retrieved, Cited)) for e in events)


def test_a_question_elsewhere_is_not_held_up_by_a_retrieval(setup):
    """While one conversation's question waits in retrieval, ``ask`` returns at once and a question in
    another conversation is answered to its end."""
    assistant, history, _ = setup
    library = assistant.library
    entered, release = threading.Event(), threading.Event()

    def held(*args, **kwargs):  # the real retrieval, once the test lets it go on
        entered.set()
        assert release.wait(120)
        return type(library).retrieve(library, *args, **kwargs)

    library.retrieve = held
    try:
        from_documents = assistant.ask("Who is the keeper of the Skerry lighthouse?", collections=[])
        assert entered.wait(60)
        plain = assistant.ask("Say hello.")
        assert plain.wait(120).complete  # answered while the other is still in retrieval
        assert from_documents.result is None and from_documents.started is None
    finally:
        release.set()
    assert from_documents.wait(120).complete
    assert history.message(from_documents.started.assistant_message_id).sources
