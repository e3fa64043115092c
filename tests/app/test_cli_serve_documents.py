"""`locus serve` answering from the user's documents (Locus's extension of chat completions): a real index
made by `locus index` in a temp data folder, the real process and model, the official openai client."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request

import openai
import pytest

from tests.app.helpers import locus
from tests.app.test_cli_serve import Served
from tests.conftest import PDF_ODDITIES

pytestmark = pytest.mark.slow

FERRY = "When does the island ferry leave the pier?"
SOURCE_KEYS = {"number", "path", "title", "location", "quote", "supported", "kind", "page", "line_start", "line_end"}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A served index: 'travel' holds two notes, 'locked' only a file that cannot be read."""
    root = tmp_path_factory.mktemp("served")
    home, docs, locked = root / "home", root / "docs", root / "locked"
    docs.mkdir()
    locked.mkdir()
    (docs / "ferry.md").write_text(
        "# Ferry\n\nThe island ferry leaves the pier at 08:15 every weekday.\n", encoding="utf-8"
    )
    (docs / "garden.md").write_text(
        "# Garden\n\nTomatoes need six hours of sun a day and water every morning.\n", encoding="utf-8"
    )
    shutil.copy(PDF_ODDITIES / "r4-user-password.pdf", locked)
    for folder, collection in ((docs, "travel"), (locked, "locked")):
        done = locus(home, "index", str(folder), "--collection", collection)
        assert done.returncode in (0, 1), done.stderr
    server = Served(home, "--port", "0")
    try:
        client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=300)
        model = client.models.list().data[0].id
        yield server, client, model, docs
    finally:
        code, stderr = server.stop()
        assert code == 0, stderr
        assert "Traceback" not in stderr, stderr


def ask(client, model, question, locus_field, **options):
    return client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": question}],
        extra_body={"locus": locus_field},
        **{"temperature": 0, "max_tokens": 60, **options},
    )


def test_an_answer_from_documents_carries_every_passage_it_was_given_ranked(served):
    _server, client, model, docs = served
    reply = ask(client, model, FERRY, {"documents": True, "collections": ["travel"]})
    assert reply.choices[0].message.content.strip() and reply.usage.completion_tokens > 0
    sources = reply.model_extra["locus_sources"]  # the documented extra field, as the openai client keeps it
    assert sources and SOURCE_KEYS <= set(sources[0])
    assert sources[0]["path"] == str(docs / "ferry.md") and sources[0]["location"].startswith("line")
    assert "08:15" in sources[0]["quote"] or sources[0]["supported"] is False
    # Each passage the model was given, once, with its number from the prompt; those the answer rests on first.
    assert sorted(s["number"] for s in sources) == list(range(1, len(sources) + 1))
    assert [s["supported"] for s in sources] == sorted((s["supported"] for s in sources), reverse=True)
    assert {s["path"] for s in sources} <= {str(docs / "ferry.md"), str(docs / "garden.md")}


def test_a_streamed_answer_from_documents_sends_its_sources_in_a_last_chunk(served):
    _server, client, model, docs = served
    whole = ask(client, model, FERRY, {"documents": True})
    chunks = list(ask(client, model, FERRY, {"documents": True}, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content  # the same answer (temperature 0), streamed
    carrying = [i for i, c in enumerate(chunks) if (c.model_extra or {}).get("locus_sources") is not None]
    assert len(carrying) == 1, "the sources come once"
    [at] = carrying
    assert chunks[at].choices == [] and chunks[at - 1].choices[0].finish_reason in ("stop", "length")
    assert chunks[-1].usage is not None and at == len(chunks) - 2  # then the usage chunk, then [DONE]
    assert chunks[at].model_extra["locus_sources"] == whole.model_extra["locus_sources"]
    assert chunks[at].model_extra["locus_sources"][0]["path"] == str(docs / "ferry.md")


def test_an_answer_that_rests_on_no_passage_marks_every_source_unsupported(served):
    _server, client, model, _docs = served
    reply = ask(client, model, "Say hello to me in one short sentence.", {"documents": True})
    sources = reply.model_extra["locus_sources"]
    assert sources and not any(s["supported"] for s in sources), reply.choices[0].message.content
    assert all(s["quote"] for s in sources)


def test_the_clients_earlier_turns_and_plain_chat_still_work(served):
    _server, client, model, docs = served
    reply = client.chat.completions.create(
        model=model,
        messages=[
            {"role": "system", "content": "Answer in English."},
            {"role": "user", "content": "I am planning a trip to the island."},
            {"role": "assistant", "content": "That sounds lovely."},
            {"role": "user", "content": FERRY},
        ],
        temperature=0,
        max_tokens=8,
        extra_body={"locus": {"documents": True}},
    )
    first = next(s for s in reply.model_extra["locus_sources"] if s["number"] == 1)
    assert first["path"] == str(docs / "ferry.md")
    bare = ask(client, model, FERRY, {"documents": True}, max_tokens=8)
    # The model was given the client's earlier turns and system message too.
    assert reply.usage.prompt_tokens > bare.usage.prompt_tokens + 15
    plain = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hello!"}], temperature=0, max_tokens=8
    )
    assert "locus_sources" not in (plain.model_extra or {})  # only an answer from documents carries them
    off = ask(client, model, "Hello!", {"documents": False}, max_tokens=8)
    assert "locus_sources" not in (off.model_extra or {})


@pytest.mark.parametrize(
    ("locus_field", "param", "words"),
    [
        ("yes", "locus", "must be an object"),
        ({"documents": "yes"}, "locus.documents", "true or false"),
        ({"documents": True, "top_k": 3}, "locus.top_k", "not a field"),
        ({"collections": ["travel"]}, "locus.collections", "needs 'locus.documents': true"),
        ({"documents": True, "collections": [""]}, "locus.collections", "collection names"),
        ({"documents": True, "collections": 7}, "locus.collections", "collection names"),
    ],
)
def test_a_malformed_extension_is_a_400_that_names_it(served, locus_field, param, words):
    _server, client, model, _docs = served
    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, model, FERRY, locus_field)
    error = caught.value.body
    assert error["param"] == param and words in error["message"] and error["code"] == "invalid_extension"


def test_what_cannot_be_answered_from_documents_is_refused_with_words(served):
    server, client, model, _docs = served
    with pytest.raises(openai.NotFoundError) as unknown:
        ask(client, model, FERRY, {"documents": True, "collections": ["nope"]})
    assert unknown.value.body["code"] == "collection_not_found" and "'travel'" in unknown.value.body["message"]
    with pytest.raises(openai.BadRequestError) as empty:  # its only file could not be read: nothing indexed
        ask(client, model, FERRY, {"documents": True, "collections": ["locked"]})
    assert empty.value.body["code"] == "no_documents" and "locus index" in empty.value.body["message"]
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
    with pytest.raises(openai.BadRequestError) as tools:
        ask(client, model, FERRY, {"documents": True}, tools=[tool])
    assert tools.value.body["param"] == "tools"
    with pytest.raises(openai.BadRequestError) as completion:
        client.completions.create(model=model, prompt="Hi", extra_body={"locus": {"documents": True}})
    assert completion.value.body["param"] == "locus"
    # Raw HTTP: the error object as any client gets it.
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": FERRY}], "locus": []}).encode()
    request = urllib.request.Request(
        server.url + "/chat/completions", body, {"Content-Type": "application/json"}, method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as raw:
        urllib.request.urlopen(request, timeout=60)
    assert raw.value.code == 400 and json.loads(raw.value.read())["error"]["param"] == "locus"
