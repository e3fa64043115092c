"""The Backend protocol: the in-process runtime and the model server's runtime both are one, to
isinstance and to a type checker; the registry resolves by name and swaps whole sets."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from engine.errors import BackendUnavailableError
from engine.runtime.backend import LOCAL, REMOTE, Backend, BackendRegistry, BackendSet
from engine.runtime.remote import RemoteRuntime
from engine.runtime.runtime import Runtime

REPO = Path(__file__).resolve().parents[3]
NOWHERE = "http://127.0.0.1:9/v1"  # nothing listens there; nothing here connects


@pytest.fixture()
def backends():
    local, remote = Runtime(), RemoteRuntime(NOWHERE)
    yield local, remote
    local.shutdown()
    remote.shutdown()


def test_both_runtimes_are_backends_of_their_kind(backends):
    local, remote = backends
    assert isinstance(local, Backend) and local.kind == LOCAL
    assert isinstance(remote, Backend) and remote.kind == REMOTE
    assert remote.forget("conversation:1").result(timeout=5) == 0  # the server keeps nothing of ours
    assert local.last_tokens_per_s is None and remote.last_tokens_per_s is None


def test_a_type_checker_accepts_both_as_backends_and_refuses_what_is_not(tmp_path):
    """mypy on the runtime modules: each is assignable to Backend (and a class that is not, is refused)."""
    snippet = tmp_path / "uses_backends.py"
    snippet.write_text(
        textwrap.dedent(f"""
        from engine.runtime.backend import LOCAL, REMOTE, Backend, BackendSet
        from engine.runtime.remote import RemoteRuntime
        from engine.runtime.runtime import Runtime


        def local() -> Backend:
            return Runtime()


        def remote() -> Backend:
            return RemoteRuntime("{NOWHERE}")


        both = BackendSet(LOCAL, {{LOCAL: Runtime(), REMOTE: RemoteRuntime("{NOWHERE}")}})


        class Lookalike:
            def submit(self, request, on_event=None): ...


        def not_one() -> Backend:
            return Lookalike()
    """),
        encoding="utf-8",
    )
    refused = next(n for n, line in enumerate(snippet.read_text().splitlines(), 1) if "return Lookalike()" in line)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--follow-imports=silent",
            "--ignore-missing-imports",
            "--no-color-output",
            "--cache-dir",
            str(tmp_path / "cache"),
            str(snippet),
        ],
        cwd=REPO,
        env={**os.environ, "MYPYPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 1 and f"{snippet.name}:{refused}:" in errors[0] and '"Backend"' in errors[0], result.stdout


def test_a_set_resolves_by_name_and_never_hands_out_another_backend(backends):
    local, remote = backends
    only_local = BackendSet(LOCAL, {LOCAL: local})
    assert only_local.resolve(None) == (LOCAL, local) and only_local.resolve(LOCAL) == (LOCAL, local)
    with pytest.raises(BackendUnavailableError, match="model server, which is not set up"):
        only_local.resolve(REMOTE)
    with pytest.raises(ValueError):
        BackendSet(REMOTE, {LOCAL: local})
    both = BackendSet(REMOTE, {LOCAL: local, REMOTE: remote})
    assert both.resolve(None) == (REMOTE, remote) and both.resolve(LOCAL) == (LOCAL, local)
    with pytest.raises(TypeError):
        both.available[LOCAL] = remote  # a set never changes; a new one is swapped in


def test_swaps_are_whole_and_ordered_and_a_resolved_backend_stays_what_it_was(backends):
    local, remote = backends
    registry = BackendRegistry.of(local)
    assert registry.current().default == LOCAL and dict(registry.current().available) == {LOCAL: local}
    name, kept = registry.resolve(None)
    seen: list[BackendSet] = []
    start = threading.Barrier(8)

    def toggle() -> None:
        start.wait()
        for _ in range(200):
            registry.swap(
                lambda old: BackendSet(LOCAL if old.default == REMOTE else REMOTE, {LOCAL: local, REMOTE: remote})
            )
            seen.append(registry.current())

    threads = [threading.Thread(target=toggle) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # 1600 swaps, each from the set the previous one left: an even number of toggles ends on LOCAL.
    assert registry.current().default == LOCAL
    assert all(s.resolve(None)[1] is s.available[s.default] for s in seen)
    assert (name, kept) == (LOCAL, local)
