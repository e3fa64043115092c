"""Tool calls held to their tools' JSON schemas by a GBNF grammar, and the plan for one request's tools.

A model whose chat template cannot show tools gets them described in the system prompt (``describe_tools``)
and answers under a grammar: with tool_choice "auto" either a plain answer or one or more calls, with
"required" one or more calls, with a tool's name calls of that tool. A model whose template shows tools
answers freely with "auto" (its own syntax is parsed afterwards) and under a grammar in its own syntax with
"required" or a name. Under a grammar every call parses and its arguments validate: each tool's arguments
rule is ``engine.runtime.constrain.schema_to_grammar`` of its schema (with that function's checks and
limits), and the whole grammar then goes through the runtime's grammar check like any other.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from engine.errors import InvalidRequestError
from engine.runtime.constrain import schema_to_grammar
from engine.runtime.grammar_check import limits_problem
from engine.tools.base import ToolSpec
from engine.tools.formats import FORMATS, GENERIC, LLAMA3, MISTRAL, MISTRAL_ARGS, ToolFormat

MAX_CALLS = 4  # calls one turn may make under a grammar (a small model could otherwise go on calling)


@dataclass(frozen=True)
class ToolPlan:
    """How one request's tools are offered and its calls read."""

    tools: tuple[ToolSpec, ...]  # the tools the model is told about
    choice: str  # "auto", "required" or a tool's name
    format: ToolFormat  # the syntax calls are written in
    native: bool  # the model's own template shows the tools (else Locus's system prompt does)
    grammar: str | None  # what holds the answer to valid calls (None: the answer is free, then parsed)


def plan_tools(tools: tuple[ToolSpec, ...], choice: str, family: str | None) -> ToolPlan | None:
    """The plan for offering ``tools`` (a request's offered_tools) to a model whose template's tool family is
    ``family`` (None: its template cannot show tools); None when no tool is offered."""
    if not tools:
        return None
    fmt = FORMATS[family or GENERIC]
    forced = choice != "auto"
    grammar = tool_grammar(tools, fmt, allow_answer=not forced) if forced or family is None else None
    return ToolPlan(tools, choice, fmt, family is not None, grammar)


def openai_tool(spec: ToolSpec) -> dict:
    """A tool as OpenAI's API and the chat templates take it."""
    return {
        "type": "function",
        "function": {"name": spec.name, "description": spec.description, "parameters": spec.parameters},
    }


def describe_tools(tools: tuple[ToolSpec, ...], choice: str) -> str:
    """The system prompt's part that tells a model without tool support about the tools, in the Hermes form
    its grammar holds it to."""
    listing = "\n".join(json.dumps(openai_tool(t), ensure_ascii=False) for t in tools)
    if choice == "auto":
        rule = "Call a tool only when it helps to answer; otherwise answer directly."
    elif choice == "required":
        rule = "Answer now with one or more tool calls."
    else:
        rule = f"Answer now with a call of the tool '{choice}'."
    return (
        "# Tools\n\nYou may call one or more tools (functions) to help with the user's request. The tools are "
        "described as JSON within <tools></tools> tags:\n<tools>\n" + listing + "\n</tools>\n\n"
        "To call a tool, write a JSON object with its name and arguments within <tool_call></tool_call> "
        'tags, one block per call:\n<tool_call>\n{"name": <tool name>, "arguments": <the arguments as '
        "a JSON object>}\n</tool_call>\nEach result comes back to you within <tool_response></tool_response> "
        "tags. " + rule
    )


def tool_grammar(tools: tuple[ToolSpec, ...], fmt: ToolFormat, *, allow_answer: bool) -> str:
    """GBNF for one or more calls of ``tools`` in ``fmt``'s syntax (and, with ``allow_answer``, a plain
    answer instead); InvalidRequestError when a tool's schema cannot be held to, or the grammar is too big."""
    if not tools:
        raise InvalidRequestError("A tool grammar needs at least one tool.")
    rules, alternatives = [], []
    key = "parameters" if fmt.family == LLAMA3 else "arguments"
    for i, tool in enumerate(tools):
        prefix = f"t{i}-"
        try:
            arguments = schema_to_grammar(tool.parameters)
        except InvalidRequestError as exc:
            raise InvalidRequestError(
                f"The tool '{tool.name}' cannot be offered: {exc.message}", hint=exc.hint
            ) from None
        rules.append(_prefixed(arguments, prefix))
        opening = '{"name": ' + json.dumps(tool.name) + ', "' + key + '": '
        if fmt.family == MISTRAL_ARGS:
            call = f"{_literal(tool.name + '[ARGS]')} {prefix}root"
        elif fmt.family == MISTRAL:
            id_open, id_close = _literal(', "id": "'), _literal('"}')
            call = f"{_literal(opening)} {prefix}root {id_open} [a-zA-Z0-9]{{9}} {id_close}"
        else:
            call = f"{_literal(opening)} {prefix}root {_literal('}')}"
        rules.append(f"{prefix}call ::= {call}")
        alternatives.append(f"{prefix}call")
    one = "( " + " | ".join(alternatives) + " )"
    more = MAX_CALLS - 1 if fmt.max_calls > 1 else 0
    if fmt.family == LLAMA3:
        calls = one
    elif fmt.family == MISTRAL:
        calls = f'"[TOOL_CALLS][" {one} ( ", " {one} ){{0,{more}}} "]"'
    elif fmt.family == MISTRAL_ARGS:
        calls = f'"[TOOL_CALLS]" {one} ( "[TOOL_CALLS]" {one} ){{0,{more}}}'
    else:
        block = f'"<tool_call>\\n" {one} "\\n</tool_call>"'
        calls = f'{block} ( "\\n" {block} ){{0,{more}}}'
    head = ["root ::= calls" + (" | answer" if allow_answer else ""), f"calls ::= {calls}"]
    if allow_answer:
        head += _answer_rules(fmt.markers[0] if fmt.family != LLAMA3 else "{")
    grammar = "\n".join(head + rules) + "\n"
    problem = limits_problem(grammar)
    if problem:
        raise InvalidRequestError(
            f"The tools make a grammar too large to guide generation: {problem}.",
            hint="Offer fewer tools, or tools with smaller schemas.",
        )
    return grammar


def _answer_rules(marker: str) -> list[str]:
    """``answer``: any non-empty text that does not open with ``marker`` (so a call is never half-free)."""
    options = []
    for i, char in enumerate(marker):
        options.append(f"{_literal(marker[:i]) + ' ' if i else ''}[^{_class_char(char)}] answer-rest")
        if i:
            options.append(_literal(marker[:i]))
    return ["answer ::= " + " | ".join(options), "answer-rest ::= [^\\x00]*"]


def _literal(text: str) -> str:
    """A GBNF string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _class_char(char: str) -> str:
    return char if char.isalnum() else f"\\x{ord(char):02X}"


# A GBNF text split into comments, literals, classes and rule names (with "::=" where one is defined).
_GBNF_PART = re.compile(r'#[^\n]*|"(?:\\.|[^"\\])*"|\[(?:\\.|[^\]\\])*\]|([a-zA-Z0-9-]+)(\s*::=)?|.', re.S)


def _prefixed(grammar: str, prefix: str) -> str:
    """The grammar with every rule it defines renamed ``prefix`` + name (several tools' rules side by side)."""
    defined = {m.group(1) for m in _GBNF_PART.finditer(grammar) if m.group(1) and m.group(2)}
    return _GBNF_PART.sub(lambda m: prefix + m.group(0) if m.group(1) in defined else m.group(0), grammar).strip()
