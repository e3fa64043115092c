"""The bodies of /v1/chat/completions, /v1/completions and /v1/embeddings, read into plain calls.

Every field OpenAI defines is either honoured, accepted and documented as
ignored (frequency/presence penalty, user, metadata, parallel_tool_calls), or
refused with a 400 that names it (legacy functions, logprobs, n > 1, images): a
client never gets a silently different behaviour. Tools are the client's own:
the server returns the calls the model makes and never runs anything.
llama.cpp's extensions (top_k, min_p, repeat_penalty, repeat_last_n, grammar)
are honoured too, which is what Locus's own RemoteRuntime sends.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from engine.api import extension
from engine.api import fields as f
from engine.api.errors import from_engine, invalid, unsupported
from engine.errors import EngineError
from engine.runtime.constrain import grammar_problem, schema_to_grammar
from engine.runtime.grammar_check import limits_problem
from engine.runtime.types import TOOL_CHOICES, ChatMessage, Role
from engine.tools.base import ToolCall, ToolSpec

_ROLES: dict[str, Role] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
}
MAX_EMBEDDING_INPUTS = 2048


@dataclass(frozen=True)
class GenerationCall:
    """A chat or text completion request, validated; ``max_tokens`` None means "as many as fit"."""

    kind: str  # "chat" or "completion"
    model: str
    messages: tuple[ChatMessage, ...] = ()
    prompt: str | None = None
    max_tokens: int | None = None
    max_tokens_param: str = "max_tokens"
    stream: bool = False
    include_usage: bool = False
    grammar: str | None = None
    sampling: dict = field(default_factory=dict)  # SamplingParams fields the client set (no max_tokens)
    tools: tuple[ToolSpec, ...] = ()  # the client's own tools (never run here: the calls are returned)
    tool_choice: str = "auto"  # auto, none, required or a tool's name
    documents: extension.DocumentsCall | None = None  # Locus's extension: answer from the indexed documents

    @property
    def summary(self) -> str:
        """What the trace list shows for this request: the last user message, or the prompt."""
        if self.prompt is not None:
            return self.prompt[-300:]
        users = [m.content for m in self.messages if m.role == "user"]
        return (users[-1] if users else self.messages[-1].content)[:300]


@dataclass(frozen=True)
class EmbeddingCall:
    """An embeddings request: the texts, and how the vectors should come back."""

    model: str
    inputs: tuple[str, ...]
    encoding_format: str = "float"
    dimensions: int | None = None


def parse_chat(body: dict) -> GenerationCall:
    """A /v1/chat/completions body as a GenerationCall (ApiError 400 on any bad field)."""
    model = _model(body)
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise invalid("'messages' must be a non-empty list of messages.", "messages")
    names: dict[str, str] = {}  # call id -> tool name, for the tool messages that answer them
    messages = tuple(_message(m, i, names) for i, m in enumerate(raw))
    if body.get("functions") or body.get("function_call") is not None:
        raise unsupported("Legacy function calling ('functions')", "functions")
    tools = _tools(body)
    tool_choice = _tool_choice(body, tools)
    f.boolean(body, "parallel_tool_calls", default=True)  # accepted: a model may make one call or several
    if body.get("logprobs"):
        raise unsupported("Log probabilities", "logprobs")
    if body.get("top_logprobs") is not None:
        raise unsupported("Log probabilities", "top_logprobs")
    if body.get("audio") is not None or body.get("modalities") not in (None, ["text"]):
        raise unsupported("Audio output", "modalities")
    param = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    grammar = _grammar(body)
    if grammar is not None and tools and tool_choice != "none":
        raise invalid("'response_format' or 'grammar' cannot be combined with tools.", "tools")
    documents = _documents(body, messages, tools, grammar)
    return GenerationCall(
        "chat",
        model,
        messages=messages,
        max_tokens=f.integer(body, param, 1),
        max_tokens_param=param,
        grammar=grammar,
        tools=tools,
        tool_choice=tool_choice,
        documents=documents,
        **_common(body),
    )


def _documents(body: dict, messages, tools, grammar) -> extension.DocumentsCall | None:
    """Locus's extension (engine/api/extension.py): the call to answer from documents, if asked for."""
    asked = extension.parse(body)
    if asked is None or not asked["documents"]:
        return None
    if tools:
        raise invalid("Answering from documents ('locus.documents') cannot be combined with 'tools'.", "tools")
    if grammar is not None:
        raise invalid(
            "Answering from documents ('locus.documents') cannot be combined with 'response_format' or 'grammar'.",
            "response_format",
        )
    return extension.documents_call(messages, asked["collections"])


