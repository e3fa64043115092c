"""The local API through the official openai client: the real bundled model and embedder on loopback."""

from __future__ import annotations

import json
import threading

import jsonschema
import numpy as np
import pytest

from engine.runtime.remote import RemoteRuntime
from engine.runtime.types import ChatMessage, Done, GenerationRequest, SamplingParams
from tests.engine.api.conftest import ENDLESS, wait_until

pytestmark = pytest.mark.slow

QUESTION = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Name three colours."},
]


def engine_answer(runtime, messages, **sampling) -> Done:
    """The same request straight through the runtime (no HTTP)."""
    request = GenerationRequest(
        messages=tuple(ChatMessage(m["role"], m["content"]) for m in messages), sampling=SamplingParams(**sampling)
    )
    done = runtime.submit(request).wait(120)
    assert isinstance(done, Done)
    return done


def test_models_lists_the_loaded_model_and_the_embedder(client, runtime, embedder):
    ids = [m.id for m in client.models.list().data]
    assert ids == [runtime.model_info.name, embedder.name]
    one = client.models.retrieve(runtime.model_info.name)  # a name with spaces, quoted in the URL
    assert one.id == runtime.model_info.name and one.owned_by == "locus"


def test_chat_completion_is_the_engines_own_answer(client, runtime, model_id):
    reply = client.chat.completions.create(model=model_id, messages=QUESTION, temperature=0, max_tokens=16)
    choice = reply.choices[0]
    direct = engine_answer(runtime, QUESTION, temperature=0.0, max_tokens=16)
    assert reply.object == "chat.completion" and reply.model == model_id
    assert choice.message.role == "assistant" and choice.message.content == direct.text
    assert choice.finish_reason == ("length" if direct.stats.finish_reason == "length" else "stop")
    assert reply.usage.prompt_tokens == direct.stats.prompt_tokens
    assert reply.usage.completion_tokens == direct.stats.completion_tokens <= 16
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_streamed_chat_sends_the_same_answer_token_by_token(client, model_id):
    whole = client.chat.completions.create(model=model_id, messages=QUESTION, temperature=0, max_tokens=16)
    chunks = list(
        client.chat.completions.create(
            model=model_id,
            messages=QUESTION,
            temperature=0,
            max_tokens=16,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 1  # streamed as it was generated, not in one piece
    assert "".join(pieces) == whole.choices[0].message.content
    finishing = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishing == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1


def test_stop_sequence_ends_the_answer_before_it(client, model_id):
    full = (
        client.chat.completions.create(model=model_id, messages=QUESTION, temperature=0, max_tokens=24)
        .choices[0]
        .message.content
    )
    words = full.split()
    assert len(words) >= 4, full
    stop = words[len(words) // 2]
    cut = client.chat.completions.create(model=model_id, messages=QUESTION, temperature=0, max_tokens=24, stop=[stop])
    assert cut.choices[0].message.content == full[: full.index(stop)]
    assert cut.choices[0].finish_reason == "stop"


def test_a_seed_makes_sampling_repeatable(client, model_id):
    story = [{"role": "user", "content": "Write one sentence about the sea."}]

    def ask(seed):
        return (
            client.chat.completions.create(model=model_id, messages=story, temperature=1.0, max_tokens=24, seed=seed)
            .choices[0]
            .message.content
        )

    first = ask(42)
    assert ask(42) == first
    assert {ask(43), ask(44)} != {first}


def test_json_schema_response_validates(client, model_id):
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer"},
            "colours": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
        },
        "required": ["name", "age", "colours"],
        "additionalProperties": False,
    }
    reply = client.chat.completions.create(
        model=model_id,
        temperature=0.7,
        seed=3,
        max_tokens=120,
        messages=[{"role": "user", "content": "Describe a person called Ada and her favourite colours as JSON."}],
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": True}},
    )
    assert reply.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(reply.choices[0].message.content), schema)


def test_json_object_response_is_an_object(client, model_id):
    reply = client.chat.completions.create(
        model=model_id,
        temperature=0,
        max_tokens=80,
        response_format={"type": "json_object"},
        messages=[{"role": "user", "content": [{"type": "text", "text": "Give a city and its country in JSON."}]}],
    )
    assert isinstance(json.loads(reply.choices[0].message.content), dict)


def test_text_completion_whole_and_streamed(client, model_id):
    whole = client.completions.create(model=model_id, prompt="The capital of France is", temperature=0, max_tokens=8)
    assert whole.object == "text_completion" and whole.choices[0].text.strip()
    assert 0 < whole.usage.completion_tokens <= 8
    streamed = list(
        client.completions.create(
            model=model_id, prompt="The capital of France is", temperature=0, max_tokens=8, stream=True
        )
    )
    assert "".join(c.choices[0].text for c in streamed) == whole.choices[0].text
    assert streamed[-1].choices[0].finish_reason == whole.choices[0].finish_reason


def test_embeddings_are_the_embedders_own(client, embedder):
    texts = ["The lighthouse keeper winds the lens.", "Rye bread needs a sourdough starter."]
    reply = client.embeddings.create(model=embedder.name, input=texts)  # the client asks for base64
    vectors = np.array([d.embedding for d in reply.data], dtype=np.float32)
    assert vectors.shape == (2, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert np.allclose(vectors, embedder.embed(texts), atol=1e-5)
    assert [d.index for d in reply.data] == [0, 1] and reply.model == embedder.name
    assert reply.usage.prompt_tokens == reply.usage.total_tokens > 10
    single = client.embeddings.create(model=embedder.name, input=texts[0], encoding_format="float")
    assert np.allclose(single.data[0].embedding, vectors[0], atol=1e-5)


def test_requests_are_answered_while_another_streams(api, client, model_id):
    """The server hands requests to the runtime's queue; it does not hold one back behind another."""
    stream = client.chat.completions.create(
        model=model_id,
        messages=[{"role": "user", "content": "Sing."}],
        max_tokens=1500,
        stream=True,
        extra_body={"grammar": ENDLESS},
    )
    chunks = iter(stream)
    assert next(chunks).choices[0].delta.role == "assistant" and next(chunks).choices[0].delta.content
    assert next(m.id for m in client.models.list().data) == model_id  # answered mid-stream
    result = {}
    waiting = threading.Thread(
        target=lambda: result.setdefault(
            "reply", client.chat.completions.create(model=model_id, messages=QUESTION, temperature=0, max_tokens=8)
        )
    )
    waiting.start()
    wait_until(lambda: api.active_requests == 2)  # both in the runtime: one generating, one queued
    stream.close()  # hanging up cancels the endless answer, and the queued one runs
    waiting.join(120)
    assert result["reply"].choices[0].message.content


def test_locus_remote_runtime_can_use_the_api(api, model_id, runtime):
    """Locus as a client of another Locus: the wire format both sides speak, grammar included."""
    remote = RemoteRuntime(api.url, model=model_id, grammar_field="grammar")
    try:
        info = remote.connect()
        assert info.n_ctx == runtime.model_info.n_ctx
        request = GenerationRequest(
            messages=(ChatMessage("user", "Is the sky blue? Answer yes or no."),),
            sampling=SamplingParams(temperature=0.0, max_tokens=4),
            grammar='root ::= "yes" | "no"',
        )
        done = remote.submit(request).wait(120)
        assert isinstance(done, Done) and done.text in ("yes", "no")
    finally:
        remote.shutdown()
