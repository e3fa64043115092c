"""The package test: build the Linux packages, install the .deb, use the installed app, remove it.

    .venv/bin/python packaging/test_linux_packages.py [--no-build] [--runs N] [--drop-caches]

Runs packaging/build-linux.sh, checks the AppImage's AppDir starts, installs the
.deb with dpkg (as root), then checks the installed files and desktop entry, runs
`/usr/bin/locus --version`, `locus ask` on the bundled model, `locus index` (a PDF)
+ `locus ask --docs` (the frozen parser and embedding workers), and opens the
installed app's window under Xvfb: it times launch -> window mapped and viewable
over several runs, saves a screenshot to docs/screenshots/installed.png, and checks
that `locus --quick-ask` (the menu action) opens the running app's quick ask. The
package is purged at the end, pass or fail. Prints bundle, package and installed
sizes and the cold start times (also in build/package-test.json); exits non-zero
with the reason on any failure. CI runs it after the test suite (not a pytest test).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INSTALLED = Path("/opt/locus/locus")
COMMAND = "/usr/bin/locus"
SCREENSHOT = ROOT / "docs" / "screenshots" / "installed.png"
ICON_SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)
sys.path.insert(0, str(ROOT / "packaging"))

from x11_session import Xvfb, app_processes, grab_window, visible_window  # noqa: E402 - it sits beside this script (path above)


class Failed(Exception):
    """A check that failed, with a sentence that says what was expected."""


def say(text: str) -> None:
    print(f"\033[1m==> {text}\033[0m", flush=True)


def run(
    argv: list[str], *, env: dict | None = None, timeout: float = 600, cwd: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    """Run a command, capturing its output; a non-zero exit is a failure that shows stderr."""
    result = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise Failed(f"`{' '.join(argv)}` exited with {result.returncode}:\n{result.stderr[-3000:]}")
    return result


def mib(path: Path) -> float:
    """Size on disk of a file or folder, in MiB."""
    out = run(["du", "-sk", str(path)]).stdout.split()[0]
    return int(out) / 1024


def clean_env(home: Path, **extra: str) -> dict:
    """The environment of a user with no Python set up: no venv, no PYTHONPATH, a fresh LOCUS_HOME."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home / "home"),
        "LANG": "C.UTF-8",
        "LOCUS_HOME": str(home / "locus"),
        "XDG_RUNTIME_DIR": str(home / "run"),
    }
    for sub in ("home", "locus", "run"):
        (home / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
    env.update(extra)
    return env


def check_files(package: str) -> None:
    """What the .deb put on the system: the command, the bundle, the menu entry, the icons."""
    if os.path.realpath(COMMAND) != str(INSTALLED):
        raise Failed(f"{COMMAND} should lead to {INSTALLED}, it leads to {os.path.realpath(COMMAND)}")
    dangling = run(["find", str(INSTALLED.parent), "-xtype", "l"]).stdout.split()
    if dangling:
        raise Failed(f"the installed bundle has links to files that were left out: {dangling[:5]}")
    files = set(run(["dpkg", "-L", package]).stdout.split())
    missing = [
        f"/usr/share/icons/hicolor/{n}x{n}/apps/locus.png"
        for n in ICON_SIZES
        if f"/usr/share/icons/hicolor/{n}x{n}/apps/locus.png" not in files
    ]
    if missing:
        raise Failed(f"icons missing from the package: {missing}")
    desktop = Path("/usr/share/applications/locus.desktop")
    run(["desktop-file-validate", str(desktop)])
    lines = desktop.read_text(encoding="utf-8").splitlines()
    execs = [line.split("=", 1)[1] for line in lines if line.startswith("Exec=")]
    if not execs or not all(e.split()[0] == COMMAND for e in execs):
        raise Failed(f"every Exec= in {desktop} should start {COMMAND}; they are {execs}")
    if not any(e.split()[1:2] == ["--quick-ask"] for e in execs):
        raise Failed(f"{desktop} has no action running `{COMMAND} --quick-ask` (Exec lines: {execs})")
    if not any(line.startswith("[Desktop Action ") for line in lines):
        raise Failed(f"{desktop} declares no [Desktop Action ...] group for quick-ask")


_PDF = """
import sys
from PySide6.QtCore import QMarginsF
from PySide6.QtGui import QGuiApplication, QPageLayout, QPageSize, QPainter, QPdfWriter
app = QGuiApplication([])
writer = QPdfWriter(sys.argv[1])
writer.setPageLayout(QPageLayout(QPageSize(QPageSize.PageSizeId.A4), QPageLayout.Orientation.Portrait,
                                 QMarginsF(20, 20, 20, 20)))
painter = QPainter(writer)
painter.drawText(0, 400, sys.argv[2])
painter.end()
"""


def make_pdf(path: Path, text: str) -> None:
    """A one-page PDF with this text, written by Qt (the build's Python, not the installed app)."""
    run([sys.executable, "-c", _PDF, str(path), text], env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    if not path.exists():
        raise Failed(f"could not write the test PDF {path}")


def check_commands(version: str, work: Path) -> dict:
    """The installed command: --version, ask on the bundled model, index + ask --docs."""
    figures = {}
    env = clean_env(work / "cli")
    got = run([COMMAND, "--version"], env=env, cwd=work).stdout.strip()
    if got != f"locus {version}":
        raise Failed(f"`locus --version` printed {got!r}, expected 'locus {version}'")
    say(f"locus --version: {got}")

    started = time.monotonic()
    answer = run(
        [
            COMMAND,
            "ask",
            "What is the capital of France? Answer in one sentence.",
            "--no-history",
            "--max-tokens",
            "48",
            "--seed",
            "1",
        ],
        env=env,
        cwd=work,
        timeout=300,
    ).stdout.strip()
    figures["ask_seconds"] = round(time.monotonic() - started, 1)
    if not answer:
        raise Failed("`locus ask` exited 0 but printed no answer")
    say(f"locus ask ({figures['ask_seconds']} s): {answer[:120]!r}")

    note = work / "varnholm.pdf"  # a real PDF: pypdf and its crypto run frozen in the parse worker
    make_pdf(note, "The lighthouse keeper of Varnholm is named Edda Quist. She has kept the light since 1998.")
    # Run from a folder of modules named like what the workers import: the frozen workers must run none.
    planted, marker = work / "planted", work / "planted-module-ran.txt"
    for name in ("engine/__init__.py", "numpy.py", "pypdf.py", "torch.py"):
        (planted / name).parent.mkdir(parents=True, exist_ok=True)
        (planted / name).write_text(f"open({str(marker)!r}, 'a').write(__name__ + '\\n')\n", encoding="utf-8")
    indexed = run([COMMAND, "index", str(note)], env=env, cwd=planted, timeout=300).stderr  # its report
    if "Indexed 1 file" not in indexed or "0 failed" not in indexed:
        raise Failed(f"`locus index` did not index the file (frozen parse/embed workers?):\n{indexed}")
    if marker.exists():
        raise Failed(f"a frozen worker imported from the working directory: {marker.read_text().split()}")
    cited = run(
        [COMMAND, "ask", "--docs", "Who is the lighthouse keeper of Varnholm?", "--max-tokens", "32", "--seed", "1"],
        env=env,
        cwd=work,
        timeout=300,
    ).stdout
    if "Sources:" not in cited or str(note) not in cited:
        raise Failed(f"`locus ask --docs` did not cite {note}:\n{cited}")
    say("locus index + ask --docs: answered with a citation of the indexed file")

    # The MCP SDK frozen, both ways: `locus mcp list` starts an MCP server from mcp.json over stdio and
    # lists its tools; the server is the installed `locus mcp serve` itself.
    mcp_json = {"mcpServers": {"self": {"command": COMMAND, "args": ["mcp", "serve"]}}}
    (Path(env["LOCUS_HOME"]) / "mcp.json").write_text(json.dumps(mcp_json), encoding="utf-8")
    listed = run([COMMAND, "mcp", "list"], env=env, cwd=work, timeout=300, check=False)
    if listed.returncode != 0 or "self/search_documents" not in listed.stdout:
        shown = f"{listed.stdout}\n{listed.stderr[-3000:]}"
        raise Failed(f"`locus mcp list` did not list `locus mcp serve`'s tools:\n{shown}")
    say("locus mcp list: started `locus mcp serve` from mcp.json and listed its tools")
    return figures


def check_appdir(version: str, work: Path) -> None:
    """The AppImage's tree starts the app through its AppRun (appimagetool packs it in CI)."""
    apprun = ROOT / "build" / "appimage" / "AppDir" / "AppRun"
    got = run([str(apprun), "--version"], env=clean_env(work / "appdir"), cwd=work).stdout.strip()
    if got != f"locus {version}":
        raise Failed(f"`{apprun} --version` printed {got!r}, expected 'locus {version}'")
    say(f"AppDir/AppRun --version: {got}")


def check_window(work: Path, runs: int, drop_caches: bool) -> dict:
    """Open the installed app's window under Xvfb `runs` times; time it; screenshot the first.

    Each run is a new process with a fresh LOCUS_HOME (a first start). With drop_caches
    the kernel's file cache is emptied first, so the bundle is read from disk as after a boot.
    """
    times = []
    with Xvfb() as display:
        for attempt in range(1, runs + 1):
            if drop_caches:
                os.sync()
                Path("/proc/sys/vm/drop_caches").write_text("3\n")
            env = clean_env(work / f"gui{attempt}", DISPLAY=display, QT_QPA_PLATFORM="xcb")
            log = (work / f"gui{attempt}.log").open("w")
            started = time.monotonic()
            app = subprocess.Popen([COMMAND], env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT)
            try:
                window = visible_window(display, app, timeout=180)
                if window is None:
                    tail = (work / f"gui{attempt}.log").read_text(errors="replace")[-3000:]
                    raise Failed(f"the installed app ended without a window (exit code {app.poll()}):\n{tail}")
                times.append(time.monotonic() - started)
                say(f"window visible after {times[-1]:.2f} s (run {attempt})")
                if attempt == 1:
                    check_no_outside_python(app.pid)
                    time.sleep(6)  # let the first paint and the model status settle
                    grab_window(display, window, SCREENSHOT)
                    say(f"screenshot: {SCREENSHOT.relative_to(ROOT)}")
                    check_quick_ask(display, app, env, work)
            finally:
                stop(app)
                log.close()
    cache = "file cache dropped" if drop_caches else "file cache warm"
    return {
        "cold_start_seconds": [round(t, 2) for t in times],
        "cold_start_median_seconds": round(statistics.median(times), 2),
        "cold_start_cache": cache,
    }


def check_quick_ask(display: str, app: subprocess.Popen, env: dict, work: Path) -> None:
    """The menu's Quick Ask action: a second `locus --quick-ask` hands over to the running app."""
    second = run([COMMAND, "--quick-ask"], env=env, cwd=work, timeout=60, check=False)
    if second.returncode != 0:
        raise Failed(f"`locus --quick-ask` beside the running app exited {second.returncode}:\n{second.stderr}")
    if visible_window(display, app, timeout=30, name="Quick ask", min_size=(100, 30)) is None:
        raise Failed("the app ended instead of opening its quick ask")
    say("locus --quick-ask: the running app opened its quick ask")


def check_no_outside_python(pid: int) -> None:
    """The running app maps no Python library or package from outside /opt/locus."""
    maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
    paths = {line.split(None, 5)[5] for line in maps if len(line.split(None, 5)) == 6}
    outside = sorted(
        p
        for p in paths
        if p.startswith("/")
        and not p.startswith("/opt/locus/")
        and ("python" in p.lower() or "site-packages" in p or ".venv" in p)
    )
    if outside:
        raise Failed(f"the installed app uses Python files from outside the bundle: {outside[:5]}")


def stop(app: subprocess.Popen) -> None:
    """End the app and make sure its worker processes went with it."""
    if app.poll() is None:
        app.terminate()
        try:
            app.wait(timeout=20)
        except subprocess.TimeoutExpired:
            app.kill()
            app.wait()
    deadline = time.monotonic() + 10
    while app_processes(str(INSTALLED)) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = app_processes(str(INSTALLED))
    for process in left:
        process.kill()
    if left:
        raise Failed(f"{len(left)} Locus process(es) kept running after the app was stopped")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-build", action="store_true", help="test the packages already in dist/")
    parser.add_argument("--runs", type=int, default=3, help="window starts to time (default 3)")
    parser.add_argument(
        "--drop-caches",
        action="store_true",
        help="empty the kernel's file cache before each window start (a start as after a boot)",
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("test_linux_packages: run as root (it installs the .deb with dpkg)", file=sys.stderr)
        return 2
    for tool in ("dpkg", "Xvfb", "xdotool", "desktop-file-validate"):
        if shutil.which(tool) is None:
            print(f"test_linux_packages: {tool} is missing; run packaging/setup.sh --test", file=sys.stderr)
            return 2
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    arch = run(["dpkg", "--print-architecture"]).stdout.strip()
    deb = ROOT / "dist" / f"locus_{version}_{arch}.deb"
    if run(["dpkg-query", "-W", "-f=${Status}", "locus"], check=False).stdout.startswith("install ok"):
        print(
            "test_linux_packages: the locus package is already installed here; remove it first (dpkg --purge locus)",
            file=sys.stderr,
        )
        return 2
    figures: dict = {"version": version}
    installed = left_behind = False
    try:
        if not args.no_build:
            say("Building (packaging/build-linux.sh)")
            started = time.monotonic()
            build = subprocess.run([str(ROOT / "packaging" / "build-linux.sh")], cwd=ROOT)
            if build.returncode != 0:
                raise Failed(f"packaging/build-linux.sh exited with {build.returncode}")
            figures["build_seconds"] = round(time.monotonic() - started)
        if not deb.exists():
            raise Failed(f"{deb.relative_to(ROOT)} was not built")
        figures["bundle_mib"] = round(mib(ROOT / "dist" / "locus"))
        figures["deb_mib"] = round(deb.stat().st_size / 2**20)
        say(f"Installing {deb.name}")
        installed = True
        if run(["dpkg", "-i", str(deb)], check=False).returncode != 0:
            say("dpkg -i left dependencies missing: apt-get -f install")
            run(
                ["apt-get", "-f", "install", "-y", "-qq", "--no-install-recommends"],
                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            )
        figures["installed_mib"] = round(mib(Path("/opt/locus")))
        check_files("locus")
        with tempfile.TemporaryDirectory(prefix="locus-package-test-") as tmp:
            work = Path(tmp)
            check_appdir(version, work)
            figures.update(check_commands(version, work))
            figures.update(check_window(work, max(1, args.runs), args.drop_caches))
    except (Failed, subprocess.TimeoutExpired, TimeoutError, RuntimeError) as exc:
        print(f"\nPACKAGE TEST FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        if installed:
            say("Removing the package (dpkg --purge locus)")
            subprocess.run(["dpkg", "--purge", "locus"], capture_output=True)
            if Path("/opt/locus").exists() or os.path.lexists(COMMAND):
                print("PACKAGE TEST FAILED: dpkg --purge left /opt/locus or /usr/bin/locus behind", file=sys.stderr)
                left_behind = True
    if left_behind:
        return 1
    (ROOT / "build").mkdir(exist_ok=True)
    (ROOT / "build" / "package-test.json").write_text(json.dumps(figures, indent=2) + "\n")
    say("Package test passed")
    for key, value in figures.items():
        print(f"  {key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
