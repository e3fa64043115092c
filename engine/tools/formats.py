"""The tool-call syntax of each model family: which one a chat template uses, and reading calls out of an answer.

Current GGUFs' chat templates describe tools to the model and show it how to call one; each family writes
calls its own way:

- Llama 3.x: the whole answer is ``{"name": ..., "parameters": {...}}`` (3.1 and 3.3 may lead with the
  ``<|python_tag|>`` control token; built-in tools as ``<|python_tag|>name.call(key="value")``).
- Qwen 2.5 / Qwen3, Hermes 2 Pro / Hermes 3 and their kin: ``<tool_call>{"name": ..., "arguments": {...}}
  </tool_call>``, one block per call (several blocks: parallel calls); Qwen3-Coder, Qwen3.5 and Nemotron 3
  write ``<function=name><parameter=key>value</parameter></function>`` inside the block, GLM 4.x
  ``name<arg_key>key</arg_key><arg_value>value</arg_value>``.
- Mistral Nemo: ``[TOOL_CALLS][{"name": ..., "arguments": {...}, "id": "a1b2c3d4e"}, ...]``; Mistral Small
  3.2, Devstral and Ministral 3: ``[TOOL_CALLS]name[ARGS]{...}`` (optionally ``[CALL_ID]id`` before
  ``[ARGS]``), repeated for parallel calls.
- Anything else: a bare JSON call (or a list of them, or ``{"tool_calls": [...]}``) is still understood.

A template "supports tools" when it reads the ``tools`` variable and its call syntax is one of the above;
for any other template Locus describes the tools itself and has the model write the Hermes form, held to it
by a grammar (engine/tools/grammar.py). Every call read here is checked against its tool's JSON schema: one
that does not parse, names no offered tool or breaks its schema comes back with ``ToolCall.error`` set,
never dropped and never run.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import secrets
import string
from dataclasses import dataclass

from engine.runtime.constrain import validation_error
from engine.tools.base import ToolCall, ToolSpec

LLAMA3, HERMES, QWEN_XML, GLM, MISTRAL, MISTRAL_ARGS, GENERIC = (
    "llama3",
    "hermes",
    "qwen_xml",
    "glm",
    "mistral",
    "mistral_args",
    "generic",
)
_ID_CHARS = string.ascii_letters + string.digits


@dataclass(frozen=True)
class ToolFormat:
    """How one family writes calls: what opens a call in the answer, and which control tokens must be kept."""

    family: str
    markers: tuple[str, ...]  # text that opens a call wherever it appears in the answer
    # Control tokens of the family's syntax: llama.cpp renders control tokens as nothing, so the runtime
    # writes these out as text for the parser to see.
    specials: tuple[str, ...] = ()
    max_calls: int = 8  # calls in one turn the template can show back to the model

    def parse(self, text: str, tools: tuple[ToolSpec, ...]) -> tuple[str, tuple[ToolCall, ...]]:
        """The answer's text without its calls, and the calls (each checked against its tool's schema).

        Without calls the text comes back unchanged."""
        return parse_calls(text, self.family, tools)


FORMATS = {
    LLAMA3: ToolFormat(LLAMA3, ("<|python_tag|>",), specials=("<|python_tag|>",), max_calls=1),
    HERMES: ToolFormat(HERMES, ("<tool_call>",)),
    QWEN_XML: ToolFormat(QWEN_XML, ("<tool_call>",)),
    GLM: ToolFormat(GLM, ("<tool_call>",)),
    MISTRAL: ToolFormat(MISTRAL, ("[TOOL_CALLS]",), specials=("[TOOL_CALLS]",)),
    MISTRAL_ARGS: ToolFormat(MISTRAL_ARGS, ("[TOOL_CALLS]",), specials=("[TOOL_CALLS]", "[ARGS]", "[CALL_ID]")),
    # Locus's own form for templates that cannot show tools: the Hermes syntax, described in the system prompt.
    GENERIC: ToolFormat(GENERIC, ("<tool_call>",)),
}


def reads_tools(source: str | None) -> bool:
    """Whether a chat template reads the ``tools`` variable at all."""
    return source is not None and re.search(r"\btools\b", source) is not None


def family_of(source: str | None) -> str | None:
    """The tool-call family of a chat template that supports tools; None when it cannot show tools (it never
    reads ``tools``, or writes calls in a syntax not read here)."""
    if source is None or not reads_tools(source):
        return None
    if "[TOOL_CALLS]" in source:
        return MISTRAL_ARGS if "[ARGS]" in source else MISTRAL
    if "<tool_call>" in source:
        if "<function=" in source:
            return QWEN_XML
        if "<arg_key>" in source:
            return GLM
        if re.search(r'\\?"arguments\\?"', source):
            return HERMES
        return None
    if "<function=" in source:  # Functionary's <function=name>{...}</function>: not read here
        return None
    if "<|start_header_id|>" in source and ("<|python_tag|>" in source or '"parameters": ' in source):
        return LLAMA3
    return None


def new_call_id() -> str:
    """A fresh call id: ``call_`` and nine letters or digits."""
    return "call_" + "".join(secrets.choice(_ID_CHARS) for _ in range(9))


def short_id(call_id: str) -> str:
    """Mistral's templates take only ids of nine letters or digits: other ids are mapped onto one, the same
    each time (so a call and its result still match)."""
    if re.fullmatch(r"[A-Za-z0-9]{9}", call_id):
        return call_id
    digest = hashlib.sha256(call_id.encode("utf-8")).digest()
    return "".join(_ID_CHARS[b % len(_ID_CHARS)] for b in digest[:9])


# Reading calls ---------------------------------------------------------------------------------------


@dataclass
class _Raw:
    """One call as found in the answer, before it is checked."""

    name: str | None
    arguments: object  # a dict when it parsed; else the text, or None
    raw: str
    id: str | None = None
    problem: str | None = None  # what was wrong with its syntax


def parse_calls(text: str, family: str, tools: tuple[ToolSpec, ...]) -> tuple[str, tuple[ToolCall, ...]]:
    """``family``'s calls in ``text`` (any family's answer may also be a bare JSON call): the text left
    around them and the calls, checked. Without calls the text comes back unchanged."""
    reader = {LLAMA3: _llama3, MISTRAL: _mistral, MISTRAL_ARGS: _mistral}.get(family, _tagged)
    content, raws = reader(text)
    if not raws:
        content, raws = _bare_json(text, tools)
    if not raws:
        return text, ()
    return content.strip(), tuple(check_call(r, tools) for r in raws)


def read_call(
    name: str, arguments: object, tools: tuple[ToolSpec, ...], *, call_id: str | None = None, raw: str = ""
) -> ToolCall:
    """One call given whole (as OpenAI's API sends it: arguments as JSON text, or already an object), checked."""
    if isinstance(arguments, str):
        text = arguments
        try:
            arguments = json.loads(text) if text.strip() else {}
        except (json.JSONDecodeError, RecursionError):
            return check_call(
                _Raw(name, None, raw or text, call_id, f"The arguments of the call to '{name}' are not valid JSON."),
                tools,
            )
    return check_call(_Raw(name, arguments, raw or json.dumps(arguments, ensure_ascii=False), call_id), tools)


def check_call(raw: _Raw, tools: tuple[ToolSpec, ...]) -> ToolCall:
    """A call as ToolCall: ``error`` says why it cannot run (syntax, unknown tool, arguments outside the schema)."""
    call_id = raw.id or new_call_id()
    name = raw.name if isinstance(raw.name, str) else ""
    arguments = raw.arguments if isinstance(raw.arguments, dict) else {}
    specs = {t.name: t for t in tools}
    error = raw.problem
    if error is None and not name:
        error = "The call names no tool."
    elif error is None and name not in specs:
        offered = ", ".join(specs) or "none"
        error = f"The model called '{name}', which is not one of the tools offered ({offered})."
    elif error is None and not isinstance(raw.arguments, dict):
        error = f"The arguments of the call to '{name}' are not a JSON object."
    elif error is None:
        problem = validation_error(specs[name].parameters, arguments)
        if problem:
            error = f"The arguments of the call to '{name}' do not fit the tool's schema: {problem}."
    return ToolCall(id=call_id, name=name, arguments=arguments, raw=raw.raw, error=error)


_DECODER = json.JSONDecoder()


def _json_at(text: str, start: int) -> tuple[object, int] | None:
    """The JSON value at ``text[start]`` (after whitespace) and where it ends; None if there is none."""
    i = start
    while i < len(text) and text[i].isspace():
        i += 1
    try:
        return _DECODER.raw_decode(text, i)
    except (json.JSONDecodeError, RecursionError):
        return None


def _from_object(obj: object, raw: str) -> _Raw | None:
    """A call from a JSON object in any of the shapes models use; None if it is not call-shaped."""
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("function"), dict):  # OpenAI's own shape
        return _from_object({**obj["function"], "id": obj.get("id")}, raw)
    name = obj.get("name")
    if not isinstance(name, str):
        return None
    keys = [k for k in ("arguments", "parameters") if k in obj]
    if not keys:
        if set(obj) - {"name", "id", "type"}:
            return None
        arguments: object = {}
    else:
        arguments = obj[keys[0]]
    if isinstance(arguments, str):  # some models write the arguments as a JSON string
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError:
            pass
    call_id = obj.get("id") if isinstance(obj.get("id"), str) and obj.get("id") else None
    return _Raw(name, arguments, raw, call_id)


