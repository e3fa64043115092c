"""How a hub model would run here, before it is downloaded: its GGUF header read with Range requests.

Only the header (metadata and tensor table, a few MB) is fetched, starting with
the first 4 MB and growing while the header goes on; from it and each
quantization's file size the offload planner gives a verdict per quantization.
"""

from __future__ import annotations

import httpx2

from engine.errors import EngineError
from engine.models.gguf import GGUFFile, NeedMoreBytes, read_gguf_prefix
from engine.models.hub import QuantFile
from engine.models.offload import OffloadPlan, plan_for_quantizations

FIRST_BYTES = 4 << 20
MOST_BYTES = 64 << 20  # no real header is this long; a file that claims so is refused


class PreviewError(EngineError):
    """The header of a hub file could not be fetched or read."""

    code = "preview_failed"


def remote_header(url: str, token: str | None = None, *, client: httpx2.Client | None = None) -> GGUFFile:
    """The GGUF header of the file at ``url``, fetched with growing Range requests."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    own = client is None
    client = client or httpx2.Client(follow_redirects=True, timeout=30)
    want = FIRST_BYTES
    try:
        while True:
            try:
                response = client.get(url, headers={**headers, "Range": f"bytes=0-{want - 1}"})
            except httpx2.HTTPError as exc:
                raise PreviewError(
                    "Could not read the model's header from the hub.", detail=type(exc).__name__
                ) from None
            if response.status_code not in (200, 206):
                raise PreviewError(f"The hub answered HTTP {response.status_code} for the model's header.")
            total = _total_size(response)
            try:
                return read_gguf_prefix(response.content[:want], url.rsplit("/", 1)[-1], total)
            except NeedMoreBytes:
                if want >= MOST_BYTES:
                    raise PreviewError(
                        "The model's header is longer than any real GGUF header; it is refused."
                    ) from None
                want *= 4
    finally:
        if own:
            client.close()


def _total_size(response) -> int:
    """The whole file's size: from Content-Range on a 206, else the body's length."""
    content_range = response.headers.get("content-range", "")
    if "/" in content_range and content_range.rsplit("/", 1)[1].isdigit():
        return int(content_range.rsplit("/", 1)[1])
    return len(response.content)


def quantization_verdicts(
    quants: list[QuantFile],
    hardware,
    n_ctx: int,
    token: str | None = None,
    *,
    client: httpx2.Client | None = None,
    **plan_options,
) -> dict[str, OffloadPlan]:
    """A plan per quantization (by file name) from the header of the smallest single-file one and every
    file's size; split models (whose first part holds only some tensors) get none. ``plan_options``: the
    planner's kv_type and flash_attention."""
    sized = [q for q in quants if q.size and not q.split]
    if not sized:
        return {}
    smallest = min(sized, key=lambda q: q.size or 0)
    header = remote_header(smallest.url, token, client=client)
    return plan_for_quantizations(header, {q.filename: q.size or 0 for q in sized}, hardware, n_ctx, **plan_options)
