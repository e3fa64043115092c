"""Trim what PyInstaller collected for Locus: parts no user needs, and the desktop's own libraries.

Used by packaging/locus.spec on the Analysis result (TOC entries are
``(dest, source, typecode)``). These go:

- torch's C++ tests, test libraries, protoc and headers (the torch hook takes the
  whole package), but not torch_shm_manager, which torch looks for at import;
- Qt plugins for embedded devices (eglfs, linuxfb, vnc, evdev), the virtual
  keyboard (it drags in Qt Quick and QML), and the GTK platform theme (it drags in
  a second copy of GTK 3, which then fights the desktop's own GTK modules); then
  every library only those plugins needed;
- on Linux, the libraries every desktop provides and that must match the running
  session: X11/xcb, OpenGL/EGL, Wayland, fontconfig/freetype (an older bundled
  fontconfig misreads the system's config and rebuilds the font cache on each
  start), GLib/GIO (an older GIO fails to load the desktop's GIO modules) and
  D-Bus, and the C++ runtime (an older bundled libstdc++ breaks the desktop's
  newer OpenGL drivers once they load). The .deb depends on their packages
  (packaging/deb_depends.py). The xcb
  utility libraries Qt's xcb plugin needs (xcb-cursor, icccm, image, keysyms,
  render-util, xkbcommon-x11) stay: many desktops lack one of them, and they are
  stable enough to ship.
"""

from __future__ import annotations

import fnmatch
import posixpath
import subprocess
import sys

UNWANTED = [
    "torch/test/*",
    "torch/bin/*",
    "torch/include/*",
    "torch/share/*",
    "torch/lib/libjitbackend_test*",
    "torch/lib/libtorchbind_test*",
    "torch/lib/libbackend_with_compiler*",
    "torch/lib/libaoti_custom_ops*",
    "torch/*.pyi",
    "torch/*.h",
    "torch/*.hpp",
    "torch/*.cpp",
    "torch/*.cuh",
]
QT_PLUGINS_DROPPED = [
    "*/plugins/platformthemes/libqgtk3*",
    "*/plugins/platforminputcontexts/*qtvirtualkeyboardplugin*",
    "*/plugins/platforms/libqeglfs*",
    "*/plugins/platforms/libqlinuxfb*",
    "*/plugins/platforms/libqvnc*",
    "*/plugins/platforms/libqvkkhrdisplay*",
    "*/plugins/platforms/libqminimalegl*",
    "*/plugins/egldeviceintegrations/*",
    "*/plugins/generic/*",
]
# Provided by every Linux desktop (and declared in the .deb's Depends).
LINUX_SYSTEM_LIBS = [
    "libcuda.so*",  # the NVIDIA driver's own library (CI links against a stub): never shipped
    "libX11*",
    "libX[a-z]*",
    "libxcb.so*",
    "libxcb-glx*",
    "libxcb-render.so*",
    "libxcb-shm*",
    "libxcb-sync*",
    "libxcb-xfixes*",
    "libxcb-randr*",
    "libxcb-shape*",
    "libxcb-xkb*",
    "libxkbcommon.so*",
    "libGL*",
    "libEGL*",
    "libOpenGL*",
    "libdrm*",
    "libgbm*",
    "libwayland-*",
    "libfontconfig*",
    "libfreetype*",
    "libexpat*",
    "libpng16*",
    "libbrotli*",
    "libglib-2.0*",
    "libgobject-2.0*",
    "libgio-2.0*",
    "libgmodule-2.0*",
    "libgthread-2.0*",
    "libdbus-1*",
    "libsystemd*",
    "libgcrypt*",
    "libgpg-error*",
    "liblz4*",
    "libcap.so*",
    "libmount*",
    "libblkid*",
    "libselinux*",
    "libpcre2*",
    # The C++ runtime: a bundled older copy breaks the desktop's newer OpenGL drivers
    # (mesa) once they load into the process; the system's is always new enough.
    "libstdc++.so*",
    "libgcc_s.so*",
    # A CUDA runtime found on the build machine by ctypes scanning; CUDA builds get theirs via NEEDED.
    "libcudart.so",
]


# torch checks at import that its shared-memory helper is there.
KEPT = ["torch/bin/torch_shm_manager*"]


def _matches(dest: str, patterns: list[str]) -> bool:
    dest = dest.replace("\\", "/")
    return any(fnmatch.fnmatch(dest, pattern) for pattern in patterns) and not any(
        fnmatch.fnmatch(dest, pattern) for pattern in KEPT
    )


def _needed(path: str) -> list[str]:
    """The DT_NEEDED names of an ELF file (empty for anything else)."""
    try:
        out = subprocess.run(["objdump", "-p", path], capture_output=True, text=True).stdout
    except OSError:
        return []
    return [line.split()[1] for line in out.splitlines() if line.strip().startswith("NEEDED")]


def _without_dangling_links(binaries: list, datas: list) -> list:
    """datas without the SYMLINK entries (dest, target relative to dest's folder) whose target went."""
    present = {e[0].replace("\\", "/") for e in binaries + datas if e[2] != "SYMLINK"}

    def target(entry) -> str:
        return posixpath.normpath(
            posixpath.join(posixpath.dirname(entry[0].replace("\\", "/")), entry[1].replace("\\", "/"))
        )

    return [e for e in datas if e[2] != "SYMLINK" or target(e) in present]


def _name(entry) -> str:
    return entry[0].replace("\\", "/").rsplit("/", 1)[-1]


def prune(binaries: list, datas: list, variant: str = "cpu") -> tuple[list, list]:
    """(binaries, datas) without the files described in this module's docstring."""
    datas = [e for e in datas if not _matches(e[0], UNWANTED)]
    binaries = [e for e in binaries if not _matches(e[0], UNWANTED)]
    plugins = [e for e in binaries if _matches(e[0], QT_PLUGINS_DROPPED)]
    if not sys.platform.startswith("linux"):
        return [e for e in binaries if e not in plugins], datas
    system = [p for p in LINUX_SYSTEM_LIBS if variant == "cpu" or not p.startswith("libcudart")]
    # Only libraries PyInstaller pulled into the top folder: a Qt plugin may share a name prefix.
    kept = [
        e
        for e in binaries
        if e not in plugins and not ("/" not in e[0] and any(fnmatch.fnmatch(e[0], p) for p in system))
    ]
    needs = {e[0]: _needed(e[1]) for e in binaries}
    by_name = {_name(e): e for e in kept}
    # The libraries the dropped plugins pulled in, transitively, are candidates to go with them.
    candidates, todo = set(), list(plugins)
    while todo:
        for lib in needs[todo.pop()[0]]:
            if lib in by_name and lib not in candidates:
                candidates.add(lib)
                todo.append(by_name[lib])
    # A candidate goes once nothing that stays needs it; each removal can free more.
    while True:
        wanted = {lib for e in kept for lib in needs[e[0]]}
        orphans = {name for name in candidates if name not in wanted}
        if not orphans:
            return kept, _without_dangling_links(kept, datas)
        kept = [e for e in kept if _name(e) not in orphans]
        candidates -= orphans
