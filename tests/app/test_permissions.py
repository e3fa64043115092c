"""Nothing Locus keeps is readable by other users: its folders are 0700 and its files 0600 on disk,
whatever the user's umask, and what an earlier version left open is closed at the next start."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import stat
import subprocess
import sys
import threading
from pathlib import Path

from tests.app.helpers import LOCUS
from tests.conftest import PDF_ODDITIES
from tests.hub_fakes import FakeHub, QuietServer, hub_handler


def run_locus(env_home: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`locus` as a user with the common umask 022 runs it."""
    env = {k: v for k, v in os.environ.items() if k not in ("LOCUS_HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME")}
    env.update(env_home)
    return subprocess.run(
        [LOCUS, *args], capture_output=True, text=True, env=env, timeout=timeout, preexec_fn=lambda: os.umask(0o022)
    )


def open_entries(root: Path) -> list[str]:
    """Every folder under ``root`` (itself included) that is not 0700 and every file that is not 0600."""
    found = []
    for path in [root, *root.rglob("*")]:
        mode = os.lstat(path)
        kind = stat.S_IFMT(mode.st_mode)
        want = {stat.S_IFDIR: 0o700, stat.S_IFREG: 0o600}.get(kind)
        if want is not None and stat.S_IMODE(mode.st_mode) != want:
            found.append(f"{path.relative_to(root)} {stat.S_IMODE(mode.st_mode):o}")
    return found


def make_open(root: Path) -> None:
    """What Locus before this fix left behind under umask 022: folders 0755, files 0644."""
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        path.chmod(0o755 if path.is_dir() else 0o644)


def test_ask_and_index_leave_every_folder_0700_and_every_file_0600(tmp_path):
    home = tmp_path / "home"
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "ferry.md").write_text("# Ferry\n\nThe island ferry leaves the pier at 08:15.\n", encoding="utf-8")
    shutil.copy(PDF_ODDITIES / "r4-user-password.pdf", docs)
    where = {"LOCUS_HOME": str(home)}

    indexed = run_locus(where, "index", str(docs))
    assert indexed.returncode == 0, indexed.stderr
    asked = run_locus(where, "ask", "--docs", "--max-tokens", "8", "When does the ferry leave?")
    assert asked.returncode == 0, asked.stderr
    chat = run_locus(where, "ask", "--max-tokens", "8", "Say hi.")
    assert chat.returncode == 0, chat.stderr

    made = {p.name for p in home.iterdir()}
    assert {"locus.sqlite3", "traces.sqlite3", "index", "models"} <= made  # the run did write its stores
    assert any(home.joinpath("index").rglob("*.lance"))
    assert open_entries(home) == []
    assert stat.S_IMODE(docs.stat().st_mode) == 0o755  # the user's own folder is not Locus's to change
    assert stat.S_IMODE((docs / "ferry.md").stat().st_mode) == 0o644

    # An export holds the prompt, the passages and the answer: as private as the store it comes from.
    trace_id = json.loads(run_locus(where, "traces", "list", "--json").stdout)[0]["trace_id"]
    exported = run_locus(where, "traces", "export", trace_id, "-o", str(tmp_path / "trace.json"))
    assert exported.returncode == 0, exported.stderr
    assert stat.S_IMODE((tmp_path / "trace.json").stat().st_mode) == 0o600


