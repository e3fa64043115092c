"""Secrets live in the real OS keyring, and no token reaches the trace store's files on disk."""

from __future__ import annotations

import pytest
from keyring.backends import SecretService, fail, null
from opentelemetry.trace import Status, StatusCode

from app.secrets import KeyringUnavailableError, Secrets, SecretsError
from engine.trace.store import TraceStore
from engine.trace.tracing import REDACTED, Redactor, Tracing

# Shaped like nothing the Redactor's patterns know: only the keyring lookup can catch these two.
OTLP_TOKEN = "otlp-7f3a9c2e1b5d4f60a8e2c4"
HF_TOKEN = "Kp4vX9mQ2rT7wY1zB6nD"
# Never stored anywhere: the Redactor must catch these by their shape alone.
SHAPED_TOKEN = "hf_" + "aB3dE5gH7jK9mN1pQ3sT5vX7z"
LOOSE_KEY = "q8W2e4R6t8Y0u2I4"


def test_secrets_round_trip_through_the_keyring(secret_service):
    secrets = Secrets(backend=secret_service)
    assert secrets.available() == (True, "Tokens are saved in the system keyring (SecretService Keyring).")
    assert secrets.get("hf_token") is None

    secrets.set("hf_token", HF_TOKEN)
    assert secrets.get("hf_token") == HF_TOKEN
    # Another instance (another process, in practice) reads it from the keyring, not from memory.
    assert Secrets(backend=secret_service).get("hf_token") == HF_TOKEN
    assert secret_service.get_password("locus", "hf_token") == HF_TOKEN

    secrets.delete("hf_token")
    assert secrets.get("hf_token") is None
    assert secret_service.get_password("locus", "hf_token") is None
    secrets.delete("hf_token")  # deleting what is not there is not an error
    assert secrets.values() == []


def test_only_known_names_can_be_stored(secret_service):
    with pytest.raises(ValueError, match="hf_token"):
        Secrets(backend=secret_service).set("my_password", "x" * 12)


def CountingKeyring(backend):  # noqa: N802 - reads as the wrapper it is
    """The real backend (same class, same state), with every call to it counted: the seam where Locus
    touches the keyring."""

    class Counting(type(backend)):
        def get_password(self, service, name):
            self.calls.append(("get", name))
            return super().get_password(service, name)

        def set_password(self, service, name, value):
            self.calls.append(("set", name))
            return super().set_password(service, name, value)

        def delete_password(self, service, name):
            self.calls.append(("delete", name))
            return super().delete_password(service, name)

    counting = Counting.__new__(Counting)
    counting.__dict__.update(vars(backend))
    counting.calls = []
    return counting


def test_values_reads_only_names_known_to_be_stored_once_each(secret_service, tmp_path):
    index = tmp_path / "stored-secrets.json"
    backend = CountingKeyring(secret_service)
    secrets = Secrets(backend=backend, index_path=index)
    assert secrets.values() == [] and backend.calls == []  # nothing stored: the keyring is not asked
    secrets.set("otlp_api_key", OTLP_TOKEN)
    assert secrets.values() == [OTLP_TOKEN] and backend.calls == [("set", "otlp_api_key")]
    assert OTLP_TOKEN not in index.read_text() and "otlp_api_key" in index.read_text()  # names, never values

    # Written behind Locus's back: not known, so never read (the keyring may prompt for every read).
    secret_service.set_password("locus", "remote_api_key", "remote-key-123456")
    # Another Locus process stores a token: the shared index says so, and only that name is read, once.
    Secrets(backend=secret_service, index_path=index).set("hf_token", HF_TOKEN)
    backend.calls.clear()
    assert sorted(secrets.values()) == sorted([OTLP_TOKEN, HF_TOKEN])
    assert sorted(secrets.values()) == sorted([OTLP_TOKEN, HF_TOKEN])
    assert backend.calls == [("get", "hf_token")]
    # A new process starts with what the index lists: each name read once, then never again.
    later = CountingKeyring(secret_service)
    fresh = Secrets(backend=later, index_path=index)
    for _ in range(3):
        assert sorted(fresh.values()) == sorted([OTLP_TOKEN, HF_TOKEN])
    assert sorted(later.calls) == [("get", "hf_token"), ("get", "otlp_api_key")]
    # Removed in one process, gone from the other's redaction without asking the keyring.
    fresh.delete("otlp_api_key")
    backend.calls.clear()
    assert secrets.values() == [HF_TOKEN] and backend.calls == []


