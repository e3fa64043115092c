#!/usr/bin/env bash
# Build the Linux packages of Locus from this checkout:
#
#   packaging/build-linux.sh
#
#   dist/locus/                               the bundle (runs with no Python installed)
#   dist/locus-<version>-linux-<arch>.tar.zst the bundle as a tarball
#   dist/locus_<version>_<debarch>.deb        /opt/locus, /usr/bin/locus, menu entry, icons
#   build/appimage/AppDir                     the AppImage's tree; dist/Locus-<version>-<arch>.AppImage
#                                             too when appimagetool is on PATH or in $APPIMAGETOOL
#
# Needs the environment packaging/setup.sh makes (.venv); installs PyInstaller into it
# (the `package` extra) when missing. Environment:
#   LOCUS_BUILD_VARIANT=cuda   names the outputs ...-cuda (CI's CUDA build; the .venv must
#                              hold CUDA builds of torch and llama-cpp-python)
#   LOCUS_SKIP_FREEZE=1        reuse dist/locus as it is (repackaging only)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
PY=.venv/bin/python
say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'build-linux: %s\n' "$*" >&2; exit 1; }

[ -x "$PY" ] || die "no .venv here: run packaging/setup.sh first"
for tool in dpkg-deb objdump zstd; do
  command -v "$tool" >/dev/null || die "$tool is missing (apt-get install dpkg-dev binutils zstd)"
done

version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)
[ -n "$version" ] || die "no version in pyproject.toml"
# `locus --version` reads the installed metadata: refresh it if pyproject moved on.
if [ "$("$PY" -c 'from importlib.metadata import version; print(version("locus"))')" != "$version" ]; then
  say "Refreshing the locus metadata to $version"
  "$PY" -m pip install -q --no-deps -e .
fi
if ! "$PY" -c 'import PyInstaller' 2>/dev/null; then
  say "Installing PyInstaller (the package extra)"
  "$PY" -m pip install -q -e ".[package]"
fi

arch=$(uname -m)
debarch=$(dpkg --print-architecture)
suffix=""
[ "${LOCUS_BUILD_VARIANT:-cpu}" = "cpu" ] || suffix="-${LOCUS_BUILD_VARIANT}"
bundle=dist/locus
deb=dist/locus${suffix}_${version}_${debarch}.deb
tarball=dist/locus${suffix}-${version}-linux-${arch}.tar.zst

# --- 1. The bundle -----------------------------------------------------------------
say "Rendering icons"
QT_QPA_PLATFORM=offscreen "$PY" packaging/render_icons.py build/icons >/dev/null
if [ "${LOCUS_SKIP_FREEZE:-0}" != "1" ] || [ ! -x "$bundle/locus" ]; then
  say "Freezing the app with PyInstaller (several minutes)"
  # Quiet the deprecation notices torch prints while PyInstaller imports each of its modules.
  PYTHONWARNINGS="ignore::DeprecationWarning,ignore::FutureWarning" \
    "$PY" -m PyInstaller --noconfirm --log-level WARN --distpath dist --workpath build/pyinstaller \
    packaging/locus.spec
fi
got=$("$bundle/locus" --version) || die "the bundle does not start: $bundle/locus --version failed"
[ "$got" = "locus $version" ] || die "the bundle says '$got', expected 'locus $version'"

# --- 2. The tarball ----------------------------------------------------------------
say "Packing $tarball"
rm -f "$tarball"
tar -C dist -cf - locus | zstd -q -3 -T0 -o "$tarball"

# --- 3. The .deb -------------------------------------------------------------------
say "Building $deb"
stage=build/deb/root
rm -rf build/deb && mkdir -p "$stage/DEBIAN" "$stage/opt" "$stage/usr/bin" \
  "$stage/usr/share/applications" "$stage/usr/share/icons/hicolor/scalable/apps" "$stage/usr/share/doc/locus"