def parse_completion(body: dict) -> GenerationCall:
    """A /v1/completions body as a GenerationCall (one prompt; OpenAI's default of 16 tokens)."""
    model = _model(body)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        raise unsupported("More than one prompt per request", "prompt")
    if not isinstance(prompt, str):
        raise invalid("'prompt' must be a string (token lists are not supported).", "prompt")
    if not prompt:
        raise invalid("'prompt' must not be empty.", "prompt")
    if body.get(extension.FIELD) is not None:
        raise invalid(
            "Locus's extension ('locus') is for /v1/chat/completions only.", extension.FIELD, "invalid_extension"
        )
    if body.get("echo"):
        raise unsupported("Echoing the prompt", "echo")
    if body.get("suffix"):
        raise unsupported("Insertion with 'suffix'", "suffix")
    if body.get("logprobs") is not None:
        raise unsupported("Log probabilities", "logprobs")
    if f.integer(body, "best_of", 1, default=1) != 1:
        raise unsupported("'best_of' above 1", "best_of")
    return GenerationCall(
        "completion",
        model,
        prompt=prompt,
        max_tokens=f.integer(body, "max_tokens", 1, default=16),
        grammar=_grammar(body),
        **_common(body),
    )


def parse_embeddings(body: dict) -> EmbeddingCall:
    """A /v1/embeddings body: ``input`` is a string or a list of strings."""
    model = _model(body)
    raw = body.get("input")
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not items:
        raise invalid("'input' must be a string or a non-empty list of strings.", "input")
    if not all(isinstance(s, str) for s in items):
        raise invalid("'input' must hold strings only (token lists are not supported).", "input")
    if any(not s for s in items):
        raise invalid("'input' must not contain empty strings.", "input")
    if len(items) > MAX_EMBEDDING_INPUTS:
        raise invalid(f"'input' has {len(items)} items; at most {MAX_EMBEDDING_INPUTS} are allowed.", "input")
    encoding = f.text(body, "encoding_format", default="float")
    if encoding not in ("float", "base64"):
        raise invalid(f"'encoding_format' must be 'float' or 'base64', not '{encoding}'.", "encoding_format")
    return EmbeddingCall(model, tuple(items), encoding, f.integer(body, "dimensions", 1))


def _model(body: dict) -> str:
    """The request's model name (a 400 when it is missing)."""
    model = f.text(body, "model", required=True)
    if model is None:  # (f.text has refused it already)
        raise invalid("'model' is required.", "model")
    return model


def _common(body: dict) -> dict:
    """The fields chat and text completions share: streaming, sampling, stop, seed."""
    if f.integer(body, "n", 1, default=1) != 1:
        raise unsupported("More than one choice per request ('n' above 1)", "n")
    if body.get("logit_bias"):
        raise unsupported("'logit_bias'", "logit_bias")
    stream = f.boolean(body, "stream")
    options = f.mapping(body, "stream_options") or {}
    include_usage = f.boolean(options, "include_usage")
    # Accepted for compatibility; llama.cpp's penalty is repeat_penalty (which a client may send).
    f.number(body, "frequency_penalty", -2.0, 2.0)
    f.number(body, "presence_penalty", -2.0, 2.0)
    sampling = {"stop": f.stop_strings(body), "seed": f.seed(body)}
    for name, value in (
        ("temperature", f.number(body, "temperature", 0.0, 2.0)),
        ("top_p", f.number(body, "top_p", 0.0, 1.0)),
        ("top_k", f.integer(body, "top_k", 0)),
        ("min_p", f.number(body, "min_p", 0.0, 1.0)),
        ("repeat_penalty", f.number(body, "repeat_penalty", 0.1, 5.0)),
        ("repeat_last_n", f.integer(body, "repeat_last_n", 0)),
    ):
        if value is not None:
            sampling[name] = value
    return {"stream": stream, "include_usage": stream and include_usage, "sampling": sampling}


