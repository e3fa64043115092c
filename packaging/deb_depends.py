"""Which Debian packages the frozen bundle needs from the system, read from its ELF files.

    python packaging/deb_depends.py dist/locus

Every ELF file in the bundle names the libraries it needs (DT_NEEDED). Those not
shipped in the bundle come from the system: this finds each one with ldconfig,
asks dpkg which package owns it, and prints the packages, comma-separated, for the
control file's Depends. A library the build machine does not have either (a Qt
plugin for a platform we do not target) is reported on stderr, never silently
dropped.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# Loaded with dlopen, so no ELF file names them: Qt's GLX and EGL integrations.
DLOPENED = ("libgl1", "libegl1")


def elf_files(root: Path):
    """Every regular ELF file under root."""
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as handle:
                if handle.read(4) == b"\x7fELF":
                    yield path


def needed(path: Path) -> list[str]:
    """The DT_NEEDED entries of one ELF file."""
    out = subprocess.run(["objdump", "-p", str(path)], capture_output=True, text=True, check=True).stdout
    return [line.split()[1] for line in out.splitlines() if line.strip().startswith("NEEDED")]


def system_libraries() -> dict[str, str]:
    """soname -> path, from the dynamic linker's cache.

    Lines read "libz.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libz.so.1"; on x86-64
    the 32-bit copies (no "x86-64" tag) are skipped.
    """
    out = subprocess.run(["/sbin/ldconfig", "-p"], capture_output=True, text=True, check=True).stdout
    on_x86_64 = os.uname().machine == "x86_64"
    libs: dict[str, str] = {}
    for line in out.splitlines()[1:]:
        name, _, rest = line.strip().partition(" (")
        if not on_x86_64 or "x86-64" in rest:
            libs.setdefault(name, rest.rpartition("=> ")[2])
    return libs


def owner(path: str) -> str | None:
    """The Debian package that installed this file (merged /usr or not)."""
    candidates = [path, os.path.realpath(path)]
    candidates += [c.replace("/usr/lib/", "/lib/", 1) for c in candidates if c.startswith("/usr/lib/")]
    candidates += [c.replace("/lib/", "/usr/lib/", 1) for c in candidates if c.startswith("/lib/")]
    for candidate in candidates:
        result = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
        if result.returncode == 0:
            return result.stdout.split(":")[0].strip()
    return None


def main(bundle: Path) -> int:
    shipped = {path.name for path in bundle.rglob("*")}
    wanted: dict[str, set[str]] = {}
    for path in elf_files(bundle):
        for lib in needed(path):
            if lib not in shipped:
                wanted.setdefault(lib, set()).add(str(path.relative_to(bundle)))
    system = system_libraries()
    packages, unresolved = set(DLOPENED), []
    for lib, users in sorted(wanted.items()):
        package = owner(system[lib]) if lib in system else None
        if package:
            packages.add(package)
        else:
            unresolved.append(f"{lib} (needed by {', '.join(sorted(users)[:3])})")
    for line in unresolved:
        print(f"deb_depends: not on this machine, left out of Depends: {line}", file=sys.stderr)
    print(", ".join(sorted(packages)))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    sys.exit(main(Path(sys.argv[1])))
