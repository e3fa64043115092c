"""Assistants: named presets a conversation answers with (system prompt, model, sampling, documents,
tools, task templates).

A few ship built in (``BUILTINS``); they live in code and are saved in the history's ``assistants`` table
only once edited, so "reset" deletes the saved row and the shipped one shows again. Custom ones are rows
of that table (ids ``custom-<hex>``). A conversation names its assistant in ``conversations.assistant_id``
(NULL: none, the settings' system prompt and sampling).

Applying one (``for_turn``): the turn's system prompt and sampling come from the conversation's assistant
(sampling given with the request still wins); its collections and tools are set on the conversation when
it is chosen (``choose``), so the documents selector shows them and the user may still change them.
A model named on the assistant that is not the loaded one is not loaded behind the user's back: the answer
uses the loaded model, and ``answered_by`` records both (``model`` the one that answered, ``model_wanted``
the assistant's). Every saved answer records who answered (``AnsweredBy.to_dict``).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from engine.errors import EngineError, InvalidRequestError, NotFoundError
from engine.history.store import UNSET, HistoryStore
from engine.runtime.types import ModelInfo, SamplingParams

if TYPE_CHECKING:
    from engine.tasks.templates import TemplateLibrary

NAME_MAX_CHARS = 80
PROMPT_MAX_CHARS = 20_000
# Sampling an assistant may set (the rest follows the settings).
SAMPLING_KEYS = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "max_tokens")
# Templates the tasks use inside (never a task of their own): not offered to assistants.
INTERNAL_TEMPLATES = frozenset({"summarize_part"})


@dataclass(frozen=True)
class Preset:
    """One assistant. ``sampling``: overrides of the settings' sampling (only ``SAMPLING_KEYS``);
    ``collections``: None (no documents), [] (all) or names; ``tools``: tool names; ``templates``: the
    task templates it offers (names); ``model``: a model's name or file (None: the loaded one)."""

    id: str
    name: str
    system_prompt: str
    model: str | None = None
    sampling: dict = field(default_factory=dict)
    collections: list[str] | None = None
    tools: list[str] = field(default_factory=list)
    templates: list[str] = field(default_factory=list)
    builtin: bool = False
    updated_at: float = 0.0

    def sampling_params(self, base: SamplingParams) -> SamplingParams:
        """The settings' sampling with this assistant's overrides."""
        return dataclasses.replace(base, **self.sampling) if self.sampling else base

    def wants_other_model(self, info: ModelInfo | None) -> bool:
        """Whether it names a model that is not ``info`` (the one that will answer)."""
        return self.model is not None and bool(self.model) and not model_matches(self.model, info)


BUILTINS: tuple[Preset, ...] = (
    Preset(
        "builtin-writing-editor",
        "Writing editor",
        "You are a careful writing editor. Improve the user's text for clarity, grammar and flow while keeping "
        "their meaning and voice. Show the edited text first, then list the main changes briefly.",
        sampling={"temperature": 0.4},
        templates=["summarize", "translate"],
        builtin=True,
    ),
    Preset(
        "builtin-code-reviewer",
        "Code reviewer",
        "You are an experienced code reviewer. Point out bugs, security problems and unclear code in what the "
        "user shows you, most important first, each with a short fix. Say so when the code looks fine.",
        sampling={"temperature": 0.2},
        templates=["code_review", "code_explain", "code_fix", "code_tests"],
        builtin=True,
    ),
    Preset(
        "builtin-research-documents",
        "Research with my documents",
        "You are a research assistant. Answer from the user's documents, cite the passages you use, and say "
        "plainly when the documents do not answer the question.",
        sampling={"temperature": 0.3},
        collections=[],
        templates=["summarize"],
        builtin=True,
    ),
)
_BUILTIN_IDS = {p.id: p for p in BUILTINS}