def _calls_in_json(value: object, raw: str) -> list[_Raw] | None:
    """Calls from a JSON value: one object, a list of them, or ``{"tool_calls": [...]}``; None if not calls."""
    if isinstance(value, dict) and isinstance(value.get("tool_calls"), list):
        value = value["tool_calls"]
    elif isinstance(value, dict) and isinstance(value.get("tool_call"), dict):
        value = value["tool_call"]
    items = value if isinstance(value, list) else [value]
    calls = [_from_object(item, raw) for item in items]
    if not calls or any(c is None for c in calls):
        return None
    return calls  # type: ignore[return-value]


def _broken(raw: str, why: str) -> _Raw:
    return _Raw(None, None, raw, problem=why)


# <tool_call> ... </tool_call> (Hermes, Qwen, GLM, Qwen3-Coder, and Locus's own form)
_TAGGED = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.S)
_XML_FUNCTION = re.compile(r"<function=([^>\n]+)>(.*?)(?:</function>|$)", re.S)
_XML_PARAMETER = re.compile(r"<parameter=([^>\n]+)>\n?(.*?)\n?(?:</parameter>|(?=<parameter=)|$)", re.S)
_GLM_ARG = re.compile(r"<arg_key>(.*?)</arg_key>\s*<arg_value>(.*?)(?:</arg_value>|$)", re.S)