cp -al "$bundle" "$stage/opt/locus" 2>/dev/null || cp -a "$bundle" "$stage/opt/locus"
# A symlink is enough: the bootloader finds its _internal folder through /proc/self/exe.
ln -s /opt/locus/locus "$stage/usr/bin/locus"
# The desktop entry as resources/ has it, with the command's absolute path in every Exec
# line (the main entry and its actions, such as quick-ask).
sed -E 's#^(Exec|TryExec)=locus([[:space:]]|$)#\1=/usr/bin/locus\2#' resources/locus.desktop \
  > "$stage/usr/share/applications/locus.desktop"
grep -q '^Exec=/usr/bin/locus' "$stage/usr/share/applications/locus.desktop" \
  || die "resources/locus.desktop has no 'Exec=locus ...' line to point at /usr/bin/locus"
for dir in build/icons/hicolor/*/; do
  size=$(basename "$dir")
  mkdir -p "$stage/usr/share/icons/hicolor/$size/apps"
  cp "$dir/apps/locus.png" "$stage/usr/share/icons/hicolor/$size/apps/locus.png"
done
cp resources/icons/locus.svg "$stage/usr/share/icons/hicolor/scalable/apps/locus.svg"
cat > "$stage/usr/share/doc/locus/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: Locus
License: MIT
Comment: Locus is MIT-licensed. /opt/locus also holds Python, Qt (LGPLv3), PyTorch,
 llama.cpp and the other libraries it is built with, each under its own license
 (see the *.dist-info folders in /opt/locus/_internal), and the bundled models
 SmolLM2-135M-Instruct and all-MiniLM-L6-v2 (Apache-2.0).
EOF

say "Working out the system libraries the bundle needs"
depends=$("$PY" packaging/deb_depends.py "$bundle")
installed_kb=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" <<EOF
Package: locus${suffix}
Version: ${version}
Architecture: ${debarch}
Maintainer: Locus developers <locus@localhost>
Installed-Size: ${installed_kb}
Depends: ${depends}
Recommends: gnome-keyring | kwalletmanager
Section: utils
Priority: optional
Description: private AI assistant that runs entirely on your own machine
 Locus chats with a local language model, answers questions about your own
 documents with citations, helps with code, summarizes and translates. Nothing
 leaves the computer. Ships with a small default model (SmolLM2-135M) and an
 embedding model, so it works offline from the first start.
EOF
[ -z "$suffix" ] || printf 'Provides: locus\nConflicts: locus\nReplaces: locus\n' >> "$stage/DEBIAN/control"
# Menus and icon caches pick up the new files; dpkg triggers do the rest.
cat > "$stage/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = configure ] && command -v gtk-update-icon-cache >/dev/null 2>&1; then
  gtk-update-icon-cache -q -t -f /usr/share/icons/hicolor || true
fi
EOF
chmod 0755 "$stage/DEBIAN/postinst"
rm -f "$deb"
# zstd at a low level: gzip or xz over a gigabyte on two cores takes many minutes.
dpkg-deb --root-owner-group -Zzstd -z3 --build "$stage" "$deb" >/dev/null

# --- 4. The AppImage's tree (and the AppImage, where appimagetool is at hand) ------
say "Assembling the AppDir"
packaging/appimage/build-appdir.sh "$bundle" build/appimage/AppDir
tool=${APPIMAGETOOL:-$(command -v appimagetool || true)}
if [ -n "$tool" ]; then
  appimage=dist/Locus${suffix}-${version}-${arch}.AppImage
  say "Building $appimage"
  ARCH=$arch "$tool" --no-appstream --comp zstd build/appimage/AppDir "$appimage" >/dev/null
else
  say "appimagetool not found: AppDir only (CI builds the AppImage, see packaging/appimage/)"
fi

say "Done"
du -sh "$bundle" "$tarball" "$deb" ${appimage:+"$appimage"}