@dataclass(frozen=True)
class AnsweredBy:
    """Who answered a message: saved as ``messages.answered_by`` (JSON)."""

    assistant: str | None
    name: str | None
    model: str | None
    sampling: dict
    system_prompt: str  # sha256 hex of the system prompt the model was given
    model_wanted: str | None = None  # the assistant's model, when it is not the one that answered

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        if self.model_wanted is None:
            del data["model_wanted"]
        return data


def prompt_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def model_matches(wanted: str, info: ModelInfo | None) -> bool:
    """Whether a model named ``wanted`` (its name, file name or path) is the model ``info`` describes."""
    if info is None:
        return False
    wanted = wanted.strip().lower()
    path = info.path.replace("\\", "/").lower()
    file = path.rsplit("/", 1)[-1]
    stem = file[:-5] if file.endswith(".gguf") else file
    return wanted in {info.name.lower(), path, file, stem}


def answered_by(preset: Preset | None, system_prompt: str, sampling: SamplingParams, info: ModelInfo | None) -> dict:
    """The ``answered_by`` record of an answer made with ``preset`` (None: no assistant)."""
    used = {k: getattr(sampling, k) for k in SAMPLING_KEYS}
    wanted = preset.model if preset is not None and preset.wants_other_model(info) else None
    return AnsweredBy(
        preset.id if preset else None,
        preset.name if preset else None,
        info.name if info else None,
        used,
        prompt_digest(system_prompt),
        wanted,
    ).to_dict()


# Checking what people typed -----------------------------------------------------------------


def _clean_name(name: object) -> str:
    if not isinstance(name, str) or not " ".join(name.split()):
        raise InvalidRequestError("An assistant needs a name.")
    name = " ".join(name.split())
    if len(name) > NAME_MAX_CHARS:
        raise InvalidRequestError(f"An assistant's name is at most {NAME_MAX_CHARS} characters.")
    return name


def _clean_sampling(sampling: object) -> dict:
    if not isinstance(sampling, dict):
        raise InvalidRequestError("An assistant's sampling must be a table of settings.")
    unknown = sorted(set(sampling) - set(SAMPLING_KEYS))
    if unknown:
        raise InvalidRequestError(
            f"Unknown sampling setting '{unknown[0]}'.", hint=f"An assistant may set {', '.join(SAMPLING_KEYS)}."
        )
    SamplingParams(**sampling)  # raises InvalidRequestError for a value out of range
    return dict(sampling)


def _clean_names(values: object, what: str) -> list[str]:
    if values is None:
        return []
    if isinstance(values, str) or not all(isinstance(v, str) and v for v in values):  # type: ignore[attr-defined]
        raise InvalidRequestError(f"An assistant's {what} must be a list of names.")
    return list(dict.fromkeys(values))  # type: ignore[call-overload]


def checked(preset: Preset) -> Preset:
    """``preset`` with its name tidied, or InvalidRequestError saying what is wrong."""
    if not isinstance(preset.system_prompt, str) or len(preset.system_prompt) > PROMPT_MAX_CHARS:
        raise InvalidRequestError(f"An assistant's system prompt is text of at most {PROMPT_MAX_CHARS} characters.")
    if preset.model is not None and (not isinstance(preset.model, str) or not preset.model.strip()):
        raise InvalidRequestError("An assistant's model is a model's name, or none for the loaded model.")
    collections = None if preset.collections is None else _clean_names(preset.collections, "collections")
    return dataclasses.replace(
        preset,
        name=_clean_name(preset.name),
        model=preset.model.strip() if preset.model else None,
        sampling=_clean_sampling(preset.sampling),
        collections=collections,
        tools=_clean_names(preset.tools, "tools"),
        templates=_clean_names(preset.templates, "templates"),
    )


# The store ------------------------------------------------------------------------------------

_COLUMNS = "id, name, system_prompt, model, sampling, collections, tools, templates, builtin, updated_at"


