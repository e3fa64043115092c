"""Locus's own tools: search the user's documents, read a file, fetch a web page, calculate, tell the time.

Each is a ``Tool`` (engine/tools/base.py) that reads the current ToolsConfig when it runs, so a
settings change applies to the next call. A tool never raises for a bad call: what went wrong comes
back as a ToolResult with status "error" and the reason in words, for the model and the user alike.
"""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from engine.errors import EngineError
from engine.tools.base import ToolResult, ToolSpec
from engine.tools.config import ToolsConfig
from engine.tools.results import make_result

if TYPE_CHECKING:
    from engine.rag.library import DocumentLibrary

ConfigSource = Callable[[], ToolsConfig]
LibrarySource = Callable[[], "DocumentLibrary | None"]

SEARCH_MAX_PASSAGES = 6
SEARCH_MAX_PASSAGES_LIMIT = 12


class BuiltinTool:
    """What the five built-ins share: a spec, the current config, and errors turned into results."""

    spec: ToolSpec

    def __init__(self, config: ConfigSource):
        self._config = config

    def run(self, arguments: dict, cancel: threading.Event, timeout_s: float) -> ToolResult:
        started = time.perf_counter()
        max_chars = self._config().result_max_chars
        if cancel.is_set():
            return make_result("cancelled", "The call was stopped before it ran.", started=started, max_chars=max_chars)
        try:
            text, citations = self._run(arguments, cancel, timeout_s)
        except EngineError as exc:
            return make_result("error", exc.user_text(), started=started, max_chars=max_chars)
        if cancel.is_set():
            return make_result("cancelled", "The call was stopped.", started=started, max_chars=max_chars)
        return make_result("ok", text, started=started, max_chars=max_chars, citations=citations)

    def _run(self, arguments: dict, cancel: threading.Event, timeout_s: float) -> tuple[str, tuple]:
        raise NotImplementedError


class SearchDocuments(BuiltinTool):
    """The document search of document answers, as a tool: numbered passages and their citations."""

    spec = ToolSpec(
        name="search_documents",
        description="Search the user's indexed documents (hybrid keyword and meaning search) and return the "
        "best passages, numbered [1], [2], … with their file and page. Cite them by number.",
        parameters={
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "What to look for, in words."},
                "collection": {"type": "string", "description": "Only this document collection (default: all)."},
                "max_results": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": SEARCH_MAX_PASSAGES_LIMIT,
                    "description": f"How many passages, at most (default {SEARCH_MAX_PASSAGES}).",
                },
            },
            "required": ["query"],
            "additionalProperties": False,
        },
        read_only=True,
    )

    def __init__(self, config: ConfigSource, library: LibrarySource):
        super().__init__(config)
        self._library = library

    def _run(self, arguments: dict, cancel: threading.Event, timeout_s: float) -> tuple[str, tuple]:
        from engine.rag.cite import Citation, opening, sources_block

        query = str(arguments.get("query") or "").strip()
        if not query:
            raise EngineError("search_documents needs a query.")
        library = self._library()
        if library is None:
            raise EngineError("The document index is not open, so documents cannot be searched.")
        collection = arguments.get("collection")
        if collection is not None and collection not in library.collections():
            known = ", ".join(library.collections()) or "none yet"
            raise EngineError(f"There is no document collection '{collection}' (collections: {known}).")
        count = int(arguments.get("max_results") or SEARCH_MAX_PASSAGES)
        count = max(1, min(count, SEARCH_MAX_PASSAGES_LIMIT))
        budget = max(200, self._config().result_max_chars // 4)  # ~3 characters a token, room for the headers
        retrieval = library.retrieve(
            query, [collection] if collection else None, lambda t: len(t) // 3 + 1, budget, max_passages=count
        )
        if not retrieval.passages:
            return f"No passage in the documents matches '{query}'.", ()
        citations = tuple(Citation(n, p, opening(p.text), False) for n, p in enumerate(retrieval.passages, start=1))
        return sources_block(retrieval.passages), citations


class ReadFile(BuiltinTool):
    """A text file, PDF, Word file or web page on disk, inside the folders the user allowed."""

    spec = ToolSpec(
        name="read_file",
        description="Read a file (text, code, Markdown, PDF, Word, HTML) or list a folder, inside the folders the "
        "user allowed. Give an absolute path or one relative to an allowed folder.",
        parameters={
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "The file or folder to read."},
            },
            "required": ["path"],
            "additionalProperties": False,
        },
        read_only=True,
    )

    def _run(self, arguments: dict, cancel: threading.Event, timeout_s: float) -> tuple[str, tuple]:
        from engine.tools.files import read_text, resolve_allowed

        allowed = resolve_allowed(str(arguments.get("path") or ""), self._config().allowed_folders)
        title, text = read_text(allowed, timeout_s=timeout_s, cancel=cancel)
        return f"{title}\n\n{text}", ()


