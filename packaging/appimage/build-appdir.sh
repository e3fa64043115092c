#!/usr/bin/env bash
# Lay out an AppImage AppDir from the frozen bundle:
#
#   packaging/appimage/build-appdir.sh dist/locus build/appimage/AppDir
#
# then `appimagetool build/appimage/AppDir Locus-x86_64.AppImage` makes the AppImage
# (packaging/build-linux.sh does both; CI fetches appimagetool, see README.md here).
# Needs build/icons from packaging/render_icons.py.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 BUNDLE APPDIR" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bundle=$1 appdir=$2
[ -x "$bundle/locus" ] || { echo "build-appdir: no frozen app at $bundle/locus" >&2; exit 1; }
[ -f "$root/build/icons/hicolor/256x256/apps/locus.png" ] \
  || { echo "build-appdir: run packaging/render_icons.py first" >&2; exit 1; }

rm -rf "$appdir"
mkdir -p "$appdir/usr/lib" "$appdir/usr/bin" "$appdir/usr/share/applications" "$appdir/usr/share/icons"
# Hard links: the AppDir costs no space and no time beside the bundle.
cp -al "$bundle" "$appdir/usr/lib/locus" 2>/dev/null || cp -a "$bundle" "$appdir/usr/lib/locus"
ln -s ../lib/locus/locus "$appdir/usr/bin/locus"
install -m 0755 "$here/AppRun" "$appdir/AppRun"
# The desktop entry keeps Exec=locus: AppImage integrators (appimaged, AppImageLauncher,
# Gear Lever) point it at the AppImage's own path, actions included.
cp "$root/resources/locus.desktop" "$appdir/locus.desktop"
cp "$root/resources/locus.desktop" "$appdir/usr/share/applications/locus.desktop"
cp -r "$root/build/icons/hicolor" "$appdir/usr/share/icons/"
mkdir -p "$appdir/usr/share/icons/hicolor/scalable/apps"
cp "$root/resources/icons/locus.svg" "$appdir/usr/share/icons/hicolor/scalable/apps/locus.svg"
cp "$root/build/icons/hicolor/256x256/apps/locus.png" "$appdir/locus.png"
ln -s locus.png "$appdir/.DirIcon"
