"""What every importer shares: the parsed form of a conversation, the limits a file must keep, and checks.

An importer turns a file into ``ParsedConversation``s without touching the history; ``save`` writes them in
one transaction. Every file is treated as hostile: its size is capped before it is read, JSON nesting is
capped, every value's type is checked, and anything wrong refuses the whole file with ``ImportRefused``
(a sentence naming what is wrong), so nothing partial is ever saved.
"""

from __future__ import annotations

import json
import math
import unicodedata
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import EngineError

MAX_FILE_BYTES = 256 * 1024 * 1024  # a ChatGPT export of years of use is tens of MB
MAX_DEPTH = 64  # JSON nesting; the known formats need under 15
MAX_CONVERSATIONS = 20_000
MAX_MESSAGES = 1_000_000  # in one file, all conversations together
MAX_CONTENT_CHARS = 4_000_000  # one message, its parts joined
MAX_IMPORT_CHARS = 300_000_000  # every message of one import together (parts joined, placeholders counted)
MAX_NEW_PROJECTS = 100  # projects one import may create; the conversations past it come in without one
MAX_TITLE_CHARS = 500
ROLES = frozenset({"system", "user", "assistant"})
# A time outside these bounds (1990 .. 2200) is not a real message time.
_MIN_TIME, _MAX_TIME = 631_152_000.0, 7_258_118_400.0


class ImportRefused(EngineError):
    """A file that is not a conversation export Locus reads, or is damaged or too big; nothing was saved."""

    code = "import_refused"


@dataclass
class ParsedMessage:
    key: str  # the message's id in the file (unique within its conversation)
    parent: str | None  # the key of the message it follows; None: the first
    role: str
    content: str
    created_at: float
    status: str = "complete"
    kind: str = "message"
    stats: dict | None = None
    error: str | None = None
    sources: list[dict] | None = None
    answered_by: dict | None = None


@dataclass
class ParsedConversation:
    title: str
    created_at: float
    updated_at: float
    messages: list[ParsedMessage]  # every parent before its children
    current_leaf: str | None = None  # the key of the last message of the branch shown; None: the newest
    title_is_auto: bool = False
    collections: list[str] | None = None
    backend: str | None = None
    tools: list[str] | None = None
    assistant_id: str | None = None
    project: str | None = None  # a project's name
    pinned: bool = False


@dataclass
class Parsed:
    source: str  # "Locus", "ChatGPT", "LM Studio", "Jan"
    conversations: list[ParsedConversation]
    skipped: dict[str, int] = field(default_factory=dict)  # what was left out (tool messages, images), counted

    def skip(self, what: str, n: int = 1) -> None:
        self.skipped[what] = self.skipped.get(what, 0) + n


def refuse(name: str, reason: str) -> ImportRefused:
    """The error that refuses a whole file, naming it and what is wrong."""
    return ImportRefused(f"'{name}' was not imported: {reason}", hint="Nothing was saved.", detail=f"{name}: {reason}")


