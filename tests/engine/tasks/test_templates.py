"""Prompt templates: parsing, checking, rendering, user copies that override built-ins."""

from __future__ import annotations

import pytest

from engine.errors import NotFoundError, TemplateError
from engine.tasks.templates import PromptTemplate, TemplateLibrary, parse_template

GOOD = """
title = "Greet"
description = "Says hello."
variables = ["name", "tone"]
system = "You greet people in a {{ tone }} way."
user = "Greet {{ name }}."

[[examples]]
user = "Greet Ann."
assistant = "Hello, Ann!"
"""


def test_renders_system_examples_and_user_turn():
    template = parse_template("greet", GOOD)
    messages = template.render(name="Bo", tone="warm")
    assert [(m.role, m.content) for m in messages] == [
        ("system", "You greet people in a warm way."),
        ("user", "Greet Ann."),
        ("assistant", "Hello, Ann!"),
        ("user", "Greet Bo."),
    ]


def test_unknown_variable_in_the_text_is_named_with_a_suggestion():
    text = GOOD.replace("Greet {{ name }}.", "Greet {{ nmae }}.")
    with pytest.raises(TemplateError) as err:
        parse_template("greet", text)
    assert "'nmae'" in str(err.value) and "(user)" in str(err.value)
    assert err.value.hint == "Did you mean 'name'?"


def test_bad_syntax_is_named_with_its_line():
    text = GOOD.replace(
        'system = "You greet people in a {{ tone }} way."', 'system = """First line.\nSecond {{ tone line."""'
    )
    with pytest.raises(TemplateError) as err:
        parse_template("greet", text)
    assert "'greet' (system), line 2" in str(err.value)


@pytest.mark.parametrize(
    "text, words",
    [
        ("title = [", "not valid TOML"),
        ('user = "x"\ntitel = "y"', "unknown key 'titel'"),
        ('title = "x"', "non-empty 'user'"),
        ('user = "x"\nvariables = ["not a name"]', "'variables'"),
        ('user = "x"\n[[examples]]\nuser = "only a question"', "example 1"),
    ],
)
def test_malformed_files_are_refused_in_words(text, words):
    with pytest.raises(TemplateError, match=words):
        parse_template("t", text)


def test_render_refuses_missing_and_unknown_values():
    template = parse_template("greet", GOOD)
    with pytest.raises(TemplateError, match="needs a value"):
        template.render(name="Bo")
    with pytest.raises(TemplateError, match="no variable 'colour'"):
        template.render(name="Bo", tone="warm", colour="red")


def test_round_trips_through_toml():
    template = parse_template("greet", GOOD)
    again = parse_template("greet", template.to_toml())
    assert isinstance(again, PromptTemplate)
    assert again.render(name="X", tone="dry") == template.render(name="X", tone="dry")


def test_every_builtin_template_parses_and_renders(templates):
    names = templates.names()
    assert names, "resources/prompts/ holds the tasks' templates"
    for name in names:
        template = templates.get(name)
        assert template.origin == "builtin"
        messages = template.render(**{v: f"<{v}>" for v in template.variables})
        assert messages[-1].role == "user"


def test_user_copy_overrides_the_builtin_and_reset_restores_it(tmp_path):
    builtin = tmp_path / "builtin"
    builtin.mkdir()
    (builtin / "greet.toml").write_text(GOOD, encoding="utf-8")
    library = TemplateLibrary(builtin, tmp_path / "user")
    edited = GOOD.replace("Greet {{ name }}.", "Say hi to {{ name }}.")
    library.save("greet", edited)
    assert (tmp_path / "user" / "greet.toml").read_text(encoding="utf-8") == edited
    # A new library over the same folders (as after an upgrade replaced the built-ins) keeps the edit.
    again = TemplateLibrary(builtin, tmp_path / "user")
    assert again.is_customised("greet")
    assert again.get("greet").origin == "user"
    assert again.get("greet").render(name="Bo", tone="x")[-1].content == "Say hi to Bo."
    again.reset("greet")
    assert again.get("greet").render(name="Bo", tone="x")[-1].content == "Greet Bo."


def test_a_bad_edit_is_not_saved(tmp_path):
    builtin = tmp_path / "builtin"
    builtin.mkdir()
    (builtin / "greet.toml").write_text(GOOD, encoding="utf-8")
    library = TemplateLibrary(builtin, tmp_path / "user")
    with pytest.raises(TemplateError, match="'oops'"):
        library.save("greet", GOOD.replace("{{ name }}", "{{ oops }}"))
    assert not library.is_customised("greet")
    assert not (tmp_path / "user").exists() or not any((tmp_path / "user").iterdir())


def test_unknown_template_suggests_a_close_name(tmp_path):
    builtin = tmp_path / "builtin"
    builtin.mkdir()
    (builtin / "greet.toml").write_text(GOOD, encoding="utf-8")
    library = TemplateLibrary(builtin, tmp_path / "user")
    with pytest.raises(NotFoundError) as err:
        library.get("gret")
    assert err.value.hint == "Did you mean 'greet'?"
