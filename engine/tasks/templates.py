"""Prompt templates: one TOML file per task prompt, built in or copied and edited by the user.

A template has a title, a system prompt, optional few-shot examples and a user
turn, all Jinja text over the variables it declares. Built-in templates live in
resources/prompts/; a user's copy of the same name in <config>/prompts/ wins,
so edits survive upgrades. A template that uses an undeclared variable or has
bad syntax is refused with a TemplateError that names the template, the problem
and where it is.
"""

from __future__ import annotations

import difflib
import os
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

import jinja2
import jinja2.meta
import jinja2.sandbox
import tomli_w

from engine.errors import NotFoundError, TemplateError
from engine.runtime.types import ChatMessage

_ENV = jinja2.sandbox.ImmutableSandboxedEnvironment(
    undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False
)
_PARTS = ("system", "user")
_KNOWN_KEYS = {"title", "description", "variables", "system", "user", "examples"}


@dataclass(frozen=True)
class PromptTemplate:
    """A task's prompt: system text, few-shot examples and a user turn over named variables."""

    name: str
    title: str
    description: str
    variables: tuple[str, ...]
    system: str
    user: str
    examples: tuple[tuple[str, str], ...] = ()  # (user, assistant) pairs
    origin: str = "builtin"  # "builtin" or "user"

    def render(self, **values: object) -> tuple[ChatMessage, ...]:
        """The messages for these variable values; a missing or unknown value is a TemplateError."""
        unknown = sorted(set(values) - set(self.variables))
        if unknown:
            raise TemplateError(
                f"Template '{self.name}' has no variable '{unknown[0]}'.",
                hint=f"Its variables are: {', '.join(self.variables) or 'none'}.",
            )
        messages = []
        system = self._render_part("system", self.system, values)
        if system.strip():
            messages.append(ChatMessage("system", system))
        for i, (user, assistant) in enumerate(self.examples, 1):
            messages.append(ChatMessage("user", self._render_part(f"example {i}", user, values)))
            messages.append(ChatMessage("assistant", self._render_part(f"example {i}", assistant, values)))
        messages.append(ChatMessage("user", self._render_part("user", self.user, values)))
        return tuple(messages)

    def _render_part(self, part: str, source: str, values: dict) -> str:
        try:
            return _ENV.from_string(source).render(**values)
        except jinja2.UndefinedError as exc:
            raise TemplateError(
                f"Template '{self.name}' ({part}) needs a value: {exc.message}.",
                hint=f"Give every variable: {', '.join(self.variables)}.",
            ) from exc
        except jinja2.TemplateError as exc:
            raise TemplateError(f"Template '{self.name}' ({part}) could not be rendered: {exc}.") from exc

    def to_toml(self) -> str:
        """The template as the TOML text it is stored in."""
        data: dict = {
            "title": self.title,
            "description": self.description,
            "variables": list(self.variables),
            "system": self.system,
            "user": self.user,
        }
        if self.examples:
            data["examples"] = [{"user": u, "assistant": a} for u, a in self.examples]
        return tomli_w.dumps(data, multiline_strings=True)