def _tagged(text: str) -> tuple[str, list[_Raw]]:
    calls: list[_Raw] = []
    for match in _TAGGED.finditer(text):
        body, raw = match.group(1).strip(), match.group(0)
        if body.startswith("<function="):
            calls.extend(_xml_calls(body, raw))
        elif "<arg_key>" in body or (body and not body.startswith(("{", "["))):
            calls.append(_glm_call(body, raw))
        else:
            found = _json_at(body, 0)
            if found is None:
                calls.append(_broken(raw, "The call is not valid JSON."))
                continue
            parsed = _calls_in_json(found[0], raw)
            calls.extend(parsed or [_broken(raw, "The call has no tool name.")])
    return _TAGGED.sub("", text), calls


def _xml_calls(body: str, raw: str) -> list[_Raw]:
    calls = []
    for fn in _XML_FUNCTION.finditer(body):
        arguments = {k.strip(): _scalar(v) for k, v in _XML_PARAMETER.findall(fn.group(2))}
        calls.append(_Raw(fn.group(1).strip(), arguments, raw))
    return calls or [_broken(raw, "The call names no function.")]


def _glm_call(body: str, raw: str) -> _Raw:
    name = body.split("<arg_key>", 1)[0].strip()
    if not name or "\n" in name or " " in name:
        return _broken(raw, "The call names no tool.")
    return _Raw(name, {k.strip(): _scalar(v) for k, v in _GLM_ARG.findall(body)}, raw)


def _scalar(value: str) -> object:
    """A parameter written as text: JSON when it reads as JSON (numbers, true, lists), else the text itself.
    The schema check then decides whether it fits."""
    text = value.strip("\n")
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return text


# Llama 3.x: a bare JSON call, or <|python_tag|> and a call
def _llama3(text: str) -> tuple[str, list[_Raw]]:
    tag = text.find("<|python_tag|>")
    if tag >= 0:
        rest = text[tag + len("<|python_tag|>") :].strip()
        calls = _json_calls_in_sequence(rest) or _python_call(rest)
        return text[:tag], calls or [_broken(text[tag:], "The call after <|python_tag|> could not be read.")]
    stripped = text.lstrip()
    if stripped.startswith("{"):
        calls = _json_calls_in_sequence(stripped)
        if calls:
            return "", calls
    return text, []


def _json_calls_in_sequence(text: str) -> list[_Raw]:
    """Calls written one after another (Llama 3.x separates parallel ones with ';' or a new line)."""
    calls, i = [], 0
    while i < len(text):
        found = _json_at(text, i)
        if found is None:
            break
        value, end = found
        parsed = _calls_in_json(value, text[i:end].strip())
        if parsed is None:
            break
        calls.extend(parsed)
        i = end
        while i < len(text) and (text[i].isspace() or text[i] == ";"):
            i += 1
    return calls if i >= len(text.rstrip()) else []


