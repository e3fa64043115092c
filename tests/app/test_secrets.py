"""The hub token in a real Secret Service keyring (gnome-keyring on a private D-Bus bus), never in a file."""

from __future__ import annotations

import subprocess

from app.paths import resolve_paths
from app.secrets import KeyringUnavailableError, Secrets, stored_names_file
from app.services import build_services
from engine.trace.tracing import REDACTED
from tests.app.helpers import locus
from tests.engine.trace.test_redaction import CountingKeyring

TOKEN = "hf_q8Zt3VmK2pLw9RxN4cYb7DsF1gHj6Ua0Ei"


def test_hub_token_is_stored_read_and_deleted_in_the_keyring_only(secret_service, locus_home):
    secrets = Secrets(backend=secret_service)
    assert secrets.available()[0]
    secrets.set("hf_token", TOKEN)
    assert Secrets(backend=secret_service).get("hf_token") == TOKEN  # a new reader finds it: it is in the keyring
    services = build_services(resolve_paths(), secrets=secrets)
    try:
        client = services.hub_client()
        assert client.sends(TOKEN)
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


# A plain question never touches the keyring --------------------------------------------------------


SECRETS_BUS_NAME = "org.freedesktop.secrets"
COLLECTOR_KEY = "otlp-7f3a9c2e1b5d4f60a8e2c4"  # shaped like nothing the redactor knows: only the keyring catches it


class SecretServiceTraffic:
    """Every method call sent to the Secret Service on a bus, as dbus-monitor sees it."""

    def __init__(self, address: str):
        self.address = address
        self.monitor = subprocess.Popen(
            ["dbus-monitor", "--address", address, "--monitor", f"type='method_call',destination='{SECRETS_BUS_NAME}'"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for line in self.monitor.stdout:  # it says it has become a monitor before it reports anything
            if "member=NameLost" in line:
                break

    def calls(self) -> list[str]:
        """The members called so far (the monitor is stopped): a Ping of our own marks the end of them."""
        subprocess.run(
            [
                "dbus-send",
                f"--bus={self.address}",
                f"--dest={SECRETS_BUS_NAME}",
                "--print-reply",
                "/",
                "org.freedesktop.DBus.Peer.Ping",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        members = []
        try:
            for line in self.monitor.stdout:
                if line.startswith("method call"):
                    member = line.rsplit("member=", 1)[-1].strip()
                    if member == "Ping":
                        break
                    members.append(member)
        finally:
            self.monitor.terminate()
            self.monitor.communicate(timeout=30)
        return members


def test_a_question_opens_no_keyring_prompt_when_the_keyring_has_no_default_collection(
    secret_service_without_default_collection, locus_home
):
    """A new user's desktop: reading any token would ask gnome-keyring to create a collection, which opens
    "Choose password for new keyring". Asking questions, from the CLI and through the window's engine, must
    not send the Secret Service a single call."""
    keyring = secret_service_without_default_collection
    traffic = SecretServiceTraffic(keyring.bus_address)
    asked = locus(locus_home, "ask", "Say hello.", "--max-tokens", "8")
    assert asked.returncode == 0, asked.stderr
    assert traffic.calls() == []  # no OpenSession, no CreateCollection, no Prompt

    traffic = SecretServiceTraffic(keyring.bus_address)
    paths = resolve_paths()
    backend = CountingKeyring(keyring)
    services = build_services(paths, secrets=Secrets(backend=backend, index_path=stored_names_file(paths)))
    try:
        services.load_model().result(timeout=120)
        for question in ("Name a colour.", "Name a fruit."):
            assert services.assistant.ask(question).wait(120).complete
        assert services.tracing.flush() and services.traces.count() == 3
    finally:
        services.close()
    assert backend.calls == []
    assert traffic.calls() == []


def test_a_stored_token_is_read_once_and_still_scrubbed_from_traces(secret_service, locus_home):
    stored = locus(locus_home, "secrets", "set", "otlp_api_key", stdin=COLLECTOR_KEY + "\n")
    assert stored.returncode == 0, stored.stderr
    paths = resolve_paths()
    assert stored_names_file(paths).is_file() and COLLECTOR_KEY not in stored_names_file(paths).read_text()

    asked = locus(locus_home, "ask", f"Repeat this key: {COLLECTOR_KEY}", "--max-tokens", "8")
    assert asked.returncode == 0, asked.stderr
    backend = CountingKeyring(secret_service)
    services = build_services(paths, secrets=Secrets(backend=backend, index_path=stored_names_file(paths)))
    try:
        services.load_model().result(timeout=120)
        for question in (f"My collector key is {COLLECTOR_KEY}.", f"Is {COLLECTOR_KEY} a good key?"):
            assert services.assistant.ask(question).wait(120).complete
        assert services.tracing.flush() and services.traces.count() == 3
    finally:
        services.close()
    assert backend.calls == [("get", "otlp_api_key")]  # the one stored token, once for the whole process
    raw = b"".join(p.read_bytes() for p in locus_home.glob("traces.sqlite3*"))
    assert REDACTED.encode() in raw and COLLECTOR_KEY.encode() not in raw
