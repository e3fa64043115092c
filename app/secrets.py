"""Locus's tokens in the OS keyring (service "locus"), never in settings files or logs.

Only the names in ``Secrets.KNOWN``, and MCP servers' secrets named ``mcp.NAME``
(mcp.json's ``${keyring:NAME}``), can be stored, so ``values()`` covers every
token Locus holds and the trace redactor can scrub them all. Where no keyring
exists (a bare server, a locked-down desktop), ``set`` refuses with
``KeyringUnavailableError`` and the caller may keep the token for this session
only with ``set(name, value, session_only=True)``: it lives in this process's
memory and is gone at exit. Nothing is ever stored in plain text on disk.

The keyring is touched only when a token is needed, or known to be stored: a
keyring with no default collection (or a locked one) answers a read with a
password dialog, which a plain question must never open. Which names are
stored, and which are known not to be (never a value), is kept in a small file
beside the settings, written when a token is set, looked up or removed. The
redactor reads only the stored names, once per process, and again only after
that file changes; ``get`` does not ask the keyring about a name known to be
absent, nor read from a Secret Service that has no default collection (nothing
can be stored there, and keyring's read would ask to create one).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import uuid
from contextlib import closing
from pathlib import Path

from keyring.errors import KeyringLocked, NoKeyringError, PasswordDeleteError

from engine.errors import EngineError

log = logging.getLogger(__name__)

_NO_KEYRING = (
    "No system keyring is available (install and unlock GNOME Keyring or KWallet), "
    "so Locus cannot save tokens between sessions."
)
_LOCKED = "The system keyring is locked."
_LOCKED_HINT = "Unlock it (log in again, or open your keyring manager) and try again."
STORED_NAMES_FILE = "stored-secrets.json"
_MCP_NAME = re.compile(r"^mcp\.[A-Za-z0-9_.-]{1,64}$")


def stored_names_file(paths) -> Path:
    """Where the names of the stored tokens are listed (beside config.toml; no value is ever written)."""
    return Path(paths.config_dir) / STORED_NAMES_FILE


class SecretsError(EngineError):
    """A token could not be read from, saved to or removed from the system keyring."""

    code = "secrets_error"


class KeyringUnavailableError(SecretsError):
    """There is no usable system keyring; a token can only be kept for this session."""

    code = "keyring_unavailable"


class Secrets:
    """The tokens Locus uses (Hugging Face, OTLP collector, remote API), kept in the OS keyring.

    Safe to share between threads; ``values()`` is what the trace Redactor calls. ``index_path`` is the
    file that lists which names are stored (see the module's notes); without it only the names this
    instance set or found are known.
    """

    KNOWN = ("hf_token", "otlp_api_key", "remote_api_key", "server_api_key", "embedding_api_key")
    MCP_PREFIX = "mcp."  # an MCP server's secret: "mcp.NAME", read for mcp.json's ${keyring:NAME}

    @classmethod
    def is_known(cls, name: str) -> bool:
        """Whether Locus may store a token under ``name``: one of KNOWN, or an MCP secret "mcp.NAME"."""
        return name in cls.KNOWN or bool(_MCP_NAME.match(name))

    def __init__(self, backend=None, service: str = "locus", *, index_path: str | Path | None = None):
        self._backend = backend  # resolved on first use: finding the keyring talks to D-Bus
        self.service = service
        self.index_path = Path(index_path) if index_path is not None else None
        self._lock = threading.Lock()
        self._session: dict[str, str] = {}
        self._listed: dict[str, str] = {}  # name -> stamp of its last change, as the index (or this instance) says
        self._absent: set[str] = set()  # names known not to be stored
        self._index_seen: tuple | None = None  # the index file's (mtime, size) when last read
        self._stored: dict[str, tuple[str, str | None]] = {}  # name -> (stamp read at, value) from the keyring
        self._locked = False  # a locked keyring is not asked again (and again prompts) until something changes

    @property
    def backend(self):
        if self._backend is None:
            import keyring

            self._backend = keyring.get_keyring()
        return self._backend

    # Status --------------------------------------------------------------------------

    def available(self) -> tuple[bool, str]:
        """Whether tokens can be saved in the system keyring, with a sentence for people either way."""
        if _is_placeholder(self.backend):
            return False, _NO_KEYRING
        try:
            self.backend.get_password(self.service, self.KNOWN[0])
        except NoKeyringError:
            return False, _NO_KEYRING
        except KeyringLocked:
            return False, f"{_LOCKED} {_LOCKED_HINT}"
        except Exception as exc:  # noqa: BLE001 - D-Bus and backend errors all mean "not usable now"
            return False, (
                f"The system keyring did not answer ({type(exc).__name__}); install and unlock "
                "GNOME Keyring or KWallet, or keep tokens for this session only."
            )
        name = getattr(self.backend, "name", type(self.backend).__name__)
        return True, f"Tokens are saved in the system keyring ({name})."

    # Reading and writing -------------------------------------------------------------

    def get(self, name: str) -> str | None:
        """The token stored under ``name`` (a session-only one first), or None when there is none.

        Asks the keyring unless the name is known not to be stored, and notes in the index whether it is.
        """
        _check(name)
        with self._lock:
            if name in self._session:
                return self._session[name]
            self._refresh_index()
            if name in self._absent and name not in self._listed:
                return None
        if _is_placeholder(self.backend) or _no_default_collection(self.backend):
            return None
        try:
            value = self.backend.get_password(self.service, name) or None
        except NoKeyringError:
            return None
        except Exception as exc:
            raise _error(exc, f"The token '{name}' could not be read from the system keyring.") from exc
        with self._lock:
            self._locked = False
            self._refresh_index()
            if value is None:
                self._stored.pop(name, None)
                self._list(name, None)
            else:
                stamp = self._listed.get(name) or self._list(name, _stamp())
                self._stored[name] = (stamp, value)
        return value

    def set(self, name: str, value: str, *, session_only: bool = False) -> None:
        """Save a token in the keyring, or only in memory for this session; an empty value deletes it.

        Raises KeyringUnavailableError when there is no keyring (the caller may offer ``session_only``).
        """
        _check(name)
        if not value:
            self.delete(name)
            return
        if session_only:
            with self._lock:
                self._session[name] = value
            log.info("secret %s kept for this session only", name)
            return
        if _is_placeholder(self.backend):
            raise KeyringUnavailableError(_NO_KEYRING, hint="Keep the token for this session only instead.")
        try:
            self.backend.set_password(self.service, name, value)
        except Exception as exc:
            raise _error(exc, f"The token '{name}' could not be saved in the system keyring.", scrub=value) from exc
        with self._lock:
            self._session.pop(name, None)
            self._refresh_index()
            self._stored[name] = (self._list(name, _stamp()), value)
            self._locked = False
        log.info("secret %s saved in the system keyring", name)

    def delete(self, name: str) -> None:
        """Remove a token from the keyring and the session (nothing to remove is not an error)."""
        _check(name)
        with self._lock:
            self._session.pop(name, None)
        if _is_placeholder(self.backend):
            return
        try:
            self.backend.delete_password(self.service, name)
        except (PasswordDeleteError, NoKeyringError):
            pass  # not stored (SecretService says so with PasswordDeleteError), or no keyring at all
        except Exception as exc:
            raise _error(exc, f"The token '{name}' could not be removed from the system keyring.") from exc
        with self._lock:
            self._refresh_index()
            self._stored.pop(name, None)
            self._list(name, None)
            self._locked = False
        log.info("secret %s deleted", name)

    def values(self) -> list[str]:
        """Every token currently stored (session, and keyring names known to be stored), for the trace
        redactor; never raises, and never asks the keyring about a name not known to be stored.

        Each known name is read once; again only when the index says it changed (set or removed, here
        or in another Locus process). A failing read keeps the last value known.
        """
        with self._lock:
            self._refresh_index()
            due = {n: stamp for n, stamp in self._listed.items() if self._stored.get(n, (None,))[0] != stamp}
            skip = self._locked or not due or _is_placeholder(self.backend)
        read: dict[str, tuple[str, str | None]] = {}
        locked = False
        if not skip:
            for name, stamp in due.items():
                try:
                    read[name] = (stamp, self.backend.get_password(self.service, name) or None)
                except KeyringLocked:
                    locked = True  # asking again would show another unlock prompt on every batch
                    break
                except Exception as exc:  # noqa: BLE001 - keep redacting with what was known
                    log.debug("could not read secret %s for redaction (%s)", name, type(exc).__name__)
        with self._lock:
            for name, (stamp, value) in read.items():
                if self._listed.get(name) == stamp:  # not changed meanwhile
                    self._stored[name] = (stamp, value)
            self._locked = self._locked or locked
            stored = [v for n, (_, v) in self._stored.items() if v and n in self._listed]
            return list(dict.fromkeys([*self._session.values(), *stored]))

    # The index of stored names -------------------------------------------------------

    def _refresh_index(self) -> None:
        """Read the index file again if it changed since it was last read (under the lock)."""
        if self.index_path is None:
            return
        try:
            st = self.index_path.stat()
            seen = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            seen = None
        if seen == self._index_seen:
            return
        self._index_seen = seen
        listed, absent = {}, set()
        if seen is not None:
            try:
                index = json.loads(self.index_path.read_text(encoding="utf-8"))
                listed = {n: str(s) for n, s in index.get("stored", {}).items() if self.is_known(n)}
                absent = {n for n in index.get("absent", []) if self.is_known(n)} - set(listed)
            except (OSError, ValueError, AttributeError, TypeError) as exc:
                log.warning("the list of stored tokens %s could not be read (%s)", self.index_path, exc)
        self._listed, self._absent = listed, absent
        self._locked = False  # something changed: a locked keyring may be asked once more

    def _list(self, name: str, stamp: str | None) -> str | None:
        """Note ``name`` as stored (with the stamp of this change) or not stored, in memory and in the index."""
        if stamp is None:
            known = name in self._absent and name not in self._listed
            self._listed.pop(name, None)
            self._absent.add(name)
            if known:
                return None
        else:
            self._listed[name] = stamp
            self._absent.discard(name)
        self._write_index()
        return stamp

    def _write_index(self) -> None:
        if self.index_path is None:
            return
        try:
            _write_private(
                self.index_path, json.dumps({"stored": self._listed, "absent": sorted(self._absent)}, indent=1)
            )
            st = self.index_path.stat()
            self._index_seen = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError as exc:
            log.warning("the list of stored tokens %s could not be written (%s)", self.index_path, exc)


def _stamp() -> str:
    return uuid.uuid4().hex[:12]


def _write_private(path: Path, text: str) -> None:
    """Write a file atomically, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _check(name: str) -> None:
    if not Secrets.is_known(name):
        raise ValueError(f"unknown secret {name!r}; Locus stores only {', '.join(Secrets.KNOWN)} and mcp.NAME")


def _is_placeholder(backend) -> bool:
    """keyring's stand-ins for "no keyring": fail raises on every call, null silently stores nothing."""
    from keyring.backends import chainer, fail, null

    if isinstance(backend, (fail.Keyring, null.Keyring)):
        return True
    return isinstance(backend, chainer.ChainerBackend) and not backend.backends


def _no_default_collection(backend) -> bool:
    """Whether ``backend`` is the Secret Service and has no default collection. Nothing is stored there
    then, and keyring's read would ask the service to create one: on a desktop, a "Choose password for new
    keyring" dialog. Asking whether the collection exists opens nothing."""
    from keyring.backends import SecretService, chainer

    members = backend.backends if isinstance(backend, chainer.ChainerBackend) else [backend]
    if not members or not all(
        isinstance(b, SecretService.Keyring) and not hasattr(b, "preferred_collection") for b in members
    ):
        return False
    try:
        import secretstorage
    except ImportError:
        return False
    try:
        with closing(secretstorage.dbus_init()) as bus:
            secretstorage.Collection(bus)  # the "default" alias; raises when there is none
    except secretstorage.exceptions.ItemNotFoundException:
        return True
    except Exception:  # noqa: BLE001 - not sure: let the read itself report what is wrong
        return False
    return False


def _error(exc: Exception, message: str, scrub: str = "") -> SecretsError:
    detail = f"{type(exc).__name__}: {exc}"
    if scrub:
        detail = detail.replace(scrub, "[redacted]")  # backends rarely echo the value, but logs must never hold it
    if isinstance(exc, NoKeyringError):
        return KeyringUnavailableError(_NO_KEYRING, hint="Keep the token for this session only instead.", detail=detail)
    if isinstance(exc, KeyringLocked):
        return SecretsError(f"{message} {_LOCKED}", hint=_LOCKED_HINT, detail=detail)
    return SecretsError(message, hint="Check that GNOME Keyring or KWallet is running and unlocked.", detail=detail)