def test_an_open_data_and_config_folder_is_made_private_at_the_next_start(tmp_path):
    data, config = tmp_path / "share" / "locus", tmp_path / "config" / "locus"
    where = {"XDG_DATA_HOME": str(tmp_path / "share"), "XDG_CONFIG_HOME": str(tmp_path / "config")}
    first = run_locus(where, "ask", "--max-tokens", "4", "Say hi.")
    assert first.returncode == 0, first.stderr
    (config / "config.toml").write_text("[sampling]\ntemperature = 0.5\n", encoding="utf-8")
    (config / "prompts").mkdir()
    (config / "prompts" / "summarize.toml").write_text("# mine\n", encoding="utf-8")
    (data / "index" / "docs.lance").mkdir(parents=True)
    (data / "index" / "docs.lance" / "0.lance").write_bytes(b"rows")
    (data / "locus.log").write_text("earlier run\n", encoding="utf-8")
    # Links inside Locus's folders lead out of them; what they point at is the user's, not Locus's.
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "big.gguf").write_bytes(b"GGUF")
    (data / "models" / "shelf").symlink_to(outside, target_is_directory=True)
    (data / "models" / "linked.gguf").symlink_to(outside / "big.gguf")
    make_open(data)
    make_open(config)
    make_open(outside)
    assert open_entries(data) and open_entries(config)

    listed = run_locus(where, "docs", "list")
    assert listed.returncode == 0, listed.stderr
    assert open_entries(data) == [] and open_entries(config) == []
    assert stat.S_IMODE(outside.stat().st_mode) == 0o755
    assert stat.S_IMODE((outside / "big.gguf").stat().st_mode) == 0o644
    assert (data / "models" / "shelf").is_symlink() and (data / "models" / "linked.gguf").is_symlink()
    for parent in (tmp_path / "share", tmp_path / "config"):  # folders above Locus's own are the user's
        assert stat.S_IMODE(parent.stat().st_mode) == 0o755


def test_a_locus_home_that_is_the_users_home_keeps_the_users_own_files_as_they_are(tmp_path):
    """LOCUS_HOME=~ is a mistake Locus survives: its own files become private, nothing else changes."""
    home = tmp_path / "user"
    home.mkdir()
    (home / "notes.txt").write_text("mine\n", encoding="utf-8")
    (home / "projects").mkdir()
    (home / "projects" / "a.py").write_text("print(1)\n", encoding="utf-8")
    (home / "locus.sqlite3").write_bytes(b"")  # an earlier run's database, left 0644
    (home / "locus.egg-info").mkdir()  # a name like Locus's own, but the user's
    (home / "locus.egg-info" / "PKG-INFO").write_text("Name: locus\n", encoding="utf-8")
    make_open(home)

    done = run_locus({"LOCUS_HOME": str(home), "HOME": str(home)}, "docs", "list")
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(home.stat().st_mode) == 0o755
    assert stat.S_IMODE((home / "notes.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((home / "projects").stat().st_mode) == 0o755
    assert stat.S_IMODE((home / "projects" / "a.py").stat().st_mode) == 0o644
    assert stat.S_IMODE((home / "locus.egg-info").stat().st_mode) == 0o755
    assert stat.S_IMODE((home / "locus.egg-info" / "PKG-INFO").stat().st_mode) == 0o644
    assert stat.S_IMODE((home / "locus.sqlite3").stat().st_mode) == 0o600
    assert stat.S_IMODE((home / "models").stat().st_mode) == 0o700


DOWNLOAD = """
import sys
from app.paths import keep_private, resolve_paths

keep_private()  # what `locus` does first, before the window offers the model manager
paths = resolve_paths()
paths.ensure()
from engine.models.download import Downloader

url, size, sha = sys.argv[1], int(sys.argv[2]), sys.argv[3]
handle = Downloader(paths.models_dir, margin_bytes=0).start((url, "org/tiny-GGUF/tiny-Q4_K_M.gguf", size, sha))
print(handle.wait(120))
"""


def test_a_downloaded_model_is_private_too(tmp_path):
    """The window's model downloads run in the process Locus started: its umask covers them."""
    data = random.Random(7).randbytes(300_000)
    path = "/org/tiny-GGUF/resolve/main/tiny-Q4_K_M.gguf"
    fake = FakeHub({path: data})
    server = QuietServer(("127.0.0.1", 0), hub_handler(fake))
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    home = tmp_path / "home"
    try:
        env = dict(os.environ, LOCUS_HOME=str(home))
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                DOWNLOAD,
                f"http://127.0.0.1:{server.server_address[1]}{path}",
                str(len(data)),
                hashlib.sha256(data).hexdigest(),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=180,
            preexec_fn=lambda: os.umask(0o022),
        )
    finally:
        server.shutdown()
        server.server_close()
    assert (done.returncode, done.stdout.strip()) == (0, "done"), done.stderr
    assert (home / "models" / "org" / "tiny-GGUF" / "tiny-Q4_K_M.gguf").read_bytes() == data
    assert open_entries(home) == []
