"""Locus's extension of chat completions read from a request body (engine/api/extension.py): what the
answer from documents is given, and each malformed value refused with the field's name."""

from __future__ import annotations

import pytest

from engine.api.calls import parse_chat, parse_completion
from engine.api.errors import ApiError
from engine.runtime.types import ChatMessage

QUESTION = [{"role": "user", "content": "Which file says so?"}]


def body(locus, messages=None, **extra) -> dict:
    return {"model": "m", "messages": messages or QUESTION, "locus": locus, **extra}


def test_the_question_earlier_turns_and_system_prompt_of_an_answer_from_documents():
    call = parse_chat(
        body(
            {"documents": True, "collections": "travel"},
            [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "I plan a trip."},
                {"role": "assistant", "content": "Nice."},
                {"role": "developer", "content": "Answer in English."},
                {"role": "user", "content": "When does the ferry leave?"},
            ],
        )
    )
    docs = call.documents
    assert docs is not None and docs.collections == ("travel",)
    assert docs.question == "When does the ferry leave?"
    assert docs.earlier == (ChatMessage("user", "I plan a trip."), ChatMessage("assistant", "Nice."))
    assert docs.system_prompt == "Be brief.\n\nAnswer in English."


def test_without_the_extension_or_with_documents_off_it_is_a_plain_chat():
    assert parse_chat(body(None)).documents is None
    assert parse_chat(body({"documents": False})).documents is None
    assert parse_chat(body({})).documents is None
    assert parse_chat(body({"documents": True})).documents.collections == ()  # all documents


@pytest.mark.parametrize(
    ("locus", "param"),
    [
        ("yes", "locus"),
        ([], "locus"),
        ({"documents": 1}, "locus.documents"),
        ({"documents": True, "top_k": 3}, "locus.top_k"),
        ({"collections": ["a"]}, "locus.collections"),
        ({"documents": True, "collections": [""]}, "locus.collections"),
        ({"documents": True, "collections": [1]}, "locus.collections"),
        ({"documents": True, "collections": ["x" * 201]}, "locus.collections"),
    ],
)
def test_a_malformed_extension_is_a_400_naming_its_field(locus, param):
    with pytest.raises(ApiError) as caught:
        parse_chat(body(locus))
    assert caught.value.status == 400 and caught.value.param == param and caught.value.code == "invalid_extension"


def test_what_an_answer_from_documents_cannot_take_is_refused():
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
    cases = [
        (body({"documents": True}, tools=[tool]), "tools"),
        (body({"documents": True}, response_format={"type": "json_object"}), "response_format"),
        (body({"documents": True}, [*QUESTION, {"role": "assistant", "content": "Yo"}]), "messages"),
        (body({"documents": True}, [{"role": "user", "content": "  "}]), "messages"),
    ]
    for request, param in cases:
        with pytest.raises(ApiError) as caught:
            parse_chat(request)
        assert caught.value.status == 400 and caught.value.param == param, request
    with pytest.raises(ApiError) as completion:
        parse_completion({"model": "m", "prompt": "Hi", "locus": {"documents": True}})
    assert completion.value.param == "locus"
