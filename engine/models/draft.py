"""Which local models can draft for the model in use (speculative decoding 'draft', issue 20).

A draft model guesses the next tokens and the model in use checks them in one batch, so the two
must share one vocabulary token for token (the engine refuses a draft whose vocabulary size
differs, engine/runtime/speculative.py), and the draft must be much cheaper than the model it
drafts for, or the guesses cost more than they save. Read from the GGUF headers only: nothing is
loaded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from engine.models.catalog import LocalModel
from engine.models.gguf import GGUFFile

MAX_DRAFT_SHARE = 0.5  # a draft with more than half the parameters of the model in use saves nothing
IDEAL_SHARE = 0.1  # about a tenth of the model in use: cheap, and still a good guesser


@dataclass(frozen=True)
class DraftFit:
    model: LocalModel
    share: float  # the draft's parameters as a share of the model in use's


def vocabulary_key(header: GGUFFile) -> tuple | None:
    """What two models must share to draft for each other: the tokenizer kind, every token's text and
    the special tokens; None when the header does not list its tokens."""
    meta = header.metadata
    tokens = meta.get("tokenizer.ggml.tokens")
    if not isinstance(tokens, list) or not tokens:
        return None
    digest = hashlib.sha256("\x00".join(str(t) for t in tokens).encode("utf-8", "surrogatepass")).hexdigest()
    specials = tuple(meta.get(f"tokenizer.ggml.{name}_token_id") for name in ("bos", "eos"))
    return str(meta.get("tokenizer.ggml.model", "")), len(tokens), digest, specials


def why_not_draft(target: GGUFFile, candidate: GGUFFile) -> str | None:
    """None when ``candidate`` can draft for ``target``, else the reason in words."""
    key = vocabulary_key(target)
    if key is None:
        return "The model in use does not list its vocabulary."
    if vocabulary_key(candidate) != key:
        return "Its vocabulary differs from the model in use's."
    if not target.n_params or candidate.n_params > target.n_params * MAX_DRAFT_SHARE:
        return "It is not much smaller than the model in use, so its guesses would cost more than they save."
    return None


def fitting_drafts(target_path: str, models: Iterable[LocalModel], header: Callable[[str], GGUFFile]) -> list[DraftFit]:
    """The local models that can draft for the model at ``target_path``, the best first (the one nearest a
    tenth of its size)."""
    target = header(target_path)
    fits = []
    for model in models:
        if model.problem is not None or model.path == target_path:
            continue
        candidate = header(model.path)
        if why_not_draft(target, candidate) is None:
            fits.append(DraftFit(model, candidate.n_params / target.n_params))
    return sorted(fits, key=lambda f: abs(f.share - IDEAL_SHARE))