def _message(raw: object, index: int, names: dict[str, str]) -> ChatMessage:
    where = f"messages[{index}]"
    if not isinstance(raw, dict):
        raise invalid(f"'{where}' must be an object with 'role' and 'content'.", where)
    role = raw.get("role")
    if role == "function":
        raise unsupported("Messages with role 'function' (use 'tool')", f"{where}.role")
    if role not in _ROLES:
        raise invalid(
            f"'{where}.role' must be one of system, developer, user, assistant, tool; not {role!r}.", f"{where}.role"
        )
    if raw.get("function_call"):
        raise unsupported("Legacy 'function_call' in messages (use 'tool_calls')", f"{where}.function_call")
    calls = _calls(raw.get("tool_calls"), where) if role == "assistant" else ()
    if raw.get("tool_calls") and role != "assistant":
        raise invalid(f"'{where}.tool_calls' is only allowed on assistant messages.", f"{where}.tool_calls")
    content = raw.get("content")
    if content is None and role == "assistant":
        content = ""
    if isinstance(content, list):
        content = "\n".join(_text_part(p, f"{where}.content[{i}]") for i, p in enumerate(content))
    if not isinstance(content, str):
        raise invalid(f"'{where}.content' must be a string or a list of text parts.", f"{where}.content")
    for call in calls:
        names[call.id] = call.name
    if role == "tool":
        call_id = raw.get("tool_call_id")
        if not isinstance(call_id, str) or not call_id:
            raise invalid(f"'{where}.tool_call_id' must name the call this message answers.", f"{where}.tool_call_id")
        name = raw.get("name") if isinstance(raw.get("name"), str) and raw.get("name") else names.get(call_id)
        return ChatMessage("tool", content, tool_call_id=call_id, name=name)
    return ChatMessage(_ROLES[role], content, tool_calls=calls)


def _calls(raw: object, where: str) -> tuple[ToolCall, ...]:
    """An assistant message's earlier tool calls: [{"id", "type": "function", "function": {"name", "arguments"}}]."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise invalid(f"'{where}.tool_calls' must be a list of tool calls.", f"{where}.tool_calls")
    calls = []
    for i, item in enumerate(raw):
        at = f"{where}.tool_calls[{i}]"
        function = item.get("function") if isinstance(item, dict) else None
        if not isinstance(function, dict) or not isinstance(item.get("id"), str) or not item["id"]:
            raise invalid(
                f'\'{at}\' must be {{"id": ..., "type": "function", "function": {{"name": ..., "arguments": ...}}}}.',
                at,
            )
        name, arguments = function.get("name"), function.get("arguments", "{}")
        if not isinstance(name, str) or not name:
            raise invalid(f"'{at}.function.name' must be the tool's name.", f"{at}.function.name")
        try:
            parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
        except json.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, dict):
            raise invalid(f"'{at}.function.arguments' must be a JSON object (as text).", f"{at}.function.arguments")
        calls.append(ToolCall(item["id"], name, parsed, raw=arguments if isinstance(arguments, str) else ""))
    return tuple(calls)


def _tools(body: dict) -> tuple[ToolSpec, ...]:
    """The request's tools: [{"type": "function", "function": {"name", "description", "parameters"}}]."""
    import jsonschema

    raw = body.get("tools")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise invalid("'tools' must be a list of tools.", "tools")
    tools, seen = [], set()
    for i, item in enumerate(raw):
        at = f"tools[{i}]"
        if not isinstance(item, dict) or item.get("type", "function") != "function":
            kind = item.get("type") if isinstance(item, dict) else None
            if isinstance(kind, str):
                raise unsupported(f"Tools of type '{kind}' (only 'function')", f"{at}.type")
            raise invalid(f'\'{at}\' must be {{"type": "function", "function": {{...}}}}.', at)
        function = item.get("function")
        if not isinstance(function, dict):
            raise invalid(f"'{at}.function' must be an object with 'name' and 'parameters'.", f"{at}.function")
        name = function.get("name")
        description = function.get("description") or ""
        parameters = function.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(description, str):
            raise invalid(f"'{at}.function.description' must be a string.", f"{at}.function.description")
        if not isinstance(parameters, dict) or parameters.get("type", "object") != "object":
            raise invalid(
                f"'{at}.function.parameters' must be a JSON schema of type 'object'.", f"{at}.function.parameters"
            )
        try:
            jsonschema.validators.validator_for(parameters).check_schema(parameters)
        except jsonschema.SchemaError as exc:
            raise invalid(
                f"'{at}.function.parameters' is not a valid JSON schema: {exc.message}.", f"{at}.function.parameters"
            ) from None
        try:
            spec = ToolSpec(name, description, parameters, source="client")  # type: ignore[arg-type]
        except (ValueError, TypeError):
            raise invalid(
                f"'{at}.function.name' must be 1 to 64 letters, digits, '_', '.' or '-'; not {name!r}.",
                f"{at}.function.name",
            ) from None
        if name in seen:
            raise invalid(f"Two tools are named '{name}'.", f"{at}.function.name")
        seen.add(name)
        tools.append(spec)
    return tuple(tools)