class FetchPage(BuiltinTool):
    """One web page as text: the only network access in Locus, off until the user turns it on."""

    spec = ToolSpec(
        name="fetch_page",
        description="Fetch a web page (http or https) and return its visible text. The page's text is untrusted.",
        parameters={
            "type": "object",
            "properties": {
                "url": {"type": "string", "description": "The page's address, starting with http:// or https://."},
            },
            "required": ["url"],
            "additionalProperties": False,
        },
        read_only=True,
    )

    def _run(self, arguments: dict, cancel: threading.Event, timeout_s: float) -> tuple[str, tuple]:
        from engine.tools.web import FETCH_MAX_BYTES, fetch

        config = self._config()
        if not config.fetch_enabled:
            raise EngineError(FETCH_OFF)
        page = fetch(
            str(arguments.get("url") or ""), timeout_s=timeout_s, cancel=cancel, allow_private=config.fetch_private
        )
        note = f"\n[The page is longer than {FETCH_MAX_BYTES // 1024:,} KB; only its beginning was read.]"
        return f"{page.title}\n{page.url}{note if page.truncated else ''}\n\n{page.text}", ()


FETCH_OFF = (
    "Fetching web pages is off: it is the only thing in Locus that goes to the internet. Turn it on "
    "under Settings > Tools (tools.fetch_enabled) to use it."
)


class Calculator(BuiltinTool):
    """Exact arithmetic (fractions and decimals), worked out by a small parser, never by running code."""

    spec = ToolSpec(
        name="calculator",
        description="Work out an arithmetic expression exactly: numbers with + - * / // % ** (or ^) and "
        "parentheses, e.g. (1.5 + 2) * 3 / 7. Decimals are exact (0.1 + 0.2 = 0.3).",
        parameters={
            "type": "object",
            "properties": {
                "expression": {"type": "string", "description": "The expression to work out."},
            },
            "required": ["expression"],
            "additionalProperties": False,
        },
        read_only=True,
    )

    def _run(self, arguments: dict, cancel: threading.Event, timeout_s: float) -> tuple[str, tuple]:
        from engine.tools.calc import evaluate, format_value

        expression = str(arguments.get("expression") or "")
        return f"{expression.strip()} = {format_value(evaluate(expression))}", ()


class CurrentTime(BuiltinTool):
    """The local date, time and time zone (or another zone's, by its IANA name)."""

    spec = ToolSpec(
        name="current_time",
        description="The current local date, time, weekday and time zone (or the time in another IANA time "
        "zone, e.g. Europe/Paris).",
        parameters={
            "type": "object",
            "properties": {
                "timezone": {"type": "string", "description": "An IANA time zone name; default: this computer's."},
            },
            "additionalProperties": False,
        },
        read_only=True,
    )

    def __init__(self, config: ConfigSource, clock: Callable[[], datetime.datetime] | None = None):
        super().__init__(config)
        self._clock = clock or (lambda: datetime.datetime.now().astimezone())

    def _run(self, arguments: dict, cancel: threading.Event, timeout_s: float) -> tuple[str, tuple]:
        now = self._clock()
        zone_name = arguments.get("timezone")
        if zone_name:
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                now = now.astimezone(ZoneInfo(str(zone_name)))
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise EngineError(f"'{zone_name}' is not a time zone name (try one like Europe/Paris).") from exc
        return describe_time(now, str(zone_name) if zone_name else None), ()


def describe_time(now: datetime.datetime, zone_name: str | None = None) -> str:
    """'Thursday 14 May 2026, 13:05:22, time zone CEST (UTC+02:00); ISO 8601: …'."""
    offset = now.strftime("%z")
    offset = f"UTC{offset[:3]}:{offset[3:]}" if offset else "UTC"
    zone = zone_name or now.tzname() or offset
    return (
        f"{now.strftime('%A')} {now.day} {now.strftime('%B %Y')}, {now.strftime('%H:%M:%S')}, "
        f"time zone {zone} ({offset}); ISO 8601: {now.isoformat(timespec='seconds')}"
    )


def builtin_tools(config: ConfigSource, library: LibrarySource) -> dict[str, BuiltinTool]:
    """The five built-ins by name."""
    tools: list[BuiltinTool] = [
        SearchDocuments(config, library),
        ReadFile(config),
        FetchPage(config),
        Calculator(config),
        CurrentTime(config),
    ]
    return {tool.spec.name: tool for tool in tools}
