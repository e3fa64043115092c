"""First-token time of `locus ask` and `locus ask --docs`, cold and with Locus running.

    .venv/bin/python bench/cli_latency.py [--runs 5] [--breakdown]

A fresh data folder gets one indexed document; then, with the real Locus window running on it
(offscreen), each run starts the real `locus` command and times its first byte on stdout: "cold"
is the command answering in its own process (``--local``: model, embedding model and index loaded
there), "running" is the command handing its question to the window. Cold and running runs
alternate, so the machine's load falls on both alike; the median of each is printed with the load
average. ``--breakdown`` also times the cold path's parts in one process: imports, services,
model load, index open and embedding-model start, each alone and then overlapped as `locus ask
--docs` does.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LOCUS = str(Path(sys.executable).with_name("locus"))
QUESTION = "When does the ferry leave?"


def first_byte_s(home: Path, *args: str) -> float:
    """Seconds from starting `locus ask ...` to the first byte of its answer on stdout."""
    env = dict(os.environ, LOCUS_HOME=str(home))
    start = time.perf_counter()
    process = subprocess.Popen(
        [LOCUS, "ask", "--max-tokens", "8", *args, QUESTION], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout is not None
    first = process.stdout.read(1)
    elapsed = time.perf_counter() - start
    _, err = process.communicate(timeout=600)
    if not first or process.returncode != 0:
        raise SystemExit(f"locus ask {' '.join(args)} failed: {err.decode(errors='replace')}")
    return elapsed


def start_window(home: Path) -> subprocess.Popen:
    env = dict(os.environ, LOCUS_HOME=str(home), QT_QPA_PLATFORM="offscreen")
    app = subprocess.Popen([LOCUS], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = home / "locus.log"
    deadline = time.monotonic() + 300
    while "app.gui: Locus" not in (log.read_text(errors="replace") if log.exists() else ""):
        if app.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the Locus window did not start")
        time.sleep(0.2)
    return app


def breakdown(home: Path) -> None:
    """The cold path's parts, timed in this process (LOCUS_HOME = ``home``)."""
    os.environ["LOCUS_HOME"] = str(home)
    t0 = time.perf_counter()
    from app.services import build_services

    t1 = time.perf_counter()
    services = build_services()
    t2 = time.perf_counter()
    services.load_model().result()
    t3 = time.perf_counter()
    library = services.open_library()
    t4 = time.perf_counter()
    encoder = library.embedder.query_encoder()  # the bundled model: embedded in this process, no worker
    t5 = time.perf_counter()
    library.embedder.embed_query(QUESTION)
    t6 = time.perf_counter()
    started = library.embedder.started
    services.close()
    print(f"imports (app.services): {t1 - t0:6.2f} s")
    print(f"build_services:         {t2 - t1:6.2f} s")
    print(f"model load:             {t3 - t2:6.2f} s")
    print(f"index open (LanceDB):   {t4 - t3:6.2f} s")
    how = "in process (engine/rag/query_encoder.py)" if encoder is not None else "none: the worker embeds"
    print(f"question encoder load:  {t5 - t4:6.2f} s  ({how})")
    print(f"question embedded:      {t6 - t5:6.2f} s  (embedding worker started: {started})")
    print(f"in sequence:            {t6 - t0:6.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--breakdown", action="store_true", help="also time the cold path's parts")
    options = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="locus-cli-latency-"))
    home, docs = root / "home", root / "docs"
    home.mkdir()
    docs.mkdir()
    (docs / "ferry.md").write_text("# Ferry\n\nThe ferry to the island leaves at 7:40 every morning from pier 3.\n")
    env = dict(os.environ, LOCUS_HOME=str(home))
    subprocess.run([LOCUS, "index", str(docs)], env=env, check=True, capture_output=True)
    if options.breakdown:
        print(f"cold path, part by part (load average {os.getloadavg()[0]:.2f}):")
        breakdown(home)
    app = start_window(home)
    try:
        first_byte_s(home, "--docs")  # the window's first question from documents starts its embedder
        times: dict[str, list[float]] = {}
        loads = []
        for _ in range(options.runs):
            for name, args in (
                ("ask, cold", ("--local",)),
                ("ask, Locus running", ()),
                ("ask --docs, cold", ("--local", "--docs")),
                ("ask --docs, Locus running", ("--docs",)),
            ):
                times.setdefault(name, []).append(first_byte_s(home, *args))
                loads.append(os.getloadavg()[0])
    finally:
        app.send_signal(signal.SIGTERM)
        app.wait(120)
    print(f"\nfirst token, median of {options.runs} (load average {min(loads):.2f}–{max(loads):.2f}, 1 min):")
    for name, values in times.items():
        spread = ", ".join(f"{v:.2f}" for v in values)
        print(f"  {name:28s} {statistics.median(values):6.2f} s   ({spread})")


if __name__ == "__main__":
    main()
