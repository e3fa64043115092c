"""One Locus per data folder: a second `locus` hands its request to the first and exits.

The first is the real app (offscreen Qt, its own LOCUS_HOME); it proves what it
received in its log file, which says what it did and the state of its windows.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.single_instance import InstanceUnreachable, SingleInstance, server_name
from tests.app.helpers import LOCUS, locus

STARTED = "app.gui: Locus"


@pytest.fixture()
def home(tmp_path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


def start_first(home: Path, *args: str) -> subprocess.Popen:
    env = dict(os.environ, LOCUS_HOME=str(home), QT_QPA_PLATFORM="offscreen")
    with open(home.parent / "first.out", "ab") as out:
        return subprocess.Popen([LOCUS, *args], env=env, stdout=out, stderr=subprocess.STDOUT)


def log_text(home: Path) -> str:
    try:
        return (home / "locus.log").read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""


def wait_for_log(home: Path, text: str, process: subprocess.Popen, count: int = 1, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while log_text(home).count(text) < count:
        if process.poll() is not None:
            output = (home.parent / "first.out").read_text(errors="replace")
            pytest.fail(f"the first Locus exited ({process.returncode}) before logging {text!r}:\n{output}")
        if time.monotonic() > deadline:
            pytest.fail(f"{text!r} not logged within {timeout} s:\n{log_text(home)}")
        time.sleep(0.2)


def stop(process: subprocess.Popen) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


def test_a_second_launch_hands_over_show_and_quick_ask_then_exits(home):
    first = start_first(home)
    try:
        wait_for_log(home, STARTED, first)

        shown = locus(home, timeout=60)
        assert (shown.returncode, shown.stdout.strip()) == (0, "Locus is already running; its window is shown.")
        wait_for_log(home, "handled 'show': window visible=True", first)

        popup = locus(home, "--quick-ask", timeout=60)
        assert (popup.returncode, popup.stdout.strip()) == (0, "Locus is already running; its quick ask is open.")
        wait_for_log(home, "handled 'quick-ask': window visible=True, quick ask visible=True", first)

        assert first.poll() is None and log_text(home).count(STARTED) == 1  # one engine, still running
    finally:
        code = stop(first)
    assert code == 0  # SIGTERM quits as the tray's Quit does
    assert "quitting" in log_text(home)
    assert not (home / "locus.lock").exists()  # the folder is free again


def test_quick_ask_starts_locus_when_none_runs_and_a_crash_leaves_nothing_in_the_way(home):
    first = start_first(home, "--quick-ask")
    try:
        wait_for_log(home, "started with the quick ask open", first)
    finally:
        first.kill()  # a crash: the lock file and the socket stay behind
        first.wait()
    assert (home / "locus.lock").exists()

    again = start_first(home)  # must not take the dead one's leftovers for a running Locus
    try:
        wait_for_log(home, STARTED, again, count=2)
        handed = locus(home, timeout=60)
        assert handed.returncode == 0 and "already running" in handed.stdout
        wait_for_log(home, "handled 'show'", again)
    finally:
        assert stop(again) == 0


def test_a_holder_that_does_not_answer_is_reported_in_words(home):
    """A process holds the folder's lock but never listens (hung while starting)."""
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from PySide6.QtCore import QLockFile\n"
        f"lock = QLockFile({str(home / 'locus.lock')!r}); lock.setStaleLockTime(0)\n"
        "assert lock.tryLock(0); print('locked', flush=True); time.sleep(120)\n")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        instance = SingleInstance(home)
        assert instance.claim() is False
        with pytest.raises(InstanceUnreachable) as caught:
            instance.send("show", timeout_s=1.5)
        assert f"Another Locus (process {holder.pid}) is using {home}" in caught.value.user_text()
    finally:
        holder.kill()
        holder.wait()


def test_the_socket_name_is_per_data_folder(tmp_path):
    a, b = server_name(tmp_path / "a"), server_name(tmp_path / "b")
    assert a != b and a == server_name(tmp_path / "a") and a.startswith("locus-") and len(a) < 60
