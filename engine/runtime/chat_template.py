"""Render a conversation into a prompt with the model's own chat template.

GGUF files carry the Hugging Face Jinja template in ``tokenizer.chat_template``;
it is rendered in a sandbox exactly as transformers does. Models without one
fall back to ChatML, the most common format.

Tools: a template that supports them (it reads ``tools`` and writes calls in a syntax
engine/tools/formats.py reads) gets the tools as OpenAI's list of functions, assistant
messages with ``tool_calls`` and ``tool`` messages with ``tool_call_id`` and ``name``,
the shapes transformers passes. Any other template gets plain messages: the tools
described in the system prompt, calls written in the Hermes form in the assistant's
text, and results as a user message of ``<tool_response>`` blocks.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence
from functools import cached_property

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

from engine.errors import TemplateError
from engine.runtime.types import ChatMessage
from engine.tools.base import ToolCall, ToolSpec
from engine.tools.formats import LLAMA3, MISTRAL, MISTRAL_ARGS, family_of, short_id
from engine.tools.grammar import describe_tools, openai_tool

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _raise_exception(message: str) -> None:
    raise TemplateError(f"The model's chat template refused the conversation: {message}")


def _strftime_now(fmt: str) -> str:
    return datetime.datetime.now().strftime(fmt)


def _tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False) -> str:
    """transformers' ``tojson``: plain JSON (Jinja's own escapes <, > and & for HTML, which no model was shown)."""
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


class _GenerationTag(Extension):
    """transformers' ``{% generation %}...{% endgeneration %}`` (it marks the assistant's part for training
    masks): rendered as its body."""

    tags = {"generation"}  # noqa: RUF012 - jinja2.ext.Extension declares it as an instance attribute

    def parse(self, parser) -> list[nodes.Node]:
        next(parser.stream)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


class ChatTemplate:
    """A compiled chat template plus the special tokens it may reference."""

    def __init__(self, source: str | None, *, bos_token: str = "", eos_token: str = ""):
        self.origin = "gguf" if source else "fallback"
        self.source = source or CHATML_TEMPLATE
        self.bos_token = bos_token
        self.eos_token = eos_token
        # The template's tool-call family (engine/tools/formats.py); None: it cannot show tools.
        self.tool_family = family_of(source) if source else None

    @property
    def supports_tools(self) -> bool:
        """Whether the template shows tools and tool messages itself."""
        return self.tool_family is not None

    @cached_property
    def _template(self) -> jinja2.Template:
        env = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols, _GenerationTag]
        )
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = _strftime_now
        env.filters["tojson"] = _tojson
        try:
            return env.from_string(self.source)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(
                f"The model's chat template has a syntax error on line {exc.lineno}: {exc.message}"
            ) from exc

    def render(
        self,
        messages: Sequence[ChatMessage],
        *,
        add_generation_prompt: bool = True,
        tools: Sequence[ToolSpec] = (),
        tool_choice: str = "auto",
    ) -> str:
        """The prompt text for these messages, ending where the assistant's answer starts.

        ``tools`` are the tools offered (``tool_choice`` only words the description of a template that
        cannot show them)."""
        variables = {}
        if self.supports_tools:
            turns = self._native(messages)
            if tools:
                variables["tools"] = [openai_tool(t) for t in tools]
        else:
            turns = [{"role": m.role, "content": m.content} for m in plain_messages(messages, tools, tool_choice)]
        try:
            return self._render(turns, add_generation_prompt, variables)
        except TemplateError as refused:
            # Templates that refuse a system turn (Gemma 2) get it as the start of the first user turn,
            # as their makers advise.
            firsts = [i for i, t in enumerate(turns) if t["role"] == "user"][:1]
            if not (turns and turns[0]["role"] == "system" and firsts and "refused" in refused.message):
                raise
            folded = [dict(t) for t in turns[1:]]
            folded[firsts[0] - 1]["content"] = f"{turns[0]['content']}\n\n{folded[firsts[0] - 1]['content']}"
            return self._render(folded, add_generation_prompt, variables)  # (its own error, if it still fails)

    def _render(self, turns: list[dict], add_generation_prompt: bool, variables: dict) -> str:
        try:
            return self._template.render(
                messages=turns,
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
                **variables,
            )
        except TemplateError:
            raise
        except jinja2.TemplateError as exc:
            raise TemplateError(f"The model's chat template could not be rendered: {exc}") from exc

    def _native(self, messages: Sequence[ChatMessage]) -> list[dict]:
        """Messages in the shapes a tool-aware template reads (keys only where they apply: Llama 3.x asks
        whether ``tool_calls`` is in a message at all)."""
        ids = short_id if self.tool_family in (MISTRAL, MISTRAL_ARGS) else (lambda i: i)
        turns: list[dict] = []
        for m in messages:
            if m.role == "assistant" and m.tool_calls:
                # Llama 3.x shows one call per assistant turn: parallel calls become consecutive turns.
                groups = [(c,) for c in m.tool_calls] if self.tool_family == LLAMA3 else [m.tool_calls]
                for i, group in enumerate(groups):
                    turns.append(
                        {
                            "role": "assistant",
                            "content": m.content if i == 0 else "",
                            "tool_calls": [_native_call(c, ids) for c in group],
                        }
                    )
                continue
            turn = {"role": m.role, "content": m.content}
            if m.role == "tool":
                if m.tool_call_id is not None:
                    turn["tool_call_id"] = ids(m.tool_call_id)
                if m.name is not None:
                    turn["name"] = m.name
            turns.append(turn)
        return turns


def _native_call(call: ToolCall, ids) -> dict:
    return {"id": ids(call.id), "type": "function", "function": {"name": call.name, "arguments": call.arguments}}


def plain_messages(
    messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] = (), tool_choice: str = "auto"
) -> list[ChatMessage]:
    """The conversation for a template that cannot show tools: the tools described in the system prompt,
    each call written into its assistant turn in the Hermes form, and results as one user turn of
    ``<tool_response>`` blocks (so user and assistant still take turns)."""
    out: list[ChatMessage] = []
    if tools:
        description = describe_tools(tuple(tools), tool_choice)
        if messages and messages[0].role == "system":
            out.append(ChatMessage("system", f"{messages[0].content}\n\n{description}"))
            messages = messages[1:]
        else:
            out.append(ChatMessage("system", description))
    results_open = False
    for m in messages:
        if m.role == "tool":
            block = f"<tool_response>\n{m.content}\n</tool_response>"
            if results_open:
                out[-1] = ChatMessage("user", f"{out[-1].content}\n{block}")
            else:
                out.append(ChatMessage("user", block))
            results_open = True
            continue
        results_open = False
        if m.role == "assistant" and m.tool_calls:
            calls = "\n".join(
                "<tool_call>\n"
                + json.dumps({"name": c.name, "arguments": c.arguments}, ensure_ascii=False)
                + "\n</tool_call>"
                for c in m.tool_calls
            )
            out.append(ChatMessage("assistant", f"{m.content}\n{calls}" if m.content else calls))
        else:
            out.append(ChatMessage(m.role, m.content))
    return out