def test_no_token_reaches_the_trace_files(secret_service, tmp_path):
    secrets = Secrets(backend=secret_service)
    secrets.set("otlp_api_key", OTLP_TOKEN)
    secrets.set("hf_token", HF_TOKEN)
    folder = tmp_path / "traces"
    store = TraceStore(folder / "traces.sqlite3")
    tracing = Tracing(store, redactor=Redactor(secrets.values))

    root = tracing.start(
        "ask",
        attributes={
            "locus.task": "ask",
            "locus.summary": f"asked with {HF_TOKEN} in the question",
            "gen_ai.prompt": f"my collector key is {OTLP_TOKEN}, keep it safe",
            "locus.headers": [f"authorization: {OTLP_TOKEN}", "plain words", f"x-hf={HF_TOKEN}"],
        },
    )
    root.add_event(
        "download", {"url": f"https://huggingface.co/x?token={HF_TOKEN}", "note": f"fallback {SHAPED_TOKEN}"}
    )
    child = tracing.start("generate", root, {"config": f"api_key={LOOSE_KEY}", "pasted": SHAPED_TOKEN})
    child.set_status(Status(StatusCode.ERROR, f"the server refused {OTLP_TOKEN}"))
    child.end()
    root.end()
    assert tracing.flush()

    spans = {s.name: s for s in store.trace(store.list_traces()[0].trace_id)}
    assert spans["ask"].attributes["locus.headers"] == [f"authorization: {REDACTED}", "plain words", f"x-hf={REDACTED}"]
    assert spans["ask"].attributes["gen_ai.prompt"] == f"my collector key is {REDACTED}, keep it safe"
    assert spans["generate"].attributes["config"] == f"api_key={REDACTED}"
    assert spans["generate"].status_message == f"the server refused {REDACTED}"

    # The raw bytes of the database, its write-ahead log and its shared memory: no token anywhere.
    files = sorted(folder.iterdir())
    assert {f.name for f in files} >= {"traces.sqlite3", "traces.sqlite3-wal", "traces.sqlite3-shm"}
    raw = b"".join(f.read_bytes() for f in files)
    assert REDACTED.encode() in raw
    for token in (OTLP_TOKEN, HF_TOKEN, SHAPED_TOKEN, LOOSE_KEY):
        assert token.encode() not in raw, f"{token} was written to disk"

    tracing.shutdown()
    store.close()
    raw = b"".join(f.read_bytes() for f in folder.iterdir())  # and after the checkpoint at close
    for token in (OTLP_TOKEN, HF_TOKEN, SHAPED_TOKEN, LOOSE_KEY):
        assert token.encode() not in raw


@pytest.mark.parametrize("backend", [fail.Keyring(), null.Keyring()], ids=["fail", "null"])
def test_no_keyring_is_said_in_words_and_session_only_works(backend):
    secrets = Secrets(backend=backend)
    ok, why = secrets.available()
    assert not ok
    assert why.startswith("No system keyring is available (install and unlock GNOME Keyring or KWallet)")
    assert secrets.get("hf_token") is None

    with pytest.raises(KeyringUnavailableError) as raised:
        secrets.set("hf_token", HF_TOKEN)
    assert raised.value.code == "keyring_unavailable"
    assert "session only" in raised.value.user_text()
    assert HF_TOKEN not in f"{raised.value.user_text()} {raised.value.detail}"

    secrets.set("hf_token", HF_TOKEN, session_only=True)
    assert secrets.get("hf_token") == HF_TOKEN
    assert secrets.values() == [HF_TOKEN]
    secrets.delete("hf_token")
    assert secrets.get("hf_token") is None
    assert secrets.values() == []


def test_an_unreachable_keyring_becomes_a_secrets_error(monkeypatch):
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    secrets = Secrets(backend=SecretService.Keyring())
    ok, why = secrets.available()
    assert not ok and "GNOME Keyring or KWallet" in why
    with pytest.raises(SecretsError) as raised:
        secrets.get("hf_token")
    assert raised.value.code == "secrets_error"
    assert raised.value.message == "The token 'hf_token' could not be read from the system keyring."
    with pytest.raises(SecretsError):
        secrets.set("hf_token", HF_TOKEN)
    # The redactor's call never raises: it redacts what it knows (here, nothing from the keyring).
    assert secrets.values() == []


def test_lookups_remember_what_is_stored_and_what_is_not(secret_service, tmp_path):
    """Tokens stored before the index existed are found when first needed and listed from then on; a
    name found absent (or absent on a new install) is not asked about again."""
    secret_service.set_password("locus", "hf_token", HF_TOKEN)  # stored by an earlier Locus
    index = tmp_path / "stored-secrets.json"
    backend = CountingKeyring(secret_service)
    secrets = Secrets(backend=backend, index_path=index)
    assert secrets.values() == [] and backend.calls == []  # not known yet: the redactor does not go looking
    assert secrets.get("hf_token") == HF_TOKEN and secrets.get("remote_api_key") is None
    assert secrets.get("remote_api_key") is None and secrets.values() == [HF_TOKEN]
    assert backend.calls == [("get", "hf_token"), ("get", "remote_api_key")]
    assert Secrets(backend=secret_service, index_path=index).values() == [HF_TOKEN]  # the next process knows


def test_a_keyring_with_no_default_collection_is_not_read(secret_service_without_default_collection, tmp_path):
    """Nothing can be stored in it, and a read would ask to create it (a password dialog on a desktop):
    looking a token up (the hub's, say) gives None and sends the Secret Service no read."""
    backend = CountingKeyring(secret_service_without_default_collection)
    secrets = Secrets(backend=backend, index_path=tmp_path / "stored-secrets.json")
    assert [secrets.get(name) for name in Secrets.KNOWN] == [None] * len(Secrets.KNOWN) and secrets.values() == []
    assert backend.calls == []
