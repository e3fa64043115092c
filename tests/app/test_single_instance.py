"""One Locus per data folder: a second `locus` hands its request to the first and exits.

The first is the real app (offscreen Qt, its own LOCUS_HOME); it proves what it
received in its log file, which says what it did and the state of its windows.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from app.single_instance import InstanceUnreachable, SingleInstance, server_name, socket_paths, untrusted_because
from tests.app.helpers import LOCUS, locus
from tests.app.test_permissions import open_entries

STARTED = "app.gui: Locus"


@pytest.fixture()
def run() -> Path:
    """A runtime folder as a desktop session has one (short, like /run/user/<uid>: a socket's path has a
    limit that pytest's own folders come close to)."""
    path = Path(tempfile.mkdtemp(prefix="xdg-"))  # 0700, this user's
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture()
def home(tmp_path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


def start_first(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    env = dict(os.environ, **(env or {}), LOCUS_HOME=str(home), QT_QPA_PLATFORM="offscreen")
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
    assert {"locus.log", "locus.sqlite3", "ui-state.ini"} <= {p.name for p in home.iterdir()}
    assert open_entries(home) == []  # what the window wrote is private (folders 0700, files 0600)


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
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time\n"
                "from PySide6.QtCore import QLockFile\n"
                f"lock = QLockFile({str(home / 'locus.lock')!r}); lock.setStaleLockTime(0)\n"
                "assert lock.tryLock(0); print('locked', flush=True); time.sleep(120)\n"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
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


def test_the_socket_name_is_per_data_folder(tmp_path, run):
    a, b = server_name(tmp_path / "a"), server_name(tmp_path / "b")
    assert a != b and a == server_name(tmp_path / "a") and a.startswith("locus-") and len(a) < 60
    env = {"XDG_RUNTIME_DIR": str(run)}
    assert next(socket_paths(tmp_path / "a", create=True, env=env)) != next(socket_paths(tmp_path / "b", env=env))


# Someone else's socket ------------------------------------------------------------------------------

SQUATTER = """
import sys
from PySide6.QtCore import QCoreApplication
from PySide6.QtNetwork import QLocalServer

app = QCoreApplication([])
where, record = sys.argv[1], sys.argv[2]
QLocalServer.removeServer(where)  # takes the name over, as another user could before Locus starts
server = QLocalServer()
assert server.listen(where), server.errorString()

def note(text):
    with open(record, "a") as f:
        f.write(text + "\\n")

def accept():
    while server.hasPendingConnections():
        peer = server.nextPendingConnection()
        note("connected")
        peer.readyRead.connect(lambda p=peer: note(f"got {bytes(p.readAll().data())!r}"))
        peer.write(b"ok\\n")  # says yes at once, as an impostor would
        peer.flush()

server.newConnection.connect(accept)
print("listening", server.fullServerName(), flush=True)
app.exec()
"""


def private_folder(path: Path) -> Path:
    path.mkdir()
    path.chmod(0o700)
    return path


def start_squatter(where: str, record: Path) -> subprocess.Popen:
    squatter = subprocess.Popen([sys.executable, "-c", SQUATTER, where, str(record)], stdout=subprocess.PIPE, text=True)
    said = squatter.stdout.readline()
    assert said.startswith("listening "), "the squatter did not start"
    squatter.socket_file = Path(said.split(" ", 1)[1].strip())
    return squatter


def end_squatter(squatter: subprocess.Popen | None) -> None:
    if squatter is not None:
        squatter.kill()
        squatter.wait()
        squatter.socket_file.unlink(missing_ok=True)  # killed, it cannot remove its socket itself


def listening_at(folder: Path, home: Path) -> Path:
    """The first Locus's socket in ``folder``, proven to be a listening socket of this user's."""
    socket = folder / f"{server_name(home)}.sock"
    info = os.lstat(socket)
    assert stat.S_ISSOCK(info.st_mode) and info.st_uid == os.getuid()
    return socket


def second_launch(home: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [LOCUS], capture_output=True, text=True, timeout=60, env=dict(os.environ, **env, LOCUS_HOME=str(home))
    )


@pytest.mark.parametrize("runtime_dir", [True, False], ids=["xdg-runtime-dir", "no-runtime-dir"])
def test_a_squatter_on_the_old_socket_name_never_answers_a_launch(home, tmp_path, run, runtime_dir):
    """Another process listens where Locus used to put its socket (/tmp/locus-<user>-<hash>): the
    second launch still reaches only the first Locus, whose socket is in a folder only this user can enter."""
    env = {"XDG_RUNTIME_DIR": str(run) if runtime_dir else ""}
    record = tmp_path / "squatter.txt"
    first = start_first(home, env=env)
    squatter = None
    try:
        wait_for_log(home, STARTED, first)
        squatter = start_squatter(server_name(home), record)

        shown = second_launch(home, env)
        assert not record.exists(), record.read_text()  # the impostor was never even asked
        assert (shown.returncode, shown.stdout.strip()) == (0, "Locus is already running; its window is shown.")
        wait_for_log(home, "handled 'show': window visible=True", first)

        folder = run / "locus" if runtime_dir else home
        listening_at(folder, home)
        info = os.lstat(folder)
        assert stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) == 0o700
        assert untrusted_because(folder) is None
    finally:
        end_squatter(squatter)
        assert stop(first) == 0


def test_a_process_posing_at_the_real_socket_is_not_handed_the_request(home, tmp_path, run):
    """Even a process that gets into the private folder and takes the socket over (here the same user: the
    test cannot be another) is refused: the kernel says it is not the process that holds the folder's lock."""
    env = {"XDG_RUNTIME_DIR": str(run)}
    record = tmp_path / "squatter.txt"
    first = start_first(home, env=env)
    squatter = None
    try:
        wait_for_log(home, STARTED, first)
        squatter = start_squatter(str(listening_at(run / "locus", home)), record)

        refused = second_launch(home, env)
        assert refused.returncode == 1, refused.stdout
        assert f"Another Locus (process {first.pid}) is using {home}" in refused.stderr
        assert f"process {squatter.pid} answered in its place" in refused.stderr
        assert "got " not in record.read_text()  # it was told nothing
        assert "handled" not in log_text(home)
    finally:
        end_squatter(squatter)
        assert stop(first) == 0


def test_only_a_private_folder_of_this_user_is_trusted_with_the_socket(tmp_path, run):
    data = private_folder(tmp_path / "data")
    env = {"XDG_RUNTIME_DIR": str(run)}
    best = list(itertools.islice(socket_paths(data, create=True, env=env), 2))
    assert Path(best[0]).parent == run / "locus" and Path(best[1]).parent == data
    assert stat.S_IMODE(os.stat(run / "locus").st_mode) == 0o700

    (run / "locus").chmod(0o755)  # others may enter: a socket planted there could be anyone's
    assert "others may enter it (mode 755)" == untrusted_because(run / "locus")
    assert Path(next(socket_paths(data, env=env))).parent == data

    (run / "locus").chmod(0o700)
    assert untrusted_because(run / "locus", uid=os.getuid() + 1) == f"it belongs to user {os.getuid()}"

    (run / "locus").rmdir()
    (tmp_path / "theirs").mkdir(mode=0o700)
    (run / "locus").symlink_to(tmp_path / "theirs")  # a link to a folder is not the folder
    assert untrusted_because(run / "locus") == "it is not a folder"
    assert all(Path(p).parent != run / "locus" for p in socket_paths(data, env=env))

    open_parent = tmp_path / "open"
    open_parent.mkdir()
    open_parent.chmod(0o777)  # anyone may rename what is in it (no sticky bit)
    assert untrusted_because(private_folder(open_parent / "locus")) == "the folder above it lets others rename it"
    data.chmod(0o755)  # the data folder as an old Locus left it: not used until it is private again
    assert all(Path(p).parent != data for p in socket_paths(data, env=env))
