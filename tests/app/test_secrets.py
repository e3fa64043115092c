"""The hub token in a real Secret Service keyring (gnome-keyring on a private D-Bus bus), never in a file."""

from __future__ import annotations

from app.paths import resolve_paths
from app.secrets import KeyringUnavailableError, Secrets
from app.services import build_services

TOKEN = "hf_q8Zt3VmK2pLw9RxN4cYb7DsF1gHj6Ua0Ei"


def test_hub_token_is_stored_read_and_deleted_in_the_keyring_only(secret_service, locus_home):
    secrets = Secrets(backend=secret_service)
    assert secrets.available()[0]
    secrets.set("hf_token", TOKEN)
    assert Secrets(backend=secret_service).get("hf_token") == TOKEN  # a new reader finds it: it is in the keyring
    services = build_services(resolve_paths(), secrets=secrets)
    try:
        client = services.hub_client()
        assert client._token == TOKEN
        services.apply_settings(services.settings.with_value("ui.theme", "dark"))  # config.toml is written
        span = services.tracing.start("ask", attributes={"locus.summary": f"token {TOKEN}"})
        span.end()
        services.tracing.flush()
    finally:
        services.close()
    files = [p for p in locus_home.rglob("*") if p.is_file()]
    assert any(p.name == "config.toml" for p in files) and any(p.name.startswith("traces.sqlite3") for p in files)
    assert [p.name for p in files if TOKEN.encode() in p.read_bytes()] == []
    secrets.delete("hf_token")
    assert Secrets(backend=secret_service).get("hf_token") is None


def test_without_a_keyring_the_token_is_kept_for_the_session_only():
    from keyring.backends import fail

    secrets = Secrets(backend=fail.Keyring())
    available, why = secrets.available()
    assert not available and "keyring" in why.lower()
    try:
        secrets.set("hf_token", TOKEN)
    except KeyringUnavailableError as exc:
        assert "session" in (exc.hint or "").lower()
    else:
        raise AssertionError("a token was 'saved' with no keyring")
    secrets.set("hf_token", TOKEN, session_only=True)
    assert secrets.get("hf_token") == TOKEN and TOKEN in secrets.values()
