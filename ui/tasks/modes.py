"""What each task mode sends: the engine call to run and the user message it is saved as.

Plain functions of the options, no widgets: the task bar and the Documents panel
both build their requests here, and tests can read them directly.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from engine.answer import AnswerStats
from engine.errors import InvalidRequestError
from engine.tasks.base import TaskContext
from ui.chat.markdown import language_label

MODES: dict[str, str] = {
    "chat": "Chat",
    "summarize": "Summarize",
    "translate": "Translate",
    "code": "Code",
    "extract": "Extract JSON",
}

PLACEHOLDERS: dict[str, str] = {
    "chat": "Ask anything…  (Enter to send, Shift+Enter for a new line)",
    "summarize": "Paste the text to summarize…  (Enter runs it)",
    "translate": "Paste the text to translate (Markdown and code blocks are kept)…  (Enter runs it)",
    "code": "Paste the code to work on…  (Enter runs it, Shift+Enter for a new line)",
    "extract": "Paste the text to pull the data out of…  (Enter runs it)",
}


# The mode each task template belongs to (code_<action> templates: Code, that action).
TEMPLATE_MODES: dict[str, str] = {"summarize": "summarize", "translate": "translate", "extract_json": "extract"}


def offered_modes(templates: list[str]) -> tuple[list[str], list[str]]:
    """The modes and code actions an assistant's ``templates`` offer, in the bar's order (actions in the
    assistant's order); no templates: every mode and action. Names of no mode are left out."""
    from engine.tasks.code import ACTIONS

    if not templates:
        return list(MODES), list(ACTIONS)
    actions = [name[5:] for name in templates if name.startswith("code_") and name[5:] in ACTIONS]
    wanted = {TEMPLATE_MODES[name] for name in templates if name in TEMPLATE_MODES} | ({"code"} if actions else set())
    return [mode for mode in MODES if mode == "chat" or mode in wanted], actions


@dataclass(frozen=True)
class TaskRequest:
    """One task to run as a turn of a conversation."""

    name: str  # the engine task's name ("summarize", ...)
    request_text: str  # saved as the user's message, so the conversation reads well later
    run: Callable[[TaskContext], str]
    working: str  # what the progress row says before the task reports progress


_BLOCK_START = re.compile(r"^(\s|#|```|~~~|[-*+>|]|\d+[.)]\s|<)")
_CODE_REQUESTS = {
    "explain": "Explain this {}code",
    "review": "Review this {}code",
    "tests": "Write tests for this {}code",
    "fix": "Fix the error in this {}code",
}


def request_message(heading: str, text: str) -> str:
    """``heading: text`` on one line when the text opens with plain prose (the conversation's
    title then says what it is about), else the heading above the text, so Markdown stays intact."""
    if _BLOCK_START.match(text):
        return f"{heading}:\n\n{text}"
    return f"{heading}: {text}"


def _require(text: str, what: str) -> str:
    if not text.strip():
        raise InvalidRequestError(f"There is no {what} to work on.", hint="Type or paste it into the box first.")
    return text


def summarize_request(text: str, length: str) -> TaskRequest:
    from engine.tasks.summarize import LENGTHS, summarize

    _require(text, "text to summarize")
    label = LENGTHS.get(length, length).lower()
    return TaskRequest(
        "summarize",
        request_message(f"Summarize ({label})", text),
        lambda ctx: summarize(ctx, text, length),
        "Summarizing…",
    )


def document_summary_request(title: str, text: str, length: str) -> TaskRequest:
    """Summarize a document (or a collection) without pasting all of it into the conversation."""
    from engine.tasks.summarize import LENGTHS, summarize

    if not text.strip():
        raise InvalidRequestError(
            f"“{title}” has no text to summarize.", hint="It may be a scanned document without a text layer."
        )
    label = LENGTHS.get(length, length).lower()
    return TaskRequest(
        "summarize", f"Summarize ({label}): {title}", lambda ctx: summarize(ctx, text, length), f"Summarizing {title}…"
    )


def translate_request(text: str, target: str, source: str | None = None, detected: str | None = None) -> TaskRequest:
    """``source`` None detects the language; ``detected`` (if known) only makes the message read better."""
    from engine.tasks.translate import translate

    _require(text, "text to translate")
    if source:
        origin = f" from {source}"
    elif detected:
        origin = f" from {detected} (detected)"
    else:
        origin = ""
    return TaskRequest(
        "translate",
        request_message(f"Translate{origin} to {target}", text),
        lambda ctx: translate(ctx, text, target, source),
        f"Translating to {target}…",
    )


def code_request(code: str, action: str, error: str = "", library=None) -> TaskRequest:
    """``library``: a DocumentLibrary to look up related indexed files, or None."""
    from engine.tasks.code import ACTIONS, code_help, guess_language

    _require(code, "code")
    label = ACTIONS.get(action, action)
    language = guess_language(None, code)
    named = f"{language_label(language)} " if language else ""
    shown = code if "```" in code else f"```{language or ''}\n{code.rstrip()}\n```"
    request = _CODE_REQUESTS.get(action, label + " {}code").format(named) + f":\n\n{shown}"
    if error.strip():
        request += f"\n\nError:\n\n```\n{error.strip()}\n```"
    return TaskRequest(
        "code", request, lambda ctx: code_help(ctx, action, code, error=error.strip(), library=library), f"{label}…"
    )


def extract_request(text: str, schema: dict, schema_title: str = "") -> TaskRequest:
    from engine.tasks.extract import extract_json

    _require(text, "text to extract from")
    title = f" ({schema_title})" if schema_title else ""
    return TaskRequest(
        "extract",
        request_message(f"Extract JSON{title}", text),
        lambda ctx: extract_json(ctx, text, schema),
        "Extracting…",
    )


def parse_schema(text: str) -> dict:
    """The JSON schema typed in the schema editor, if guided output can honour it (its keywords, and the
    grammar it becomes within the limits every grammar is held to); else an InvalidRequestError naming
    the problem and where it is."""
    from engine.runtime.constrain import schema_to_grammar
    from engine.tasks.extract import parse_schema as parse

    schema = parse(text)
    schema_to_grammar(schema)  # checks the schema, then the grammar's size and nesting
    return schema


def answer_stats_text(stats: AnswerStats) -> str:
    """The status bar's summary of a finished answer: speed, first token, tokens, and for a task with
    several model calls how many and how long it took."""
    parts = []
    if stats.tokens_per_s:
        parts.append(f"{stats.tokens_per_s:.1f} tokens/s")
    if stats.time_to_first_token_s is not None and stats.generations == 1:
        parts.append(f"first token {stats.time_to_first_token_s:.2f} s")
    parts.append(f"{stats.completion_tokens} tokens")
    if stats.generations > 1:
        parts.append(f"{stats.generations} model calls")
        parts.append(f"{stats.total_s:.1f} s")
    if stats.dropped_messages:
        parts.append(f"{stats.dropped_messages} oldest messages left out of context")
    return " · ".join(parts)
