"""Grammars checked before llama.cpp sees them: limits in words, a trial in a real worker process, and a
runtime that fails only the request whose grammar llama.cpp cannot use (on the real bundled model)."""

from __future__ import annotations

import pytest

from engine.errors import GenerationError, InvalidRequestError
from engine.runtime.constrain import schema_to_grammar
from engine.runtime.grammar_check import (
    MAX_GRAMMAR_BYTES,
    MAX_NESTING,
    MAX_RULES,
    GrammarChecker,
    check_limits,
    measure,
)
from engine.runtime.types import ChatMessage, Done, Failed, GenerationRequest, SamplingParams
from engine.tasks.extract import SCHEMA_EXAMPLES

NOTHING = r"root ::= [^\x00-\U0010FFFF]"  # no character at all: llama.cpp aborts on the first token
DEEP = "root ::= " + "(" * 200_000 + '"a"' + ")" * 200_000  # 400 kB: overflows llama.cpp's parser stack
INVOICE = {  # a realistic extraction schema, larger than the examples
    "type": "object",
    "properties": {
        "number": {"type": "string", "maxLength": 40},
        "date": {"type": "string", "format": "date"},
        "vendor": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "maxLength": 200},
                "address": {
                    "type": "object",
                    "properties": {
                        "street": {"type": "string"},
                        "city": {"type": "string"},
                        "zip": {"type": "string", "pattern": "^[0-9]{5}$"},
                    },
                    "required": ["city"],
                },
            },
        },
        "items": {
            "type": "array",
            "maxItems": 100,
            "items": {
                "type": "object",
                "properties": {
                    "description": {"type": "string", "maxLength": 500},
                    "quantity": {"type": "integer"},
                    "unit_price": {"type": "number"},
                    "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}},
                },
                "required": ["description", "quantity"],
            },
        },
        "currency": {"enum": ["EUR", "USD", "GBP", "CHF", "JPY"]},
        "notes": {"anyOf": [{"type": "string"}, {"type": "null"}]},
    },
    "required": ["number", "items"],
}
REALISTIC = {
    **SCHEMA_EXAMPLES,
    "Invoice": INVOICE,
    "200 fields": {"type": "object", "properties": {f"field_{i}": {"type": "string"} for i in range(200)}},
    "1000-value enum": {"enum": [f"category number {i}" for i in range(1000)]},
}


# Limits -------------------------------------------------------------------------------


def test_only_real_groups_count_towards_nesting_and_rules():
    grammar = 'root ::= "(((" [(] item # (((\nitem ::= ("a" ("b" | "\\"(")) [\\]( ]'
    shape = measure(grammar)
    assert (shape.nesting, shape.rules) == (2, 4)  # 2 rules, 2 groups; the rest are literals, classes, comments


@pytest.mark.parametrize(
    "grammar, words",
    [
        (
            "root ::= " + "(" * 50_000 + '"a"' + ")" * 50_000,
            f"nests groups 50,000 deep; at most {MAX_NESTING:,} levels",
        ),
        ('root ::= "' + "a" * (MAX_GRAMMAR_BYTES + 1) + '"', f"at most {MAX_GRAMMAR_BYTES // 1024} KB"),
        ("root ::= r0\n" + "".join(f'r{i} ::= "x"\n' for i in range(MAX_RULES)), f"at most {MAX_RULES:,} are allowed"),
    ],
    ids=["nesting", "size", "rules"],
)
def test_each_limit_is_named_before_llama_cpp_sees_the_grammar(grammar, words):
    with pytest.raises(InvalidRequestError, match="The grammar cannot be used") as caught:
        check_limits(grammar)
    assert words in caught.value.message


@pytest.mark.parametrize("name", sorted(REALISTIC))
def test_grammars_of_realistic_schemas_stay_well_under_the_limits(name):
    shape = measure(schema_to_grammar(REALISTIC[name]))
    assert shape.size < MAX_GRAMMAR_BYTES / 4 and shape.nesting < MAX_NESTING / 3 and shape.rules < MAX_RULES / 4


def test_a_schema_whose_grammar_is_too_deep_says_which_keywords_to_lower():
    with pytest.raises(InvalidRequestError, match=r"too large to guide generation.*20,000 deep") as caught:
        schema_to_grammar({"type": "object", "properties": {"note": {"type": "string", "maxLength": 20_000}}})
    assert "maxLength" in caught.value.hint


# The trial in a worker process ----------------------------------------------------------------


