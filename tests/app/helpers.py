"""Running the installed `locus` console script the way a user does, with its own LOCUS_HOME."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

LOCUS = str(Path(sys.executable).with_name("locus"))


def locus(
    home: Path, *args: str, stdin: str | None = None, timeout: float = 300, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    env = dict(os.environ, LOCUS_HOME=str(home))
    return subprocess.run(
        [LOCUS, *args], input=stdin, capture_output=True, text=True, env=env, timeout=timeout, cwd=cwd
    )
