"""Typed engine errors, each carrying a message written for people.

The UI and the CLI show ``str(error)`` (plus ``hint`` when present) and never a
traceback; ``detail`` keeps the technical cause for logs and traces.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base of every error the engine reports to its callers."""

    code = "engine_error"

    def __init__(self, message: str, *, hint: str | None = None, detail: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.detail = detail

    def user_text(self) -> str:
        """The message and its hint, as one paragraph for a dialog or a terminal."""
        return f"{self.message} {self.hint}" if self.hint else self.message


class ModelLoadError(EngineError):
    """A model file could not be loaded: missing, unreadable, corrupt or unsupported."""

    code = "model_load_failed"


class ModelNotLoadedError(EngineError):
    """A request arrived while no model is loaded."""

    code = "model_not_loaded"


class GenerationError(EngineError):
    """llama.cpp failed while evaluating the prompt or generating."""

    code = "generation_failed"


class InvalidRequestError(EngineError):
    """A request's parameters are malformed or out of range."""

    code = "invalid_request"


class TemplateError(EngineError):
    """A chat or prompt template could not be rendered."""

    code = "template_error"


class HistoryError(EngineError):
    """The conversation store could not be read or written."""

    code = "history_error"


class NotFoundError(EngineError):
    """A conversation or message that was asked for does not exist."""

    code = "not_found"


class RuntimeStoppedError(EngineError):
    """The runtime was shut down before the request could run."""

    code = "runtime_stopped"


class InvalidModelFileError(ModelLoadError):
    """A model file failed the checks made before loading: not GGUF, truncated, corrupt or unsupported."""

    code = "invalid_model_file"


class BackendUnavailableError(EngineError):
    """A conversation asks for a backend (e.g. the model server) that is not set up now."""

    code = "backend_unavailable"
