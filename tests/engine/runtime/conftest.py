"""Runtimes with a fixed number of places in the batch, for the scheduling tests."""

from __future__ import annotations

import threading

import pytest

from engine.runtime.runtime import Runtime
from engine.runtime.types import ModelConfig, Token


def counting_tokens(n: int):
    """An event set once a request has streamed ``n`` tokens, and the event callback that counts them."""
    seen, count = threading.Event(), [0]

    def on_event(event) -> None:
        if isinstance(event, Token):
            count[0] += 1
            if count[0] == n:
                seen.set()

    return seen, on_event


def _runtime(model_path: str, n_parallel: int):
    rt = Runtime()
    rt.load(ModelConfig(model_path, n_ctx=2048, n_parallel=n_parallel)).result(timeout=120)
    yield rt
    rt.shutdown()


@pytest.fixture()
def one_slot(model_path):
    """A runtime that runs one request at a time, so the next ones really wait in the queue."""
    yield from _runtime(model_path, 1)


@pytest.fixture()
def two_slots(model_path):
    """A runtime that decodes two requests together; a third waits."""
    yield from _runtime(model_path, 2)
