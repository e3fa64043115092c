"""Search the Hugging Face hub for GGUF repositories and list their quantizations.

Only ``HubClient`` talks to ``huggingface_hub.HfApi``; everything it returns is a
frozen dataclass, and every hub failure becomes a ``HubError`` with words for people.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx2
from huggingface_hub import HfApi, hf_hub_url
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from engine.errors import EngineError

TOKEN_HINT = "Add a Hugging Face token in Settings › Models."


class HubError(EngineError):
    """The hub answered with an error that is not one of the cases below."""

    code = "hub_error"


class HubAuthError(HubError):
    """A gated or private repository (or file) needs a token, or the token was refused."""

    code = "hub_auth"


class HubNotFoundError(HubError):
    """The repository, revision or file does not exist (or is private and no token was given)."""

    code = "hub_not_found"


class HubUnavailableError(HubError):
    """The hub cannot be reached: offline, DNS, proxy, time-out or a server outage."""

    code = "hub_unavailable"


@dataclass(frozen=True)
class RepoSummary:
    """One search result: a model repository that holds GGUF files."""

    repo_id: str
    downloads: int
    likes: int
    gated: bool
    updated: datetime | None


@dataclass(frozen=True)
class FilePart:
    """One file to fetch: the whole model, or one part of a split model."""

    filename: str
    size: int | None
    sha256: str | None
    url: str


@dataclass(frozen=True)
class QuantFile:
    """One quantization of a repository: a single GGUF or the parts of a split one."""

    repo_id: str
    filename: str
    quant: str
    size: int | None
    sha256: str | None
    url: str
    parts: tuple[FilePart, ...]

    @property
    def split(self) -> bool:
        """Whether the model is stored as several ``-0000k-of-0000n.gguf`` files."""
        return len(self.parts) > 1


_SPLIT = re.compile(r"^(?P<base>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)
# Anchored on separators so "Qwen2.5" or "1B" never read as a quantization.
_QUANT = re.compile(
    r"(?:^|(?<=[-._/]))(I?Q\d+(?:_[A-Z0-9]+)*|TQ\d_\d|MXFP4(?:_MOE)?|BF16|FP16|FP32|F16|F32)(?=[-._]|$)",
    re.IGNORECASE,
)
# Rough bits per weight, used only to order files when the hub gave no sizes.
_BITS = {
    "IQ1": 1.6,
    "IQ2": 2.4,
    "IQ3": 3.3,
    "IQ4": 4.3,
    "TQ1": 1.7,
    "TQ2": 2.1,
    "MXFP4": 4.3,
    "BF16": 16,
    "FP16": 16,
    "F16": 16,
    "FP32": 32,
    "F32": 32,
}


def parse_quant(filename: str) -> str:
    """The quantization named in a GGUF file name (``Q4_K_M``, ``IQ2_XS``, ``BF16``…), or ``"unknown"``."""
    stem = filename.rsplit("/", 1)[-1]
    match = _SPLIT.match(stem)
    stem = match["base"] if match else re.sub(r"\.gguf$", "", stem, flags=re.IGNORECASE)
    found = list(_QUANT.finditer(stem))
    return found[-1].group(1).upper() if found else "unknown"


def _bits(quant: str) -> float:
    head = quant.split("_")[0]
    if head in _BITS:
        return _BITS[head]
    digits = re.search(r"\d+", head)
    return float(digits.group()) + 0.5 if digits else 99.0


class HubClient:
    """The hub seen as GGUF repositories and their quantizations; ``api`` replaces ``HfApi`` in tests."""

    def __init__(self, token: str | None = None, endpoint: str | None = None, api: Any = None):
        self._token = token or None
        self._endpoint = endpoint
        self._api = api if api is not None else HfApi(endpoint=endpoint, token=self._token)

    def sends(self, token: str) -> bool:
        """Whether requests carry this token (compared in constant time; the token itself is not shown)."""
        return self._token is not None and hmac.compare_digest(self._token, token)

    def search(self, query: str, limit: int = 20) -> list[RepoSummary]:
        """GGUF repositories matching ``query``, most downloaded first."""
        with _hub_errors(f'search "{query}"', self._token):
            found = list(
                self._api.list_models(
                    search=query or None, filter="gguf", sort="downloads", limit=limit, token=self._token
                )
            )
        return [
            RepoSummary(
                repo_id=info.id,
                downloads=info.downloads or 0,
                likes=info.likes or 0,
                gated=bool(info.gated),
                updated=info.last_modified,
            )
            for info in found
        ]

    def quantizations(self, repo_id: str, revision: str = "main") -> list[QuantFile]:
        """The GGUF quantizations of ``repo_id`` with sizes and SHA-256, smallest first."""
        with _hub_errors(repo_id, self._token):
            info = self._api.model_info(repo_id, revision=revision, files_metadata=True, token=self._token)
        # Pin the URLs to the commit just listed so a push during a download cannot mix files.
        pinned = info.sha or revision
        groups: dict[str, list[FilePart]] = {}
        for sibling in info.siblings or []:
            name = sibling.rfilename
            # Vision projectors (mmproj) are companions of a model, not models to run.
            if not name.lower().endswith(".gguf") or name.rsplit("/", 1)[-1].lower().startswith("mmproj"):
                continue
            lfs = sibling.lfs
            part = FilePart(
                filename=name,
                size=sibling.size if sibling.size is not None else (lfs.size if lfs else None),
                sha256=lfs.sha256 if lfs else None,
                url=hf_hub_url(repo_id, name, revision=pinned, endpoint=self._endpoint),
            )
            split = _SPLIT.match(name)
            groups.setdefault(split["base"] if split else name, []).append(part)
        quants = [self._quant_file(repo_id, sorted(parts, key=lambda p: p.filename)) for parts in groups.values()]
        return sorted(quants, key=lambda q: (q.size is None, q.size or 0, _bits(q.quant), q.filename))

    @staticmethod
    def _quant_file(repo_id: str, parts: list[FilePart]) -> QuantFile:
        first = parts[0]
        sizes = [p.size for p in parts]
        return QuantFile(
            repo_id=repo_id,
            filename=first.filename,
            quant=parse_quant(first.filename),
            size=_total(sizes),
            sha256=first.sha256 if len(parts) == 1 else None,
            url=first.url,
            parts=tuple(parts),
        )


@contextmanager
def _hub_errors(what: str, token: str | None) -> Iterator[None]:
    """Turns huggingface_hub and transport exceptions into ``HubError`` subclasses."""
    try:
        yield
    except EngineError:
        raise
    except Exception as error:
        raise hub_error(error, what, has_token=token is not None) from error


def hub_error(error: Exception, what: str, *, has_token: bool) -> HubError:
    """The ``HubError`` for an exception raised while asking the hub about ``what``."""
    detail = f"{type(error).__name__}: {error}"
    if isinstance(error, GatedRepoError):
        return HubAuthError(
            f"{what} is gated: accept its terms on huggingface.co"
            + (" with the account of your token." if has_token else " and add a token (Settings › Models)."),
            detail=detail,
        )
    if isinstance(error, RevisionNotFoundError):
        return HubNotFoundError(f"{what}: that revision does not exist on the hub.", detail=detail)
    if isinstance(error, RepositoryNotFoundError):
        if has_token:
            return HubNotFoundError(
                f"{what} was not found on the Hugging Face hub (or your token cannot see it).", detail=detail
            )
        return HubNotFoundError(
            f"{what} was not found on the Hugging Face hub. If it is private, it needs a token.",
            hint=TOKEN_HINT,
            detail=detail,
        )
    if isinstance(error, HfHubHTTPError):
        status = error.response.status_code if error.response is not None else None
        if status in (401, 403):
            return HubAuthError(
                f"The hub refused access to {what}: the token is invalid or lacks permission."
                if has_token
                else f"{what} needs a token.",
                hint=TOKEN_HINT,
                detail=detail,
            )
        if status is not None and status >= 500:
            return HubUnavailableError(
                f"The Hugging Face hub is having trouble (error {status}); try again later.", detail=detail
            )
        return HubError(f"The hub could not answer about {what} (error {status}).", detail=detail)
    if isinstance(error, OfflineModeIsEnabled):
        return HubUnavailableError(
            "Hub access is switched off (offline mode); models already on disk still work.", detail=detail
        )
    if isinstance(error, (httpx2.TransportError, OSError)):
        return HubUnavailableError(
            "Cannot reach the Hugging Face hub (offline?). Check the network or proxy and try again; "
            "models already on disk still work.",
            detail=detail,
        )
    return HubError(f"Unexpected answer from the hub about {what}.", detail=detail)


def _total(sizes: list[int | None]) -> int | None:
    """The sum of sizes, or None when any is unknown."""
    known = [size for size in sizes if size is not None]
    return sum(known) if len(known) == len(sizes) else None