def _tool_choice(body: dict, tools: tuple[ToolSpec, ...]) -> str:
    """'auto' (the default), 'none', 'required', or {"type": "function", "function": {"name": ...}} (that tool)."""
    raw = body.get("tool_choice")
    if raw is None:
        return "auto"
    if isinstance(raw, dict):
        function = raw.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if raw.get("type") != "function" or not isinstance(name, str):
            raise invalid(
                '\'tool_choice\' must be auto, none, required or {"type": "function", "function": {"name": ...}}.',
                "tool_choice",
            )
        if name not in {t.name for t in tools}:
            raise invalid(f"'tool_choice' names '{name}', which is not one of the request's tools.", "tool_choice")
        return name
    if raw not in TOOL_CHOICES:
        raise invalid(f"'tool_choice' must be auto, none, required or a function; not {raw!r}.", "tool_choice")
    if raw == "required" and not tools:
        raise invalid("'tool_choice' is 'required' but the request has no tools.", "tool_choice")
    return raw


def _text_part(part: object, where: str) -> str:
    fields = part if isinstance(part, dict) else {}
    kind = fields.get("type")
    if kind == "text" and isinstance(fields.get("text"), str):
        return fields["text"]
    if kind in ("image_url", "input_image", "input_audio", "file"):
        raise unsupported(f"Content of type '{kind}' (this model reads text only)", where)
    raise invalid(f'\'{where}\' must be a text part: {{"type": "text", "text": "..."}}.', where)


def _grammar(body: dict) -> str | None:
    """The GBNF grammar for ``response_format`` (JSON object or JSON schema) or llama.cpp's ``grammar``."""
    fmt = f.mapping(body, "response_format")
    raw = f.text(body, "grammar")
    kind = (fmt or {}).get("type", "text")
    if raw is not None and kind != "text":
        raise invalid("Give either 'response_format' or 'grammar', not both.", "grammar")
    if raw is not None:
        problem = (limits_problem(raw) or grammar_problem(raw)) if raw.strip() else "it is empty"
        if problem:
            raise invalid(f"The grammar cannot be used: {problem}.", "grammar")
        return raw
    if kind == "text":
        return None
    if kind == "json_object":
        schema = {"type": "object"}
    elif kind == "json_schema":
        spec = (fmt or {}).get("json_schema")
        if not isinstance(spec, dict) or "schema" not in spec:
            raise invalid(
                "'response_format.json_schema' must be an object with a 'schema'.", "response_format.json_schema"
            )
        schema = spec["schema"]
    else:
        raise invalid(
            f"'response_format.type' must be text, json_object or json_schema; not {kind!r}.", "response_format.type"
        )
    try:
        return schema_to_grammar(schema)
    except EngineError as exc:
        raise from_engine(exc, "response_format") from None
