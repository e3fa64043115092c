"""The JSON objects of OpenAI's API: completions, their stream chunks, embeddings, the model list."""

from __future__ import annotations

import base64
import json
import time
import uuid

import numpy as np

from engine.tools.base import ToolCall

ARGUMENT_PIECE = 24  # characters of a call's arguments per stream chunk, as OpenAI streams them in pieces
SOURCES_FIELD = "locus_sources"  # an answer from documents: every passage the model was given (docs/api.md)


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


class CompletionShape:
    """Builds one request's response, or its stream of chunks, for a chat or a text completion."""

    def __init__(self, kind: str, model: str):
        self.chat = kind == "chat"
        self.model = model
        self.id = ("chatcmpl-" if self.chat else "cmpl-") + uuid.uuid4().hex[:24]
        self.created = int(time.time())

    def _frame(self, obj: str, choices: list, **extra) -> dict:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model, "choices": choices, **extra}

    def whole(
        self, text: str, finish: str, used: dict, calls: tuple[ToolCall, ...] = (), sources: list | None = None
    ) -> dict:
        """The non-streamed response (a chat answer's tool calls in its message; an answer from documents'
        sources beside its choices)."""
        if self.chat:
            message: dict = {"role": "assistant", "content": text or None if calls else text, "refusal": None}
            if calls:
                message["tool_calls"] = [_wire_call(c) for c in calls]
            choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
            extra = {SOURCES_FIELD: sources} if sources is not None else {}
            return self._frame("chat.completion", [choice], usage=used, **extra)
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        return self._frame("text_completion", [choice], usage=used)

    def opening(self) -> dict | None:
        """The first chunk of a chat stream (the role); text completions have none."""
        if not self.chat:
            return None
        return self._chunk({"role": "assistant", "content": ""}, None)

    def piece(self, text: str) -> dict:
        """A chunk carrying newly generated text."""
        return self._chunk({"content": text}, None) if self.chat else self._text_chunk(text, None)

    def call_chunks(self, calls: tuple[ToolCall, ...]) -> list[dict]:
        """A chat stream's tool calls as OpenAI sends them: per call, a chunk with its index, id and name,
        then its arguments (JSON text) in pieces."""
        chunks = []
        for index, call in enumerate(calls):
            wire = _wire_call(call)
            arguments = wire["function"]["arguments"]
            wire["function"]["arguments"] = ""
            chunks.append(self._chunk({"tool_calls": [{"index": index, **wire}]}, None))
            for start in range(0, len(arguments), ARGUMENT_PIECE):
                piece = arguments[start : start + ARGUMENT_PIECE]
                chunks.append(self._chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}, None))
        return chunks

    def closing(self, finish: str) -> dict:
        """The chunk that ends the choice with its finish reason."""
        return self._chunk({}, finish) if self.chat else self._text_chunk("", finish)

    def sources_chunk(self, sources: list) -> dict:
        """The chunk of a chat stream answered from documents that carries its sources (after the closing one)."""
        return self._frame("chat.completion.chunk", [], **{SOURCES_FIELD: sources})

    def usage_chunk(self, used: dict) -> dict:
        """The extra last chunk a client asks for with stream_options.include_usage."""
        return self._frame("chat.completion.chunk" if self.chat else "text_completion", [], usage=used)

    def _chunk(self, delta: dict, finish: str | None) -> dict:
        return self._frame(
            "chat.completion.chunk", [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
        )

    def _text_chunk(self, text: str, finish: str | None) -> dict:
        return self._frame("text_completion", [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}])


def _wire_call(call: ToolCall) -> dict:
    """A call as OpenAI's API returns it: the arguments as JSON text."""
    arguments = json.dumps(call.arguments, ensure_ascii=False)
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": arguments}}


def embeddings(model: str, vectors: np.ndarray, encoding_format: str, prompt_tokens: int) -> dict:
    """The /v1/embeddings response; base64 is the float32 little-endian bytes, as OpenAI sends it."""
    rows = np.asarray(vectors, dtype="<f4")
    if encoding_format == "base64":
        data = [base64.b64encode(row.tobytes()).decode("ascii") for row in rows]
    else:
        data = [row.tolist() for row in rows]
    return {
        "object": "list",
        "model": model,
        "data": [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(data)],
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


def model_entry(model_id: str, created: int, **extra) -> dict:
    """One model of /v1/models (``extra``: e.g. context_length, which LM Studio and Locus's client read)."""
    return {"id": model_id, "object": "model", "created": created, "owned_by": "locus", **extra}
