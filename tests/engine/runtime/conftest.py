"""Runtimes with a fixed number of places in the batch, for the scheduling tests."""

from __future__ import annotations

import pytest

from engine.runtime.runtime import Runtime
from engine.runtime.types import ModelConfig


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
