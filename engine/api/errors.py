"""Errors of the local API, as OpenAI's clients expect them: ``{"error": {message, type, param, code}}``.

Handlers raise ``ApiError`` with the HTTP status and the OpenAI error type; engine
errors are translated in one place (``from_engine``). Nothing here ever carries a
traceback: unexpected failures become a generic 500 and are logged.
"""

from __future__ import annotations

from engine.errors import (
    EngineError,
    InvalidRequestError,
    ModelNotLoadedError,
    RuntimeStoppedError,
    TemplateError,
)

INTERNAL_MESSAGE = "The server had an error while processing your request. Its log has the details."


class ApiServerError(EngineError):
    """The local API could not start: the port is taken, the address is wrong, or a key is missing."""

    code = "api_server_error"


class ApiError(Exception):
    """One failed API request: the HTTP status and the OpenAI-style error object the client gets."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",  # noqa: A002 - OpenAI's field name
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict:
        """The JSON body of the error response."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def invalid(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    """A 400 for a field that is missing, of the wrong type or out of range."""
    return ApiError(400, message, param=param, code=code)


def unsupported(what: str, param: str) -> ApiError:
    """A 400 for an OpenAI feature this server does not offer (said so rather than silently ignored)."""
    return ApiError(400, f"{what} is not supported by this server.", param=param, code="unsupported_parameter")


def model_not_found(model: object, offered: list[str]) -> ApiError:
    """A 404 naming the models the client can use instead."""
    listing = ", ".join(f"'{m}'" for m in offered) or "none (no model is loaded)"
    return ApiError(
        404,
        f"The model '{model}' does not exist on this server. It offers: {listing}.",
        param="model",
        code="model_not_found",
    )


def context_exceeded(message: str, param: str) -> ApiError:
    """A 400 for a prompt or max_tokens that does not fit the model's context (or the server's limit)."""
    return ApiError(400, message, param=param, code="context_length_exceeded")


RETRY_AFTER_S = 2  # what a 503 "busy" asks clients to wait (OpenAI's clients honour Retry-After)


def busy(why: str) -> ApiError:
    """A 503 for a server at one of its limits, with Retry-After: the client may try again shortly."""
    return ApiError(
        503,
        f"{why} Try again in a moment.",
        type="server_error",
        code="server_busy",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def shutting_down() -> ApiError:
    return ApiError(503, "The server is shutting down.", type="server_error", code="server_shutting_down")


def from_engine(error: EngineError, param: str | None = None) -> ApiError:
    """The API error for an engine error: its words for people, with the status that fits its kind."""
    text = error.user_text()
    if isinstance(error, (InvalidRequestError, TemplateError)):
        return ApiError(400, text, param=param, code=error.code)
    if isinstance(error, (ModelNotLoadedError, RuntimeStoppedError)):
        return ApiError(503, text, type="server_error", code=error.code)
    return ApiError(500, text, type="server_error", code=error.code)
