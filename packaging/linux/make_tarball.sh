#!/bin/sh
# The Linux download: dist/Kamaal-VERSION-linux-ARCH.tar.gz from the one-folder app dist/Kamaal/ (build.spec).
#   packaging/linux/make_tarball.sh VERSION [DIST_DIR]
# Users unpack it anywhere and double-click Kamaal/Kamaal (or run it); Kamaal/install-desktop-entry.sh adds
# it to the desktop's application menu.  Nothing is installed system-wide and the folder can be read-only:
# settings, projects and caches live in ~/.local/share/Kamaal (XDG_DATA_HOME), so an upgrade is "unpack the
# new folder, delete the old one".
set -eu
version=${1:?usage: make_tarball.sh VERSION [DIST_DIR]}
dist=${2:-dist}
here=$(cd "$(dirname "$0")" && pwd)
app="$dist/Kamaal"
test -x "$app/Kamaal" || { echo "make_tarball.sh: $app/Kamaal not found; run pyinstaller build.spec first" >&2; exit 2; }

cp "$here/install-desktop-entry.sh" "$app/install-desktop-entry.sh"
chmod +x "$app/install-desktop-entry.sh"
tarball="$dist/Kamaal-$version-linux-$(uname -m).tar.gz"
tar -C "$dist" -czf "$tarball.partial" Kamaal
mv "$tarball.partial" "$tarball"
echo "make_tarball.sh: wrote $tarball ($(du -h "$tarball" | cut -f1); unpacked $(du -sh "$app" | cut -f1))"
