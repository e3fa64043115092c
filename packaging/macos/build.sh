#!/usr/bin/env bash
# Build Locus for macOS (Apple silicon, Metal): dist/Locus.app in dist/Locus-<version>-macos-arm64.dmg
#
#   packaging/macos/build.sh
#
# Needs .venv with Locus and its dependencies (README, "macOS"); llama-cpp-python
# builds with Metal on Apple silicon by default, and PyPI's torch uses MPS.
# The .app is signed ad hoc unless MACOS_SIGN_IDENTITY names a Developer ID
# certificate in the keychain; with NOTARY_PROFILE (a `xcrun notarytool
# store-credentials` profile) the .dmg is notarized and stapled too.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
die() { printf 'macos/build: %s\n' "$*" >&2; exit 1; }
[ -x "$PY" ] || die "no .venv here: create it first (README, macOS)"

version=$("$PY" -c "import tomllib; print(tomllib.load(open('pyproject.toml', 'rb'))['project']['version'])")
arch=$(uname -m)
dmg=dist/Locus-${version}-macos-${arch}.dmg
"$PY" -m pip install -q -e ".[package]"

QT_QPA_PLATFORM=offscreen "$PY" packaging/render_icons.py build/icons
iconutil -c icns build/icons/locus.iconset -o build/icons/locus.icns
"$PY" -m PyInstaller --noconfirm --log-level WARN --distpath dist --workpath build/pyinstaller \
  packaging/locus.spec
got=$(dist/Locus.app/Contents/MacOS/locus --version)
[ "$got" = "locus $version" ] || die "the app says '$got', expected 'locus $version'"

# Sign inside out (--deep is deprecated for signing but still the simplest for a
# PyInstaller bundle); hardened runtime only with a real identity (notarization needs it).
identity=${MACOS_SIGN_IDENTITY:--}
options=()
[ "$identity" = "-" ] || options=(--options runtime --timestamp
                                  --entitlements packaging/macos/entitlements.plist)
codesign --force --deep --sign "$identity" "${options[@]}" dist/Locus.app
codesign --verify --deep --strict dist/Locus.app

stage=build/dmg
rm -rf "$stage" "$dmg" && mkdir -p "$stage"
cp -R dist/Locus.app "$stage/"
ln -s /Applications "$stage/Applications"
hdiutil create -volname "Locus $version" -srcfolder "$stage" -fs HFS+ -format UDZO -ov "$dmg"
if [ -n "${NOTARY_PROFILE:-}" ]; then
  xcrun notarytool submit "$dmg" --keychain-profile "$NOTARY_PROFILE" --wait
  xcrun stapler staple "$dmg"
fi
du -sh dist/Locus.app "$dmg"