def _from_row(row: tuple) -> Preset:
    return Preset(
        row[0],
        row[1],
        row[2],
        row[3],
        json.loads(row[4]) if row[4] else {},
        json.loads(row[5]) if row[5] is not None else None,
        json.loads(row[6]) if row[6] else [],
        json.loads(row[7]) if row[7] else [],
        bool(row[8]),
        row[9],
    )


def _check_templates(names: list[str], library: TemplateLibrary) -> None:
    """Refuse a template name the library does not have (or one the tasks only use inside)."""
    known = offered_templates(library)
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            raise InvalidRequestError(
                f"There is no task template '{name}' an assistant can offer.",
                hint=f"Did you mean '{close[0]}'?" if close else f"The templates are: {', '.join(known)}.",
            )


def offered_templates(library: TemplateLibrary) -> list[str]:
    """The names of the templates an assistant may offer: the library's, less the internal ones."""
    return [n for n in library.names() if n not in INTERNAL_TEMPLATES]


class Assistants:
    """The assistants over one history store: the built-ins (as shipped or as edited) and custom ones.
    ``templates``: the prompt template library an assistant's task templates are checked against when it is
    saved (None: not checked)."""

    def __init__(self, history: HistoryStore, templates: TemplateLibrary | None = None):
        self.history = history
        self.templates = templates

    def template_choices(self) -> list[tuple[str, str]]:
        """(name, title) of each template an assistant may offer; a user's copy that cannot be read shows
        its name."""
        if self.templates is None:
            return []
        choices = []
        for name in offered_templates(self.templates):
            try:
                title = self.templates.get(name).title
            except EngineError:
                title = name
            choices.append((name, title))
        return choices

    def all(self) -> list[Preset]:
        """Built-ins first (in shipped order), then custom ones by name."""
        saved = {p.id: p for p in (_from_row(r) for r in self.history.read(f"SELECT {_COLUMNS} FROM assistants"))}
        builtins = [saved.pop(p.id, p) for p in BUILTINS]
        custom = sorted(saved.values(), key=lambda p: (p.name.casefold(), p.id))
        return builtins + custom

    def get(self, assistant_id: str) -> Preset:
        rows = self.history.read(f"SELECT {_COLUMNS} FROM assistants WHERE id = ?", (assistant_id,))
        if rows:
            return _from_row(rows[0])
        if assistant_id in _BUILTIN_IDS:
            return _BUILTIN_IDS[assistant_id]
        raise NotFoundError(f"The assistant '{assistant_id}' does not exist (it may have been deleted).")

    def find(self, assistant_id: str | None) -> Preset | None:
        """The assistant, or None for no id or one that was deleted."""
        if assistant_id is None:
            return None
        try:
            return self.get(assistant_id)
        except NotFoundError:
            return None

    def create(
        self,
        name: str,
        system_prompt: str,
        *,
        model: str | None = None,
        sampling: dict | None = None,
        collections: list[str] | None = None,
        tools: list[str] | None = None,
        templates: list[str] | None = None,
    ) -> Preset:
        preset = Preset(
            f"custom-{uuid.uuid4().hex[:12]}",
            name,
            system_prompt,
            model,
            sampling or {},
            collections,
            tools or [],
            templates or [],
        )
        return self.save(preset)

    def save(self, preset: Preset) -> Preset:
        """Create or replace an assistant (a built-in's id saves its edited version)."""
        preset = dataclasses.replace(checked(preset), builtin=preset.id in _BUILTIN_IDS, updated_at=time.time())
        if self.templates is not None:
            _check_templates(preset.templates, self.templates)
        with self.history.transaction() as db:
            db.execute(
                f"INSERT OR REPLACE INTO assistants({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    preset.id,
                    preset.name,
                    preset.system_prompt,
                    preset.model,
                    json.dumps(preset.sampling) if preset.sampling else None,
                    None if preset.collections is None else json.dumps(preset.collections),
                    json.dumps(preset.tools) if preset.tools else None,
                    json.dumps(preset.templates) if preset.templates else None,
                    int(preset.builtin),
                    preset.updated_at,
                ),
            )
        return preset

    def duplicate(self, assistant_id: str) -> Preset:
        """A custom copy of an assistant, named "… (copy)"."""
        source = self.get(assistant_id)
        name = source.name if len(source.name) <= NAME_MAX_CHARS - 7 else source.name[: NAME_MAX_CHARS - 8] + "…"
        return self.create(
            f"{name} (copy)",
            source.system_prompt,
            model=source.model,
            sampling=dict(source.sampling),
            collections=None if source.collections is None else list(source.collections),
            tools=list(source.tools),
            templates=list(source.templates),
        )

    def delete(self, assistant_id: str) -> None:
        """Delete a custom assistant; conversations that used it go back to none."""
        if assistant_id in _BUILTIN_IDS:
            raise InvalidRequestError(
                "A built-in assistant cannot be deleted.", hint="Reset it to undo your changes instead."
            )
        with self.history.transaction() as db:
            if db.execute("DELETE FROM assistants WHERE id = ?", (assistant_id,)).rowcount == 0:
                raise NotFoundError(f"The assistant '{assistant_id}' does not exist (it may have been deleted).")
            db.execute("UPDATE conversations SET assistant_id = NULL WHERE assistant_id = ?", (assistant_id,))
            db.execute("UPDATE projects SET assistant_id = NULL WHERE assistant_id = ?", (assistant_id,))

    def reset(self, assistant_id: str) -> Preset:
        """A built-in back as shipped."""
        if assistant_id not in _BUILTIN_IDS:
            raise InvalidRequestError("Only a built-in assistant can be reset.")
        with self.history.transaction() as db:
            db.execute("DELETE FROM assistants WHERE id = ?", (assistant_id,))
        return _BUILTIN_IDS[assistant_id]

    def is_edited(self, assistant_id: str) -> bool:
        """Whether a built-in differs from what shipped (it has a saved row)."""
        return bool(self.history.read("SELECT 1 FROM assistants WHERE id = ?", (assistant_id,)))

    # Conversations ---------------------------------------------------------------------------

    def choose(self, conversation_id: int, assistant_id: str | None) -> Preset | None:
        """Set a conversation's assistant (None: none); its documents and tools become the conversation's
        (an assistant without documents leaves the conversation's choice as it is)."""
        preset = None if assistant_id is None else self.get(assistant_id)
        with self.history.transaction() as db:
            sets, args = ["assistant_id = ?"], [assistant_id]
            if preset is not None and preset.collections is not None:
                sets.append("collections = ?")
                args.append(json.dumps(sorted(set(preset.collections))))
            if preset is not None and preset.tools:
                sets.append("tools = ?")
                args.append(json.dumps(preset.tools))
            cur = db.execute(f"UPDATE conversations SET {', '.join(sets)} WHERE id = ?", (*args, conversation_id))
            if cur.rowcount == 0:
                raise NotFoundError(f"Conversation {conversation_id} does not exist (it may have been deleted).")
        return preset

    def of_conversation(self, conversation_id: int) -> Preset | None:
        """The conversation's assistant (None: none, or one since deleted)."""
        rows = self.history.read("SELECT assistant_id FROM conversations WHERE id = ?", (conversation_id,))
        return self.find(rows[0][0]) if rows else None

    def for_turn(self, conversation_id: int | None, chosen: object = UNSET) -> Preset | None:
        """The assistant a turn answers with: ``chosen`` (an id or None, saved on the conversation first)
        or, left UNSET, the conversation's own. An answer that is not saved has none."""
        if conversation_id is None:
            return None
        if chosen is not UNSET:
            if chosen is not None and not isinstance(chosen, str):
                raise InvalidRequestError(f"An assistant is named by its id, not {chosen!r}.")
            return self.choose(conversation_id, chosen)
        return self.of_conversation(conversation_id)