def _python_call(text: str) -> list[_Raw]:
    """``name.call(key="value", ...)``: Llama 3.1's built-in tool syntax, read as literals only (never run)."""
    match = re.fullmatch(r"([A-Za-z_][\w.-]*?)(?:\.call)?\((.*)\)\s*", text, re.S)
    if not match:
        return []
    try:
        node = ast.parse(f"f({match.group(2)})", mode="eval").body
        arguments = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg}  # type: ignore[attr-defined]
    except (SyntaxError, ValueError, TypeError, RecursionError, AttributeError):
        return [_broken(text, "The call's arguments could not be read.")]
    return [_Raw(match.group(1), arguments, text)]


# Mistral: [TOOL_CALLS][{...}, ...]  or  [TOOL_CALLS]name[CALL_ID]id[ARGS]{...} repeated
_MISTRAL_NAMED = re.compile(r"\s*([A-Za-z0-9_.\-/]+)\s*(?:\[CALL_ID\]\s*([A-Za-z0-9]+)\s*)?\[ARGS\]")


def _mistral(text: str) -> tuple[str, list[_Raw]]:
    start = text.find("[TOOL_CALLS]")
    if start < 0:
        return text, []
    calls: list[_Raw] = []
    i = start
    while text.startswith("[TOOL_CALLS]", i):
        i += len("[TOOL_CALLS]")
        while True:
            named = _MISTRAL_NAMED.match(text, i)
            if named:
                found = _json_at(text, named.end())
                if found is None:
                    calls.append(_broken(text[i:], "The call's arguments are not valid JSON."))
                    i = len(text)
                    break
                arguments, end = found
                calls.append(_Raw(named.group(1), arguments, text[i:end], named.group(2)))
                i = end
                if _MISTRAL_NAMED.match(text, i):
                    continue  # the next call's name right after, without its own [TOOL_CALLS]
                break
            found = _json_at(text, i)
            if found is None:
                if text[i:].strip():
                    calls.append(_broken(text[i:], "The calls after [TOOL_CALLS] are not valid JSON."))
                    i = len(text)
                break
            value, end = found
            calls.extend(
                _calls_in_json(value, text[i:end].strip())
                or [_broken(text[i:end], "The calls after [TOOL_CALLS] have no tool name.")]
            )
            i = end
            break
        while i < len(text) and text[i].isspace():
            i += 1
    return text[:start] + text[i:], calls


# Any family: the answer is nothing but a JSON call (or a list of calls), perhaps in a ```json fence
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.S)


def _bare_json(text: str, tools: tuple[ToolSpec, ...]) -> tuple[str, list[_Raw]]:
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1)
    if not body.startswith(("{", "[")):
        return text, []
    found = _json_at(body, 0)
    if found is None or body[found[1] :].strip():
        return text, []
    calls = _calls_in_json(found[0], body)
    # A JSON answer is only taken for calls when it names offered tools (a user may have asked for JSON).
    names = {t.name for t in tools}
    if not calls or any(c.name not in names for c in calls):
        return text, []
    return "", calls


# Streaming -------------------------------------------------------------------------------------------


class CallStream:
    """Decides, as the answer streams, which text is shown and which is held back as a possible call.

    Text before a call's opening marker is shown (keeping back a tail that may be the start of a marker);
    from the marker on, everything is held. An answer that opens with JSON (Llama 3.x calls, or any
    model's bare JSON call) is held whole. What was held comes out at the end if it was no call after all.
    """

    def __init__(self, fmt: ToolFormat):
        self.format = fmt
        self.text = ""  # everything generated
        self.shown = 0  # how much of it has been passed on
        self.holding = False

    def feed(self, text: str) -> str:
        """Take newly generated text; returns what may be shown now."""
        self.text += text
        if self.holding:
            return ""
        if self.shown == 0:
            lead = self.text.lstrip()
            if not lead:
                return ""
            if lead == "[" or "```".startswith(lead):
                return ""  # not decided yet
            if lead.startswith(("{", "[{", "```")):
                self.holding = True
                return ""
        cut = len(self.text)
        for marker in self.format.markers:
            found = self.text.find(marker, max(0, self.shown - len(marker)))
            if found >= 0:
                cut = min(cut, found)
                self.holding = True
        if not self.holding:
            cut = len(self.text) - _partial_marker(self.text, self.format.markers)
        cut = max(cut, self.shown)
        out, self.shown = self.text[self.shown : cut], cut
        return out

    def held(self) -> str:
        """The text not shown yet."""
        return self.text[self.shown :]


def _partial_marker(text: str, markers: tuple[str, ...]) -> int:
    """The length of the longest end of ``text`` that is a proper start of a marker."""
    best = 0
    for marker in markers:
        for n in range(min(len(marker) - 1, len(text)), best, -1):
            if text.endswith(marker[:n]):
                best = n
                break
    return best
