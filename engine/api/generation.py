"""Chat and text completions: fit the request to the context, submit it, answer whole or streamed.

The request goes to the runtime like any other; its events come back through a
queue that this HTTP thread reads (engine/api/pump.py): a client that disconnects
cancels its generation, so the runtime is free for the next request within one
token step.

A stream's headers are sent with its first token (or its end), so a request that
fails before producing anything still gets a proper HTTP status.
"""

from __future__ import annotations

from engine.api import fields
from engine.api.calls import GenerationCall
from engine.api.errors import ApiError, context_exceeded, from_engine, shutting_down
from engine.api.pump import EventPump
from engine.api.shapes import CompletionShape, usage
from engine.api.transport import ClientGone, Exchange
from engine.errors import EngineError
from engine.runtime.backend import Backend
from engine.runtime.types import Done, Failed, GenerationRequest, ModelInfo, SamplingParams, Token
from engine.trace.tracing import context_of


class Run(EventPump):
    """One submitted generation whose events are read on the HTTP thread."""

    piece, last = Token, (Done, Failed)

    def __init__(self, runtime: Backend, request: GenerationRequest, trace_parent=None):
        super().__init__()
        self.handle = runtime.submit(request, self.put, trace_parent=trace_parent)

    def join(self, pieces: list) -> Token:
        return Token(pieces[0].request_id, "".join(t.text for t in pieces), sum(t.n_tokens for t in pieces))


def prompt_tokens(runtime: Backend, call: GenerationCall) -> int:
    """The prompt's tokens as the loaded model counts them (one more for a BOS token the template may add)."""
    try:
        if call.prompt is not None:
            return runtime.count_tokens(call.prompt) + 1
        tools = call.tools if call.tool_choice != "none" else ()
        return runtime.render_prompt(call.messages, tools)[1] + 1
    except EngineError as exc:
        raise from_engine(exc, "messages" if call.prompt is None else "prompt") from None


def fit_max_tokens(call: GenerationCall, n_prompt: int, n_ctx: int, limit: int) -> int:
    """The request's max_tokens, checked against the context and the server's limit; when not given,
    what is left of the context (at most ``limit``)."""
    where = "messages" if call.prompt is None else "prompt"
    if n_prompt >= n_ctx:
        raise context_exceeded(
            f"This model's maximum context length is {n_ctx} tokens, but the {where} "
            f"{'take' if where == 'messages' else 'takes'} {n_prompt} tokens. Shorten the "
            f"{where}.",
            where,
        )
    wanted = call.max_tokens
    if wanted is None:
        return min(limit, n_ctx - n_prompt)
    if wanted > limit:
        raise context_exceeded(
            f"'{call.max_tokens_param}' is {wanted}, but this server generates at most {limit} tokens per request.",
            call.max_tokens_param,
        )
    if n_prompt + wanted > n_ctx:
        raise context_exceeded(
            f"This model's maximum context length is {n_ctx} tokens. However, you requested {n_prompt + wanted} "
            f"tokens ({n_prompt} in the {where}, {wanted} in the completion). Reduce the length of the {where} "
            f"or '{call.max_tokens_param}'.",
            call.max_tokens_param,
        )
    return wanted


def build_request(call: GenerationCall, max_tokens: int, defaults: dict, priority) -> GenerationRequest:
    """The engine's GenerationRequest for a validated call."""
    sampling = fields.sampling(SamplingParams, **{**defaults, **call.sampling, "max_tokens": max_tokens})
    try:
        return GenerationRequest(
            messages=call.messages,
            prompt=call.prompt,
            sampling=sampling,
            grammar=call.grammar,
            priority=priority,
            tools=call.tools,
            tool_choice=call.tool_choice,
        )
    except EngineError as exc:
        raise from_engine(exc) from None


def generate(api, ex: Exchange, call: GenerationCall, runtime: Backend, info: ModelInfo, span) -> Done | Failed:
    """Run the call on the request's backend (``info``: its model) and answer it; returns the terminal event
    (for the root span)."""
    n_prompt = prompt_tokens(runtime, call)
    request = build_request(
        call, fit_max_tokens(call, n_prompt, info.n_ctx, api.max_tokens), api.defaults, api.priority
    )
    shape = CompletionShape(call.kind, info.name)
    with api.queue_place():  # held until the runtime is done with it: its last event has been read
        run = Run(runtime, request, context_of(span))
        with api.tracking(run):
            # A request's tools fail it only when the model cannot be held to one of their schemas: say so.
            param = "tools" if request.offered_tools else None
            if call.stream:
                return _stream(api, ex, run, shape, call.include_usage, param)
            return _whole(api, ex, run, shape, param)


def _finish_reason(api, done: Done) -> str:
    reason = done.stats.finish_reason
    if reason == "cancelled" and api.stopping:
        raise shutting_down()
    return reason if reason in ("length", "tool_calls") else "stop"


def _used(done: Done) -> dict:
    return usage(done.stats.prompt_tokens, done.stats.completion_tokens)


def _whole(api, ex: Exchange, run: Run, shape: CompletionShape, param: str | None = None) -> Done | Failed:
    terminal = None
    for terminal in run.events(ex.client_gone):  # noqa: B007 - the last event is the terminal one
        pass
    assert isinstance(terminal, (Done, Failed))  # events() ends with one of them
    if isinstance(terminal, Failed):
        raise from_engine(terminal.error, param if terminal.error.code == "invalid_request" else None)
    if not ex.gone:
        finish = _finish_reason(api, terminal)
        ex.send_json(200, shape.whole(terminal.text, finish, _used(terminal), terminal.tool_calls))
    return terminal


def _stream(
    api, ex: Exchange, run: Run, shape: CompletionShape, include_usage: bool, param: str | None = None
) -> Done | Failed:

    terminal = None
    for event in run.events(ex.client_gone):
        if isinstance(event, (Done, Failed)):
            terminal = event
        if ex.gone:
            continue  # wait for the cancelled request to end, so its trace is complete
        try:
            if isinstance(event, Token) and event.text:
                ex.open_stream(shape.opening)
                ex.event(shape.piece(event.text))
            elif isinstance(event, Done):
                try:
                    finish = _finish_reason(api, event)
                except ApiError as error:  # shutting down: said in the stream once it is open
                    if not ex.streaming:
                        raise
                    ex.event(error.body())
                    ex.end_stream()
                    continue
                ex.open_stream(shape.opening)
                for chunk in shape.call_chunks(event.tool_calls):  # id and name first, then the arguments
                    ex.event(chunk)
                ex.event(shape.closing(finish))
                if include_usage:
                    ex.event(shape.usage_chunk(_used(event)))
                ex.end_stream()
            elif isinstance(event, Failed):
                failure = from_engine(event.error, param if event.error.code == "invalid_request" else None)
                if not ex.streaming:
                    raise failure
                ex.event(failure.body())  # the openai client raises an APIError for an error event
                ex.end_stream()
        except ClientGone:
            run.cancel()
    assert terminal is not None  # events() ends with Done or Failed
    return terminal