@pytest.mark.slow
def test_the_checker_refuses_what_llama_cpp_cannot_use_and_remembers_its_verdicts(model_path):
    checker = GrammarChecker()
    try:
        assert checker.known('root ::= "yes" | "no"', model_path) is None
        assert checker.check('root ::= "yes" | "no"', model_path).ok
        assert checker.known('root ::= "yes" | "no"', model_path).ok  # remembered: no second process
        nothing = checker.check(NOTHING, model_path)
        assert "allows no output" in nothing.message and isinstance(nothing.error(), InvalidRequestError)
        assert checker.known(NOTHING, model_path) == nothing
        undefined = checker.check("root ::= answer", model_path)
        assert undefined.message == "The grammar could not be parsed: Undefined rule identifier 'answer'."
        recursive = checker.check('root ::= root "a" | "b"', model_path)
        assert "left recursion" in recursive.message
        # Past the limits (which check() applies first), llama.cpp itself crashes: the worker, not us.
        crashed = checker._probe(DEEP, model_path)
        assert "llama.cpp fails on it" in crashed.message and "SIGSEGV" in crashed.message
        assert "at most 256 KB" in checker.check(DEEP, model_path).message  # a limit, before any process starts
    finally:
        checker.close()


@pytest.mark.slow
def test_a_check_that_cannot_run_is_not_blamed_on_the_grammar_or_remembered(model_path, tmp_path):
    checker = GrammarChecker(timeout_s=0.01)  # not even Python starts this fast
    try:
        verdict = checker.check('root ::= "yes"', model_path)
        assert "could not be checked" in verdict.message and "did not finish in time" in verdict.message
        assert isinstance(verdict.error(), GenerationError) and checker.known('root ::= "yes"', model_path) is None
    finally:
        checker.close()
    checker = GrammarChecker()
    try:
        missing = checker.check('root ::= "yes"', str(tmp_path / "gone.gguf"))
        assert "could not read the model's vocabulary" in missing.message and not missing.grammar_fault
    finally:
        checker.close()


# The runtime ----------------------------------------------------------------------------------


def request(grammar: str | None, text: str = "Is the sky blue?", **sampling) -> GenerationRequest:
    return GenerationRequest(
        (ChatMessage("user", text),), SamplingParams(**{"max_tokens": 8, **sampling}), grammar=grammar
    )


@pytest.mark.slow
def test_a_grammar_that_allows_nothing_fails_its_request_and_the_runtime_goes_on(runtime):
    bad = runtime.submit(request(NOTHING))
    good = runtime.submit(request('root ::= "yes" | "no"'))
    failed = bad.wait(120)
    assert isinstance(failed, Failed) and isinstance(failed.error, InvalidRequestError)
    assert "allows no output" in failed.error.message
    assert isinstance(good.wait(120), Done) and good.result.text in ("yes", "no")
    again = runtime.submit(request(NOTHING)).wait(120)  # remembered: failed at once, the same words
    assert isinstance(again, Failed) and again.error.message == failed.error.message
    after = runtime.submit(request(None, temperature=0.0)).wait(120)
    assert isinstance(after, Done) and after.text


@pytest.mark.slow
def test_a_grammar_that_runs_into_a_dead_end_fails_mid_answer(runtime):
    # 'a' may start the answer (the check passes); after it nothing may come, not even the end.
    failed = runtime.submit(request(r'root ::= "a" [^\x00-\U0010FFFF]')).wait(120)
    assert isinstance(failed, Failed) and isinstance(failed.error, InvalidRequestError)
    assert "allows nothing here" in failed.error.message
    assert isinstance(runtime.submit(request('root ::= "ok"')).wait(120), Done)


@pytest.mark.slow
def test_requests_waiting_for_their_grammar_check_end_when_the_runtime_stops(model_path):
    from engine.runtime.runtime import Runtime
    from engine.runtime.types import ModelConfig

    rt = Runtime()
    rt.load(ModelConfig(model_path, n_ctx=2048)).result(timeout=120)
    handles = [rt.submit(request(f'root ::= "{word}"')) for word in ("one", "two", "three")]
    rt.shutdown()
    ends = [h.wait(60) for h in handles]
    assert all(isinstance(e, (Done, Failed)) for e in ends), ends  # none is stranded with the checker


@pytest.mark.slow
def test_the_checker_never_imports_from_the_working_folder(model_path, tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    for name in ("llama_cpp.py", "json.py"):  # what the checker imports first
        (tmp_path / name).write_text(f"open({str(marker)!r}, 'w').close()\nraise SystemExit(9)\n")
    (tmp_path / "engine").mkdir()
    (tmp_path / "engine" / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    checker = GrammarChecker()
    try:
        assert checker.check('root ::= "yes"', model_path).ok
    finally:
        checker.close()
    assert not marker.exists()
