"""An assistant's task templates: names of the prompt template library (the real built-in templates and a
user's own copies in a temp folder), checked when the assistant is saved, on a real history database."""

from __future__ import annotations

import pytest

from engine.assistants import BUILTINS, Assistants
from engine.errors import InvalidRequestError
from engine.history.store import HistoryStore
from engine.tasks.templates import TemplateLibrary
from resources import resource_path

SHIPPED = {
    "builtin-writing-editor": ["summarize", "translate"],
    "builtin-code-reviewer": ["code_review", "code_explain", "code_fix", "code_tests"],
    "builtin-research-documents": ["summarize"],
}


@pytest.fixture()
def library(tmp_path):
    return TemplateLibrary(resource_path("prompts"), tmp_path / "prompts")


@pytest.fixture()
def presets(tmp_path, library):
    history = HistoryStore(tmp_path / "locus.sqlite3")
    yield Assistants(history, library)
    history.close()


def test_the_built_ins_offer_their_templates_and_every_one_is_in_the_library(presets, library):
    assert {p.id: p.templates for p in BUILTINS} == SHIPPED
    names = set(library.names())
    assert all(set(p.templates) <= names for p in BUILTINS)
    assert {p.id: p.templates for p in presets.all() if p.builtin} == SHIPPED


def test_an_unknown_template_is_refused_with_its_name_and_nothing_is_saved(presets):
    with pytest.raises(InvalidRequestError) as refused:
        presets.create("Mine", "You help.", templates=["summarize", "code_reveiw"])
    assert "code_reveiw" in refused.value.message
    assert "code_review" in (refused.value.hint or "")  # the closest real name
    assert [p.name for p in presets.all() if not p.builtin] == []


def test_the_internal_part_template_is_not_offered_nor_accepted(presets):
    assert "summarize_part" not in [name for name, _title in presets.template_choices()]
    with pytest.raises(InvalidRequestError):
        presets.create("Mine", "You help.", templates=["summarize_part"])


def test_choices_are_the_library_titles_and_a_user_copy_counts(presets, library):
    library.save("my_notes", 'title = "My notes"\nvariables = ["text"]\nuser = "{{ text }}"\n')
    choices = dict(presets.template_choices())
    assert choices["code_review"] == "Review code" and choices["my_notes"] == "My notes"
    saved = presets.create("Mine", "You help.", templates=["my_notes", "translate"])
    assert presets.get(saved.id).templates == ["my_notes", "translate"]


def test_an_empty_list_is_allowed_and_means_every_task(presets):
    saved = presets.create("Anything", "You help.", templates=[])
    assert presets.get(saved.id).templates == []


def test_a_saved_built_in_keeps_its_row_and_reset_brings_the_shipped_templates_back(presets):
    reviewer = presets.get("builtin-code-reviewer")
    presets.save(type(reviewer)(**{**reviewer.__dict__, "templates": ["code_review"]}))
    assert presets.get(reviewer.id).templates == ["code_review"]
    assert presets.reset(reviewer.id).templates == SHIPPED[reviewer.id]
    assert presets.get(reviewer.id).templates == SHIPPED[reviewer.id]
