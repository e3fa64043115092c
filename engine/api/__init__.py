"""The OpenAI-compatible local API over the engine (see server.py)."""

from engine.api.errors import ApiServerError
from engine.api.server import ApiServer

__all__ = ["ApiServer", "ApiServerError"]
