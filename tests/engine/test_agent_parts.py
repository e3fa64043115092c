"""The agent loop's parts that need no model: approvals on the handle, who is asked, arguments against a schema."""

from __future__ import annotations

import threading

import pytest

from engine.agent import ApprovalPolicy, schema_problem
from engine.answering import AnswerHandle
from engine.chat_settings import AgentSettings
from engine.errors import InvalidRequestError
from engine.tools.base import ToolSpec

OBJECT = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
    "required": ["a", "b"],
    "additionalProperties": False,
}


def spec(name: str, *, read_only: bool = False) -> ToolSpec:
    return ToolSpec(
        name, "a tool", OBJECT, read_only=read_only, source="mcp:" + name.split("/")[0] if "/" in name else "builtin"
    )


def test_only_a_call_that_waits_can_be_approved_and_only_with_a_known_answer():
    handle = AnswerHandle()
    assert handle.approve("call_1", "once") is False  # nothing waits: nothing is approved ahead of time
    handle.approvals.expect("call_1")
    assert handle.waiting_for_approval == ("call_1",)
    with pytest.raises(InvalidRequestError):
        handle.approve("call_1", "always")
    got = []
    waiter = threading.Thread(target=lambda: got.append(handle.approvals.wait("call_1", handle.cancellation)))
    waiter.start()
    assert handle.approve("call_1", "conversation") is True
    waiter.join(10)
    assert got == ["conversation"] and handle.waiting_for_approval == ()
    assert handle.approve("call_1", "deny") is False  # answered once: a second answer changes nothing


def test_a_stop_ends_the_wait_for_an_approval():
    handle = AnswerHandle()
    handle.approvals.expect("call_7")
    got = []
    waiter = threading.Thread(target=lambda: got.append(handle.approvals.wait("call_7", handle.cancellation)))
    waiter.start()
    handle.cancel()
    waiter.join(10)
    assert not waiter.is_alive() and got == [None]


def test_who_runs_without_asking():
    settings = AgentSettings(trusted=("calculator", "notes/*"))
    saved = []
    policy = ApprovalPolicy(settings, remembered=("clock",), remember=saved.append)
    assert policy.granted(spec("calculator")) == "trusted"
    assert policy.granted(spec("notes/search")) == "trusted"  # the whole server is trusted
    assert policy.granted(spec("mail/send")) is None
    assert policy.granted(spec("clock")) == "conversation"  # allowed for the conversation before
    assert policy.granted(spec("files/list", read_only=True)) is None  # read-only is not enough by default
    trusting = ApprovalPolicy(AgentSettings(trust_read_only=True))
    assert trusting.granted(spec("files/list", read_only=True)) == "read_only"
    assert trusting.granted(spec("files/delete")) is None
    policy.record("mail/send", "once")
    assert policy.granted(spec("mail/send")) is None and saved == []
    policy.record("mail/send", "conversation")
    assert policy.granted(spec("mail/send")) == "conversation" and saved == ["mail/send"]
    policy.record("mail/send", "conversation")
    assert saved == ["mail/send"]  # saved once


def test_arguments_are_checked_against_the_tools_schema():
    assert schema_problem(OBJECT, {"a": 1, "b": 2}) is None
    assert "'b' is a required property" in schema_problem(OBJECT, {"a": 1})
    assert "(at a)" in schema_problem(OBJECT, {"a": "one", "b": 2})
    assert "broken" in schema_problem({"type": "nonsense"}, {})


def test_budgets_must_make_sense():
    with pytest.raises(InvalidRequestError):
        AgentSettings(max_steps=0)
    with pytest.raises(InvalidRequestError):
        AgentSettings(result_max_chars=10)
