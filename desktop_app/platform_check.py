"""Before Qt opens a window on Linux: are the system libraries of its X11 plugin installed?

PySide6's wheels (and the packaged app) bring Qt but not the X11 libraries its ``xcb`` platform plugin
links against.  When one is missing, Qt aborts with a misleading "xcb-cursor0 or libxcb-cursor0 is
needed to load the Qt xcb platform plugin" even when that one is installed (seen on a fresh Debian, where
``libxcb-icccm4`` and ``libxcb-keysyms1`` were the missing ones).  So we ask the dynamic linker, as
``ldd`` does, which of the plugin's libraries it cannot find, and print the exact ``apt-get`` line.

Light: no Qt import (PySide6's folder is found without importing it).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

# The libraries Qt 6's xcb plugin links (directly or through libQt6XcbQpa) → the Debian/Ubuntu package.
DEBIAN_PACKAGES = {
    "libxcb-icccm.so.4": "libxcb-icccm4", "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-cursor.so.0": "libxcb-cursor0", "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0", "libxcb-util.so.1": "libxcb-util1",
    "libxcb-randr.so.0": "libxcb-randr0", "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-xinerama.so.0": "libxcb-xinerama0", "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0", "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-shm.so.0": "libxcb-shm0", "libxcb-render.so.0": "libxcb-render0",
    "libxcb-glx.so.0": "libxcb-glx0", "libxcb-xinput.so.0": "libxcb-xinput0", "libxcb.so.1": "libxcb1",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0", "libxkbcommon.so.0": "libxkbcommon0",
    "libX11-xcb.so.1": "libx11-xcb1", "libX11.so.6": "libx11-6", "libSM.so.6": "libsm6",
    "libICE.so.6": "libice6", "libEGL.so.1": "libegl1", "libGL.so.1": "libgl1", "libOpenGL.so.0": "libopengl0",
    "libGLX.so.0": "libglx0", "libfontconfig.so.1": "libfontconfig1", "libfreetype.so.6": "libfreetype6",
    "libdbus-1.so.3": "libdbus-1-3", "libglib-2.0.so.0": "libglib2.0-0",
}
_NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found", re.MULTILINE)


def qt_folder() -> Path | None:
    """PySide6's Qt folder (``…/PySide6/Qt``), in a virtual environment or the packaged app."""
    spec = importlib.util.find_spec("PySide6")
    roots = [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []
    if getattr(sys, "_MEIPASS", None):
        roots.append(Path(sys._MEIPASS) / "PySide6")
    for root in roots:
        if (root / "Qt").is_dir():
            return root / "Qt"
    return None


def uses_xcb(environ: Mapping[str, str]) -> bool:
    """Will Qt pick its X11 plugin?  It does with ``QT_QPA_PLATFORM=xcb``, or on a display with no Wayland."""
    platform = environ.get("QT_QPA_PLATFORM", "")
    if platform:
        return platform.split(";")[0].split(":")[0] == "xcb"
    return bool(environ.get("DISPLAY")) and not environ.get("WAYLAND_DISPLAY")


def missing_libraries(qt: Path, ldd: str | None = None) -> list[str]:
    """The sonames the xcb plugin (and Qt's xcb library) need and the dynamic linker cannot find."""
    ldd = ldd or shutil.which("ldd")
    targets = [qt / "plugins" / "platforms" / "libqxcb.so", *sorted((qt / "lib").glob("libQt6XcbQpa.so*"))]
    targets = [t for t in targets if t.is_file()]
    if not ldd or not targets:
        return []
    missing: list[str] = []
    for target in targets[:2]:
        try:
            result = subprocess.run([ldd, str(target)], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return []
        missing += _NOT_FOUND.findall(result.stdout)
    return list(dict.fromkeys(missing))


def install_hint(missing: list[str]) -> str:
    packages = sorted({DEBIAN_PACKAGES.get(name, "") for name in missing} - {""})
    unknown = [name for name in missing if name not in DEBIAN_PACKAGES]
    lines = ["kamaal: the window cannot open: Qt's X11 plugin needs system libraries that are not installed: "
             + ", ".join(missing) + "."]
    if packages:
        lines.append("On Debian or Ubuntu, install them with:\n    sudo apt-get install -y " + " ".join(packages))
    if unknown:
        lines.append("Find the package for " + ", ".join(unknown) + " with your distribution's package search "
                     "(e.g. 'apt-file search NAME' or 'dnf provides */NAME').")
    lines.append("Without a window, 'kamaal --demo' trains the demo in the terminal (unset DISPLAY), and "
                 "'kamaal-train' trains headless.")
    return "\n".join(lines)


def check_window_platform(environ: Mapping[str, str] | None = None) -> str | None:
    """A message naming what to install when Qt's X11 plugin cannot load here; None when all is well
    (or when it cannot be told: not Linux, another platform plugin, no ldd)."""
    environ = os.environ if environ is None else environ
    if not sys.platform.startswith("linux") or not uses_xcb(environ):
        return None
    qt = qt_folder()
    missing = missing_libraries(qt) if qt else []
    return install_hint(missing) if missing else None
