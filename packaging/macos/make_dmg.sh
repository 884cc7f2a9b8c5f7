#!/bin/sh
# The macOS download: dist/Kamaal-VERSION-macos-ARCH.dmg holding Kamaal.app and a link to /Applications.
# Not run here (no Mac); see README, "Packaging".  On a Mac, from the repository root:
#   make package                       # on macOS builds dist/Kamaal.app (BUNDLE in build.spec) and calls this
#   packaging/macos/make_dmg.sh VERSION [DIST_DIR]
# Settings, projects and caches live in ~/Library/Application Support/Kamaal, outside the app, so replacing
# Kamaal.app with a newer one keeps them.  torch on macOS is the CPU/MPS build; there is no CUDA.
# Signing: PyInstaller signs ad hoc, which runs on the machine that built it; for other Macs sign with a
# Developer ID (CODESIGN_IDENTITY="Developer ID Application: ...") and notarize the .dmg (notarytool),
# otherwise Gatekeeper refuses to open a downloaded copy.
set -eu
version=${1:?usage: make_dmg.sh VERSION [DIST_DIR]}
dist=${2:-dist}
app="$dist/Kamaal.app"
test -d "$app" || { echo "make_dmg.sh: $app not found; run pyinstaller build.spec on macOS first" >&2; exit 2; }

"$app/Contents/MacOS/Kamaal" --self-test

if [ -n "${CODESIGN_IDENTITY:-}" ]; then
    codesign --force --deep --options runtime --timestamp --sign "$CODESIGN_IDENTITY" "$app"
fi

staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT
cp -R "$app" "$staging/"
ln -s /Applications "$staging/Applications"
dmg="$dist/Kamaal-$version-macos-$(uname -m).dmg"
hdiutil create -volname "Kamaal $version" -srcfolder "$staging" -fs HFS+ -format UDZO -ov "$dmg"
echo "make_dmg.sh: wrote $dmg"
