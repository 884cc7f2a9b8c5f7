#!/bin/sh
# Adds Kamaal to the desktop's application menu (for this user only), pointing at this folder.
# Run it again after moving the folder; remove ~/.local/share/applications/kamaal.desktop to undo.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
target="${XDG_DATA_HOME:-$HOME/.local/share}/applications"
mkdir -p "$target"
cat > "$target/kamaal.desktop" <<ENTRY
[Desktop Entry]
Type=Application
Name=Kamaal
Comment=Offline fine-tuning of Stable Diffusion
Exec="$here/Kamaal" %f
Path=$here
Terminal=false
Categories=Graphics;Science;
ENTRY
echo "Added $target/kamaal.desktop"