def parse_template(name: str, text: str, origin: str = "user") -> PromptTemplate:
    """Read and check a template's TOML text; every problem is a TemplateError naming it."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TemplateError(f"Template '{name}' is not valid TOML: {exc}.") from exc
    extra = sorted(set(data) - _KNOWN_KEYS)
    if extra:
        close = difflib.get_close_matches(extra[0], sorted(_KNOWN_KEYS), n=1)
        raise TemplateError(
            f"Template '{name}' has an unknown key '{extra[0]}'.",
            hint=f"Did you mean '{close[0]}'?" if close else f"Allowed keys: {', '.join(sorted(_KNOWN_KEYS))}.",
        )
    if not isinstance(data.get("user"), str) or not data["user"].strip():
        raise TemplateError(f"Template '{name}' needs a non-empty 'user' text.")
    variables = data.get("variables", [])
    if not isinstance(variables, list) or not all(isinstance(v, str) and v.isidentifier() for v in variables):
        raise TemplateError(f"Template '{name}': 'variables' must be a list of names like \"text\".")
    examples = []
    for i, ex in enumerate(data.get("examples", []), 1):
        if not (isinstance(ex, dict) and isinstance(ex.get("user"), str) and isinstance(ex.get("assistant"), str)):
            raise TemplateError(f"Template '{name}': example {i} needs a 'user' and an 'assistant' text.")
        examples.append((ex["user"], ex["assistant"]))
    template = PromptTemplate(
        name=name,
        title=str(data.get("title") or name),
        description=str(data.get("description", "")),
        variables=tuple(variables),
        system=str(data.get("system", "")),
        user=data["user"],
        examples=tuple(examples),
        origin=origin,
    )
    sources = [("system", template.system), ("user", template.user)]
    sources += [(f"example {i}", t) for i, pair in enumerate(template.examples, 1) for t in pair]
    for part, source in sources:
        check_source(name, part, source, template.variables)
    return template


def check_source(name: str, part: str, source: str, variables: tuple[str, ...]) -> None:
    """Refuse Jinja text with bad syntax or a variable the template does not declare."""
    try:
        ast = _ENV.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"Template '{name}' ({part}), line {exc.lineno}: {exc.message}.") from exc
    unknown = sorted(jinja2.meta.find_undeclared_variables(ast) - set(variables))
    if unknown:
        close = difflib.get_close_matches(unknown[0], variables, n=1)
        raise TemplateError(
            f"Template '{name}' ({part}) uses an unknown variable '{unknown[0]}'.",
            hint=f"Did you mean '{close[0]}'?" if close else f"Declared variables: {', '.join(variables) or 'none'}.",
        )


class TemplateLibrary:
    """Built-in templates, overridden by the user's edited copies of the same name."""

    def __init__(self, builtin_dir: Path, user_dir: Path | None = None):
        self.builtin_dir = Path(builtin_dir)
        self.user_dir = Path(user_dir) if user_dir is not None else None

    def names(self) -> list[str]:
        found = {p.stem for p in self.builtin_dir.glob("*.toml")}
        if self.user_dir is not None and self.user_dir.is_dir():
            found |= {p.stem for p in self.user_dir.glob("*.toml")}
        return sorted(found)

    def user_path(self, name: str) -> Path:
        if self.user_dir is None:
            raise TemplateError("There is no folder for user templates.")
        return self.user_dir / f"{name}.toml"

    def is_customised(self, name: str) -> bool:
        return self.user_dir is not None and self.user_path(name).is_file()

    def builtin(self, name: str) -> PromptTemplate:
        path = self.builtin_dir / f"{name}.toml"
        if not path.is_file():
            raise NotFoundError(f"There is no built-in prompt template '{name}'.")
        return parse_template(name, path.read_text(encoding="utf-8"), origin="builtin")

    def get(self, name: str) -> PromptTemplate:
        """The user's copy when there is one, else the built-in template."""
        if self.is_customised(name):
            return parse_template(name, self.user_path(name).read_text(encoding="utf-8"), origin="user")
        try:
            return self.builtin(name)
        except NotFoundError:
            close = difflib.get_close_matches(name, self.names(), n=1)
            raise NotFoundError(
                f"There is no prompt template '{name}'.", hint=f"Did you mean '{close[0]}'?" if close else None
            ) from None

    def text(self, name: str) -> str:
        """The TOML text the editor shows: the user's copy, else the built-in file."""
        path = self.user_path(name) if self.is_customised(name) else self.builtin_dir / f"{name}.toml"
        if not path.is_file():
            raise NotFoundError(f"There is no prompt template '{name}'.")
        return path.read_text(encoding="utf-8")

    def save(self, name: str, text: str) -> PromptTemplate:
        """Check and save the user's version of a template (atomically); returns it parsed."""
        if not name.replace("_", "").replace("-", "").isalnum():
            raise TemplateError(f"'{name}' is not a usable template name (letters, digits, - and _).")
        template = parse_template(name, text, origin="user")
        path = self.user_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".toml", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return template

    def reset(self, name: str) -> None:
        """Drop the user's copy, going back to the built-in template."""
        if self.user_dir is not None:
            self.user_path(name).unlink(missing_ok=True)
