"""Guided output (JSON schema / GBNF grammar) and token healing, on the real bundled model."""

from __future__ import annotations

import json
import threading

import pytest

from engine.errors import InvalidRequestError
from engine.runtime.constrain import Healing, PieceIndex, check_schema, heal, schema_to_grammar, validation_error
from engine.runtime.types import ChatMessage, GenerationRequest, SamplingParams

TEXT = "Maria Lopez, 34, lives in Porto. She loves chess and cooking."
# Small schemas with bounded strings and arrays, so that every answer ends well inside max_tokens
# (and the 60 generations stay quick on a CPU).
FLAT = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}
NESTED = {
    "type": "object",
    "properties": {
        "person": {
            "type": "object",
            "properties": {"name": {"type": "string", "maxLength": 12}, "city": {"type": "string", "maxLength": 10}},
            "required": ["name", "city"],
        },
        "hobbies": {"type": "array", "items": {"enum": ["chess", "cooking", "music"]}, "minItems": 1, "maxItems": 2},
    },
    "required": ["person", "hobbies"],
}
ENUM = {"type": "string", "enum": ["positive", "negative", "neutral"]}


def generate(generator, messages=(), *, prompt=None, grammar=None, token_healing=True, **sampling):
    request = GenerationRequest(
        tuple(messages), SamplingParams(**sampling), prompt=prompt, grammar=grammar, token_healing=token_healing
    )
    return generator.generate(request, threading.Event(), lambda event: None)


# Guided output ------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("schema", [FLAT, NESTED, ENUM], ids=["flat", "nested-with-arrays", "enum"])
def test_twenty_guided_generations_all_parse_and_validate(generator, templates, schema):
    grammar = schema_to_grammar(schema)
    messages = templates.get("extract_json").render(text=TEXT, schema=json.dumps(schema))
    answers = []
    for i in range(20):
        done = generate(
            generator, messages, grammar=grammar, temperature=(0.3, 0.6, 0.9, 1.2)[i % 4], seed=i, max_tokens=60
        )
        assert done.stats.finish_reason == "stop", f"run {i} did not finish: {done.text!r}"
        value = json.loads(done.text)
        assert validation_error(schema, value) is None, f"run {i}: {done.text!r}"
        answers.append(done.text)
    print(f"\n{len(set(answers))} distinct answers, e.g. {answers[0]}")


def test_a_gbnf_grammar_decides_the_output(generator):
    grammar = 'root ::= ("yes" | "no") "."'
    for seed in range(3):
        done = generate(
            generator,
            [ChatMessage("user", "Is the sky green?")],
            grammar=grammar,
            temperature=1.0,
            seed=seed,
            max_tokens=8,
        )
        assert done.text in ("yes.", "no.") and done.stats.finish_reason == "stop"


def test_a_grammar_that_does_not_parse_is_refused_and_the_generator_goes_on(generator):
    with pytest.raises(InvalidRequestError, match=r"grammar could not be parsed.*answer") as caught:
        generate(generator, [ChatMessage("user", "Hi")], grammar="root ::= answer", max_tokens=4)
    assert caught.value.hint and "root" in caught.value.hint
    done = generate(generator, [ChatMessage("user", "Say hi.")], temperature=0.0, max_tokens=4)
    assert done.text and done.stats.finish_reason in ("stop", "length")


@pytest.mark.parametrize(
    "schema, words",
    [
        ({"type": "strnig"}, "not valid"),
        ([1, 2], "must be a JSON object"),
        ({"type": "integer", "minimum": 0}, "'minimum' at /"),
        (
            {"type": "object", "properties": {"a": {"oneOf": [{"type": "string"}, {"type": "null"}]}}},
            "'oneOf' at /properties/a",
        ),
        ({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["b"]}, "requires 'b'"),
        ({"type": "string", "pattern": "[a-z]+"}, "cannot be used"),
        (
            {"type": "object", "properties": {"a": {"type": "string", "pattern": "^a+$", "maxLength": 3}}},
            "combines 'pattern'",
        ),
    ],
)
def test_schemas_guided_output_cannot_honour_are_refused_in_words(schema, words):
    with pytest.raises(InvalidRequestError, match="schema") as caught:
        schema_to_grammar(schema)
    assert words in caught.value.message


def test_the_grammar_keeps_raw_control_characters_out_of_strings():
    # A raw newline inside a JSON string would make the output unparseable for strict parsers.
    grammar = schema_to_grammar({"type": "string"})
    assert r'char ::= [^"\\\x7F\x00-\x1F]' in grammar
    assert check_schema(FLAT) is FLAT


def test_validation_names_the_place_of_the_problem():
    assert validation_error(NESTED, {"person": {"name": "A", "city": "B"}, "hobbies": ["chess"]}) is None
    problem = validation_error(NESTED, {"person": {"name": "A", "city": 3}, "hobbies": ["chess"]})
    assert problem and problem.startswith("at /person/city")


