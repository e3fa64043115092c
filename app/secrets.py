"""Locus's tokens in the OS keyring (service "locus"), never in settings files or logs.

Only the names in ``Secrets.KNOWN`` can be stored, so ``values()`` covers every
token Locus holds and the trace redactor can scrub them all. Where no keyring
exists (a bare server, a locked-down desktop), ``set`` refuses with
``KeyringUnavailableError`` and the caller may keep the token for this session
only with ``set(name, value, session_only=True)``: it lives in this process's
memory and is gone at exit. Nothing is ever stored in plain text on disk.
"""

from __future__ import annotations

import logging
import threading
import time

from keyring.errors import KeyringLocked, NoKeyringError, PasswordDeleteError

from engine.errors import EngineError

log = logging.getLogger(__name__)

_NO_KEYRING = ("No system keyring is available (install and unlock GNOME Keyring or KWallet), "
               "so Locus cannot save tokens between sessions.")
_LOCKED = "The system keyring is locked."
_LOCKED_HINT = "Unlock it (log in again, or open your keyring manager) and try again."


class SecretsError(EngineError):
    """A token could not be read from, saved to or removed from the system keyring."""

    code = "secrets_error"


class KeyringUnavailableError(SecretsError):
    """There is no usable system keyring; a token can only be kept for this session."""

    code = "keyring_unavailable"


class Secrets:
    """The tokens Locus uses (Hugging Face, OTLP collector, remote API), kept in the OS keyring.

    Safe to share between threads; ``values()`` is what the trace Redactor calls.
    """

    KNOWN = ("hf_token", "otlp_api_key", "remote_api_key", "server_api_key")
    CACHE_S = 30.0

    def __init__(self, backend=None, service: str = "locus"):
        if backend is None:
            import keyring

            backend = keyring.get_keyring()
        self.backend = backend
        self.service = service
        self._lock = threading.Lock()
        self._session: dict[str, str] = {}
        self._stored: dict[str, str] = {}  # the keyring's values as last read or written
        self._cached: list[str] | None = None
        self._cached_at = 0.0
        self._generation = 0  # bumped by every change, so a read that raced one is not cached
        self._locked = False  # a locked keyring is not asked again (and again prompts) until the user acts

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
            return False, (f"The system keyring did not answer ({type(exc).__name__}); install and unlock "
                           "GNOME Keyring or KWallet, or keep tokens for this session only.")
        name = getattr(self.backend, "name", type(self.backend).__name__)
        return True, f"Tokens are saved in the system keyring ({name})."

    # Reading and writing -------------------------------------------------------------

    def get(self, name: str) -> str | None:
        """The token stored under ``name`` (a session-only one first), or None when there is none."""
        _check(name)
        with self._lock:
            if name in self._session:
                return self._session[name]
        if _is_placeholder(self.backend):
            return None
        try:
            value = self.backend.get_password(self.service, name) or None
        except NoKeyringError:
            return None
        except Exception as exc:  # noqa: BLE001 - every backend failure becomes words for people
            raise _error(exc, f"The token '{name}' could not be read from the system keyring.") from exc
        with self._lock:
            self._locked = False
            if value is None:
                self._stored.pop(name, None)
            else:
                self._stored[name] = value
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
                self._invalidate()
            log.info("secret %s kept for this session only", name)
            return
        if _is_placeholder(self.backend):
            raise KeyringUnavailableError(_NO_KEYRING, hint="Keep the token for this session only instead.")
        try:
            self.backend.set_password(self.service, name, value)
        except Exception as exc:  # noqa: BLE001
            raise _error(exc, f"The token '{name}' could not be saved in the system keyring.",
                         scrub=value) from exc
        with self._lock:
            self._session.pop(name, None)
            self._stored[name] = value
            self._locked = False
            self._invalidate()
        log.info("secret %s saved in the system keyring", name)

    def delete(self, name: str) -> None:
        """Remove a token from the keyring and the session (nothing to remove is not an error)."""
        _check(name)
        with self._lock:
            self._session.pop(name, None)
            self._invalidate()
        if _is_placeholder(self.backend):
            return
        try:
            self.backend.delete_password(self.service, name)
        except (PasswordDeleteError, NoKeyringError):
            pass  # not stored (SecretService says so with PasswordDeleteError), or no keyring at all
        except Exception as exc:  # noqa: BLE001
            raise _error(exc, f"The token '{name}' could not be removed from the system keyring.") from exc
        with self._lock:
            self._stored.pop(name, None)
            self._locked = False
            self._invalidate()
        log.info("secret %s deleted", name)

    def values(self) -> list[str]:
        """Every token currently stored (keyring and session), for the trace redactor; never raises.

        Cached for ``CACHE_S`` seconds (the redactor calls this on each export batch and a keyring read is a
        D-Bus round trip); set and delete invalidate it. A failing read keeps the last values it knew.
        """
        with self._lock:
            if self._cached is not None and time.monotonic() - self._cached_at < self.CACHE_S:
                return list(self._cached)
            generation, stored, skip = self._generation, dict(self._stored), self._locked
        locked = False
        if not skip and not _is_placeholder(self.backend):
            for name in self.KNOWN:
                try:
                    value = self.backend.get_password(self.service, name)
                except KeyringLocked:
                    locked = True  # asking again would show another unlock prompt on every batch
                    break
                except Exception as exc:  # noqa: BLE001 - keep redacting with what was known
                    log.debug("could not read secret %s for redaction (%s)", name, type(exc).__name__)
                    continue
                if value:
                    stored[name] = value
                else:
                    stored.pop(name, None)
        with self._lock:
            found = list(dict.fromkeys([*self._session.values(), *stored.values()]))
            if self._generation == generation:
                self._stored, self._locked = stored, self._locked or locked
                self._cached, self._cached_at = found, time.monotonic()
            return list(found)

    def _invalidate(self) -> None:
        self._generation += 1
        self._cached = None


def _check(name: str) -> None:
    if name not in Secrets.KNOWN:
        raise ValueError(f"unknown secret {name!r}; Locus stores only {', '.join(Secrets.KNOWN)}")


def _is_placeholder(backend) -> bool:
    """keyring's stand-ins for "no keyring": fail raises on every call, null silently stores nothing."""
    from keyring.backends import chainer, fail, null

    if isinstance(backend, (fail.Keyring, null.Keyring)):
        return True
    return isinstance(backend, chainer.ChainerBackend) and not backend.backends


def _error(exc: Exception, message: str, scrub: str = "") -> SecretsError:
    detail = f"{type(exc).__name__}: {exc}"
    if scrub:
        detail = detail.replace(scrub, "[redacted]")  # backends rarely echo the value, but logs must never hold it
    if isinstance(exc, NoKeyringError):
        return KeyringUnavailableError(_NO_KEYRING, hint="Keep the token for this session only instead.",
                                       detail=detail)
    if isinstance(exc, KeyringLocked):
        return SecretsError(f"{message} {_LOCKED}", hint=_LOCKED_HINT, detail=detail)
    return SecretsError(message, hint="Check that GNOME Keyring or KWallet is running and unlocked.", detail=detail)
