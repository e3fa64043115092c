"""Chat completions answered from the user's documents (Locus's extension, engine/api/extension.py).

The answer takes the window's path: ``Assistant.ask`` with the request's question, earlier turns and
system prompt, not saved. It retrieves the passages with the server's own index, puts them in the
prompt, streams the answer, checks which passages the answer rests on, and ranks every passage it
was given (engine/rag/cite.ranked_sources). The response carries them as ``locus_sources``, each in
``Citation.to_dict()``'s shape; a stream sends them in one chunk after the one that ends the choice.

The request holds a place in the API's queue like any generation, and a client that disconnects
cancels its answer.
"""

from __future__ import annotations

from engine.answer import AnswerEnded, Cited, TextDelta
from engine.api import fields
from engine.api.calls import GenerationCall
from engine.api.errors import ApiError, context_exceeded, from_engine, shutting_down
from engine.api.extension import FIELD, DocumentsCall
from engine.api.pump import EventPump
from engine.api.shapes import CompletionShape, usage
from engine.api.transport import ClientGone, Exchange
from engine.assistant import saved_source
from engine.errors import EngineError
from engine.runtime.budget import context_window
from engine.runtime.types import ModelInfo, SamplingParams


class DocumentRun(EventPump):
    """One answer from documents on its way; its events are read on the HTTP thread."""

    piece, last = TextDelta, (AnswerEnded,)

    def __init__(self, assistant, call: DocumentsCall, sampling: SamplingParams, priority):
        super().__init__()
        # The callback runs on the answer's (or the runtime's) thread: it only queues.
        self.handle = assistant.ask(
            call.question,
            on_event=self.put,
            collections=list(call.collections),
            save=False,
            priority=priority,
            sampling=sampling,
            earlier=call.earlier,
            system_prompt=call.system_prompt,
        )

    def join(self, pieces: list) -> TextDelta:
        return TextDelta(pieces[0].answer_id, "".join(d.text for d in pieces))


def answer(api, ex: Exchange, call: GenerationCall, info: ModelInfo) -> AnswerEnded:
    """Answer a chat call from documents, whole or streamed; returns its AnswerEnded (for the root span)."""
    documents = call.documents
    assert documents is not None  # (the server sends only such calls here)
    if api.assistant is None or api.open_library is None:
        raise ApiError(
            400,
            "This server does not answer from documents.",
            param=f"{FIELD}.documents",
            code="documents_unavailable",
        )
    try:
        library = api.open_library()
    except EngineError as exc:
        raise from_engine(exc, f"{FIELD}.documents") from None
    _check_documents(library, documents.collections)
    max_tokens = _max_tokens(api, call, info)
    sampling = fields.sampling(SamplingParams, **{**api.defaults, **call.sampling, "max_tokens": max_tokens})
    shape = CompletionShape("chat", info.name)
    with api.queue_place():  # held until the answer has ended
        run = DocumentRun(api.assistant, documents, sampling, api.priority)
        with api.tracking(run):
            if call.stream:
                return _stream(api, ex, run, shape, call.include_usage)
            return _whole(api, ex, run, shape)


def _check_documents(library, collections: tuple[str, ...]) -> None:
    """A 404 for a collection the index does not have; a 400 when nothing is indexed to answer from."""
    records = library.documents()
    known = sorted({r.collection for r in records})
    missing = [c for c in collections if c not in known]
    if missing:
        listing = ", ".join(f"'{c}'" for c in known) or "none (no document is indexed)"
        raise ApiError(
            404,
            f"The collection '{missing[0]}' does not exist on this server. It has: {listing}.",
            param=f"{FIELD}.collections",
            code="collection_not_found",
        )
    searched = [r for r in records if not collections or r.collection in collections]
    if not any(r.n_chunks > 0 for r in searched):
        where = f"in {', '.join(repr(c) for c in collections)}" if collections else "on this server"
        raise ApiError(
            400,
            f"No documents are indexed {where}, so there is nothing to answer from. Add some in the window's "
            "Documents panel or with 'locus index PATH', or leave out 'locus.documents'.",
            param=f"{FIELD}.documents",
            code="no_documents",
        )


def _max_tokens(api, call: GenerationCall, info: ModelInfo) -> int:
    """The request's max_tokens within the server's limit; when not given, up to half the context (the
    prompt, with its passages, is fitted into the rest)."""
    wanted = call.max_tokens
    if wanted is None:
        return min(api.max_tokens, max(1, context_window(info) // 2))
    if wanted > api.max_tokens:
        raise context_exceeded(
            f"'{call.max_tokens_param}' is {wanted}, but this server generates at most {api.max_tokens} tokens "
            "per request.",
            call.max_tokens_param,
        )
    return wanted


def _finish_reason(api, ended: AnswerEnded) -> str:
    if ended.cancelled and api.stopping:
        raise shutting_down()
    return "length" if ended.stats.finish_reason == "length" else "stop"


def _used(ended: AnswerEnded) -> dict:
    return usage(ended.stats.prompt_tokens, ended.stats.completion_tokens)


def _failure(ended: AnswerEnded) -> ApiError:
    assert ended.error is not None  # a failed answer says why
    return from_engine(ended.error, "messages" if ended.error.code == "invalid_request" else None)


def _whole(api, ex: Exchange, run: DocumentRun, shape: CompletionShape) -> AnswerEnded:
    sources: list = []
    ended = None
    for event in run.events(ex.client_gone):
        if isinstance(event, Cited):
            sources = [saved_source(c) for c in event.citations]
        elif isinstance(event, AnswerEnded):
            ended = event
    assert ended is not None  # events() ends with it
    if ended.failed:
        raise _failure(ended)
    if not ex.gone:
        ex.send_json(200, shape.whole(ended.text, _finish_reason(api, ended), _used(ended), sources=sources))
    return ended


def _stream(api, ex: Exchange, run: DocumentRun, shape: CompletionShape, include_usage: bool) -> AnswerEnded:
    sources: list = []
    ended = None

    for event in run.events(ex.client_gone):
        if isinstance(event, AnswerEnded):
            ended = event
        if ex.gone:
            continue  # wait for the cancelled answer to end, so its trace is complete
        try:
            if isinstance(event, TextDelta) and event.text:
                ex.open_stream(shape.opening)
                ex.event(shape.piece(event.text))
            elif isinstance(event, Cited):
                sources = [saved_source(c) for c in event.citations]
            elif isinstance(event, AnswerEnded) and event.failed:
                if not ex.streaming:
                    raise _failure(event)
                ex.event(_failure(event).body())  # the openai client raises an APIError for an error event
                ex.end_stream()
            elif isinstance(event, AnswerEnded):
                try:
                    finish = _finish_reason(api, event)
                except ApiError as error:  # shutting down: said in the stream once it is open
                    if not ex.streaming:
                        raise
                    ex.event(error.body())
                    ex.end_stream()
                    continue
                ex.open_stream(shape.opening)
                ex.event(shape.closing(finish))
                ex.event(shape.sources_chunk(sources))
                if include_usage:
                    ex.event(shape.usage_chunk(_used(event)))
                ex.end_stream()
        except ClientGone:
            run.cancel()
    assert ended is not None  # events() ends with it
    return ended