def read_bytes(path: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """A file's bytes, refused when it is not a regular file or is larger than ``limit``."""
    if not path.is_file():
        raise refuse(path.name, "it is not a file.")
    size = path.stat().st_size
    if size > limit:
        raise refuse(path.name, f"it is {size / 2**20:.0f} MB, more than the {limit / 2**20:.0f} MB Locus imports.")
    with path.open("rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:  # grew while being read
        raise refuse(path.name, f"it is more than the {limit / 2**20:.0f} MB Locus imports.")
    return data


def read_zip_member(path: Path, member: str, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of ``member`` (at the top or in one folder) of a zip file, as ChatGPT's data export holds
    conversations.json; its unpacked size is checked against ``limit`` before and while it is read."""
    try:
        archive = zipfile.ZipFile(read_path(path))
    except (zipfile.BadZipFile, OSError) as exc:
        raise refuse(path.name, f"it is not a readable zip file ({exc}).") from None
    with archive:
        infos = [
            i for i in archive.infolist() if i.filename.rsplit("/", 1)[-1] == member and i.filename.count("/") <= 1
        ]
        if not infos:
            raise refuse(path.name, f"the zip file holds no {member}.")
        info = min(infos, key=lambda i: i.filename.count("/"))
        if info.file_size > limit:
            raise refuse(path.name, f"its {member} is more than the {limit / 2**20:.0f} MB Locus imports.")
        try:
            with archive.open(info) as f:
                data = f.read(limit + 1)
        except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError) as exc:
            raise refuse(path.name, f"its {member} cannot be unpacked ({exc}).") from None
    if len(data) > limit:  # the zip's directory understated it
        raise refuse(path.name, f"its {member} is more than the {limit / 2**20:.0f} MB Locus imports.")
    return data


def read_path(path: Path) -> Path:
    """``path``, refused unless it is a regular file no larger than the cap."""
    if not path.is_file():
        raise refuse(path.name, "it is not a file.")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise refuse(path.name, f"it is more than the {MAX_FILE_BYTES / 2**20:.0f} MB Locus imports.")
    return path


def load_json(data: bytes, name: str) -> Any:
    """Parsed JSON, refused when it is not UTF-8 JSON or nests deeper than MAX_DEPTH."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise refuse(name, "it is not UTF-8 text (not a JSON export).") from None
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise refuse(name, f"its JSON nests deeper than {MAX_DEPTH} levels.") from None
    except ValueError as exc:
        raise refuse(name, f"it is not valid JSON ({exc}).") from None
    check_depth(value, name)
    return value


def _no_constant(token: str) -> None:
    raise ValueError(f"{token} is not a JSON number")


def check_depth(value: Any, name: str, limit: int = MAX_DEPTH) -> None:
    """Refuse a value nesting lists and objects deeper than ``limit`` (walked without recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            raise refuse(name, f"its JSON nests deeper than {limit} levels.")
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values() if isinstance(v, (dict, list)))
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item if isinstance(v, (dict, list)))


class Checker:
    """Typed reads of hostile JSON: each failure refuses the file with the place that is wrong."""

    def __init__(self, name: str):
        self.name = name
        self.chars = 0  # the characters of the messages read so far (MAX_IMPORT_CHARS)

    def fail(self, where: str, what: str) -> ImportRefused:
        return refuse(self.name, f"{where}: {what}.")

    def obj(self, value: Any, where: str) -> dict:
        if not isinstance(value, dict):
            raise self.fail(where, f"expected an object, found {_kind(value)}")
        return value

    def array(self, value: Any, where: str) -> list:
        if not isinstance(value, list):
            raise self.fail(where, f"expected a list, found {_kind(value)}")
        return value

    def text(self, value: Any, where: str, *, optional: bool = False, limit: int = MAX_CONTENT_CHARS) -> str | None:
        if value is None and optional:
            return None
        if not isinstance(value, str):
            raise self.fail(where, f"expected text, found {_kind(value)}")
        if len(value) > limit:
            raise self.fail(where, f"the text is longer than {limit} characters")
        if "\x00" in value:
            raise self.fail(where, "the text holds a NUL character")
        return value

    def choice(self, value: Any, allowed: frozenset[str], where: str, what: str, *, default: str | None = None) -> str:
        """One of ``allowed``: anything else (a list, a number, other text) refuses the file, naming ``where``."""
        if value is None and default is not None:
            return default
        if not isinstance(value, str):
            raise self.fail(where, f"expected text ({what}), found {_kind(value)}")
        if value not in allowed:
            raise self.fail(where, f"{value[:100]!r} is not {what}")
        return value

    def joined(self, pieces: list[str], sep: str, where: str, *, message: bool = True) -> str:
        """``pieces`` joined by ``sep``, refused when the result is longer than MAX_CONTENT_CHARS (checked
        before joining); ``message``: it is a message's final text, counted against MAX_IMPORT_CHARS."""
        size = sum(len(p) for p in pieces) + len(sep) * max(len(pieces) - 1, 0)
        if size > MAX_CONTENT_CHARS:
            raise self.fail(where, f"the message is longer than {MAX_CONTENT_CHARS} characters")
        if message:
            self.chars += size
            if self.chars > MAX_IMPORT_CHARS:
                raise refuse(self.name, f"its messages hold more than {MAX_IMPORT_CHARS} characters.")
        return sep.join(pieces)

    def number(self, value: Any, where: str, *, optional: bool = False) -> float | None:
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.fail(where, f"expected a number, found {_kind(value)}")
        return float(value)

    def time(self, value: Any, where: str, *, optional: bool = False) -> float | None:
        """A time in seconds since 1970; milliseconds (as JavaScript apps write them) are recognised."""
        seconds = self.number(value, where, optional=optional)
        if seconds is None:
            return None
        if seconds > _MAX_TIME:
            seconds /= 1000.0
        if not _MIN_TIME <= seconds <= _MAX_TIME:
            raise self.fail(where, f"{value!r} is not a date between 1990 and 2200")
        return seconds

    def string_list(self, value: Any, where: str, *, optional: bool = False) -> list[str] | None:
        if value is None and optional:
            return None
        items = self.array(value, where)
        if len(items) > 10_000:
            raise self.fail(where, "the list is too long")
        return [str(self.text(v, f"{where}[{i}]", limit=1000)) for i, v in enumerate(items)]


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "text", bool: "true/false", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__
    )


def clean_name(text: str | None, limit: int) -> str:
    """A name from a file (a title, a project) on one line, without control or bidi-override characters (as
    engine/rag/loaders/base.py short_label makes document names), at most ``limit`` characters."""
    shown = "".join(" " if unicodedata.category(ch) in ("Cc", "Cf") else ch for ch in (text or "")[: limit * 4])
    return " ".join(shown.split())[:limit]


def clean_title(title: str | None, fallback: str = "Imported conversation") -> str:
    return clean_name(title, MAX_TITLE_CHARS) or fallback


def order_tree(messages: list[ParsedMessage], name: str, where: str) -> list[ParsedMessage]:
    """The messages with every parent before its children (the file's order kept otherwise); refused when a
    parent is missing, a key repeats or the parents loop."""
    by_key: dict[str, ParsedMessage] = {}
    for m in messages:
        if m.key in by_key:
            raise refuse(name, f"{where}: message id {m.key!r} appears twice.")
        by_key[m.key] = m
    children: dict[str | None, list[ParsedMessage]] = {}
    for m in messages:
        if m.parent is not None and m.parent not in by_key:
            raise refuse(name, f"{where}: message {m.key!r} follows {m.parent!r}, which is not in the file.")
        children.setdefault(m.parent, []).append(m)
    seen: set[str] = set()
    for m in messages:
        if m.parent is not None and m.parent not in seen:
            break
        seen.add(m.key)
    else:
        return list(messages)  # already in order (a Locus export is: ids grow from parent to child)
    ordered: list[ParsedMessage] = []
    stack = list(reversed(children.get(None, [])))
    while stack:
        m = stack.pop()
        ordered.append(m)
        stack.extend(reversed(children.get(m.key, [])))
    if len(ordered) != len(messages):
        raise refuse(name, f"{where}: the messages' parents form a loop.")
    return ordered


def message_count(conversations: list[ParsedConversation]) -> int:
    return sum(len(c.messages) for c in conversations)
