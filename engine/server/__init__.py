"""The OpenAI-compatible local API over the engine (see server.py)."""

from engine.server.errors import ApiServerError
from engine.server.server import ApiServer

__all__ = ["ApiServer", "ApiServerError"]
