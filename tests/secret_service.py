"""A real Secret Service (gnome-keyring) on a private D-Bus session bus, for the tests that use the keyring."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import closing
from pathlib import Path

import pytest

_SETUP = "run packaging/setup.sh --test, which installs dbus and gnome-keyring"

# A session bus with no service folders: nothing is ever D-Bus-activated. The stock session bus would start
# a second, locked gnome-keyring for the first client that comes before ours owns the name, and a
# prompter for it, which cannot open a display here; either way the keyring answers "locked".
_BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir={folder}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


@pytest.fixture()
def secret_service(monkeypatch):
    """An unlocked gnome-keyring on its own session bus; yields keyring's SecretService backend for it.

    Nothing touches the user's keyring: the daemon's data, runtime and config folders are a temp dir.
    """
    yield from _secret_service(monkeypatch, unlock=True)


@pytest.fixture()
def secret_service_without_default_collection(monkeypatch):
    """A gnome-keyring as a new user's desktop has it before anything was stored: no login keyring, so no
    default collection. A read through keyring's backend would ask to create one, which opens a
    "Choose password for new keyring" dialog. Yields the backend; ``.bus_address`` is the bus it serves."""
    yield from _secret_service(monkeypatch, unlock=False)


def _secret_service(monkeypatch, *, unlock: bool):
    from keyring.backends import SecretService

    missing = [tool for tool in ("dbus-daemon", "gnome-keyring-daemon") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not found; the keyring tests need a real Secret Service: {_SETUP}.")
    home = Path(tempfile.mkdtemp(prefix="locus-kr-"))  # short, because it holds unix sockets
    for sub in ("data", "config", "run"):
        (home / sub).mkdir(mode=0o700)
    (home / "bus.conf").write_text(_BUS_CONFIG.format(folder=home / "run"), encoding="utf-8")
    env = dict(
        os.environ,
        HOME=str(home),
        XDG_DATA_HOME=str(home / "data"),
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_RUNTIME_DIR=str(home / "run"),
    )
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    # Each in its own process group, so that teardown also ends whatever it spawned.
    bus = subprocess.Popen(
        ["dbus-daemon", f"--config-file={home / 'bus.conf'}", "--nofork", "--print-address=1"],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
        start_new_session=True,
    )
    keyring_daemon = None
    try:
        address = bus.stdout.readline().strip()
        if not address:
            pytest.fail(f"dbus-daemon did not start (exit {bus.poll()}); {_SETUP}.")
        env["DBUS_SESSION_BUS_ADDRESS"] = address
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", address)
        log_path = home / "gnome-keyring.log"
        with open(log_path, "wb") as log:
            # --unlock reads the login keyring's password from stdin; a fresh data folder creates it with that.
            keyring_daemon = subprocess.Popen(
                ["gnome-keyring-daemon", "--foreground", *(["--unlock"] if unlock else []), "--components=secrets"],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=log,
                env=env,
                start_new_session=True,
            )
        if unlock:
            keyring_daemon.stdin.write(b"locus-test")
        keyring_daemon.stdin.close()
        error = _wait_until_unlocked(keyring_daemon, need_default=unlock)
        if error is not None:
            pytest.fail(
                f"gnome-keyring-daemon did not serve an unlocked keyring ({error}): "
                f"{log_path.read_text(errors='replace')[-500:]}"
            )
        backend = SecretService.Keyring()
        backend.bus_address = address
        yield backend
    finally:
        for process in (keyring_daemon, bus):
            if process is not None:
                _end_group(process)
        if bus.stdout is not None:
            bus.stdout.close()
        shutil.rmtree(home, ignore_errors=True)


def _wait_until_unlocked(daemon: subprocess.Popen, timeout_s: float = 10.0, need_default: bool = True) -> str | None:
    """None once the Secret Service owns its name and (``need_default``) its default collection is
    unlocked; else why not. Asks the bus (NameHasOwner) and then the collection directly, neither of
    which starts a prompt.
    """
    import secretstorage
    from jeepney.bus_messages import message_bus

    deadline, why = time.monotonic() + timeout_s, "no answer"
    while daemon.poll() is None and time.monotonic() < deadline:
        try:
            with closing(secretstorage.dbus_init()) as bus:
                if not bus.send_and_get_reply(message_bus.NameHasOwner("org.freedesktop.secrets")).body[0]:
                    why = "org.freedesktop.secrets has no owner"
                elif not need_default:
                    return None
                elif secretstorage.Collection(bus).is_locked():
                    why = "the default collection is locked"
                else:
                    return None
        except Exception as exc:  # noqa: BLE001 - not there yet
            why = repr(exc)
        time.sleep(0.02)
    return why if daemon.poll() is None else f"exited with {daemon.returncode}; {why}"


def _end_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