# Token healing ------------------------------------------------------------------------


def test_healing_state_follows_tokens_that_spell_the_removed_text():
    index = PieceIndex([b"", b"h", b"he", b"hel", b"help", b"hello", b"x", b"lo"])
    healing = Healing(b"hel", 1)
    assert sorted(healing.allowed(index)) == [1, 2, 3, 4, 5]  # starts of "hel", and tokens that start with it
    assert healing.consume(b"he") == b"" and healing.remaining == b"l"
    assert healing.allowed(index) == [7]  # only "lo" starts with the "l" still to spell
    assert healing.consume(b"lo") == b"o" and not healing.active
    assert heal([6, 3], index) == ([6], Healing(b"hel", 1))
    assert heal([6, 5], index) == ([6, 5], None)  # nothing longer starts with "hello"
    assert heal([6, 0, 1], index) == ([6, 0], Healing(b"h", 1))  # never backs up over a control token


def prompt_tokens(generator, prompt):
    return generator.model.tokenize(prompt, add_special=True, parse_special=True)


def pieces(generator, tokens):
    return b"".join(generator.model.piece(t) for t in tokens)


@pytest.mark.parametrize(
    "prompt, removed, continuation",
    [
        ('The link is <a href="http:', ":", "//"),
        ("The capital of France is Par", " Par", "is"),
    ],
)
def test_a_prompt_ending_mid_token_is_healed_and_the_answer_continues_the_removed_text(
    generator, prompt, removed, continuation
):
    full = prompt_tokens(generator, prompt)
    done = generate(generator, prompt=prompt, temperature=0.0, max_tokens=6)
    healed = generator.cached_tokens[: done.stats.prompt_tokens]
    generated = generator.cached_tokens[done.stats.prompt_tokens :]
    healed_text = pieces(generator, healed).decode()
    print(
        f"\nprompt {prompt!r} -> healed prompt {healed_text!r}, taken back {done.stats.healed_text!r}, "
        f"first generated tokens {[generator.model.piece(t) for t in generated[:2]]}, answer {done.text!r}"
    )
    assert done.stats.healed_text == removed
    assert list(healed) == full[:-1] and healed_text + removed == prompt
    # The first generated token spells the removed text and goes on; the answer is only what is new.
    first = generator.model.piece(generated[0])
    assert first.startswith(removed.encode()) and len(first) > len(removed)
    assert pieces(generator, generated) == removed.encode() + done.text.encode()
    assert done.text.startswith(continuation)


def test_healing_backs_up_over_several_tokens_that_together_start_a_longer_one(generator):
    prompt = "Search it on www.goo"
    full = prompt_tokens(generator, prompt)
    assert [generator.model.piece(t) for t in full[-2:]] == [b"g", b"oo"]
    done = generate(generator, prompt=prompt, temperature=0.0, max_tokens=4)
    generated = generator.cached_tokens[done.stats.prompt_tokens :]
    print(f"\n{prompt!r}: taken back {done.stats.healed_text!r}, then {[generator.model.piece(t) for t in generated]}")
    assert done.stats.healed_text == "goo" and done.stats.prompt_tokens == len(full) - 2
    assert pieces(generator, generated) == b"goo" + done.text.encode()


def test_healing_holds_at_high_temperature(generator):
    # At temperature 1.5 the model would often pick something else after " hel"; the restriction is strict.
    for seed in range(4):
        done = generate(
            generator, prompt="He said hel", temperature=1.5, top_k=0, top_p=1.0, min_p=0.0, seed=seed, max_tokens=2
        )
        out = pieces(generator, generator.cached_tokens[done.stats.prompt_tokens :])
        assert done.stats.healed_text == " hel"
        assert out.startswith(b" hel") or b" hel".startswith(out), out
        assert out[len(b" hel") :].decode("utf-8", "replace") == done.text


def test_healing_is_off_when_asked_and_absent_when_the_prompt_ends_cleanly(generator):
    prompt = 'The link is <a href="http:'
    done = generate(generator, prompt=prompt, token_healing=False, temperature=0.0, max_tokens=3)
    assert done.stats.healed_text == "" and done.stats.prompt_tokens == len(prompt_tokens(generator, prompt))
    for clean in ("The year was 1234", "Done.<|im_end|>"):  # digits are single tokens; a control token
        done = generate(generator, prompt=clean, temperature=0.0, max_tokens=2)
        assert done.stats.healed_text == "" and done.stats.prompt_tokens == len(prompt_tokens(generator, clean))


def test_a_grammar_turns_healing_off(generator):
    done = generate(
        generator, prompt="The answer is: ye", grammar='root ::= "yes" | "no"', temperature=0.0, max_tokens=4
    )
    assert done.stats.healed_text == "" and done.text in ("yes", "no")
