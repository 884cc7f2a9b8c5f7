"""Where things live: the bundled presets, the user's data folder, the demo project; and whether there is a display.

Light on purpose (no Qt at module level): the launcher uses it before deciding whether to start Qt.
``KAMAAL_DATA_DIR`` overrides the data folder (tests point it at a temporary folder).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# These two name the user's data folder (and so where settings, projects and caches are found again after an
# upgrade): fixed forever, never derived from the version or the executable's name.  Changing either would
# strand every user's data in the old folder.  The organization stays empty, so the folder is plain "Kamaal".
APP_NAME = "Kamaal"
ORGANIZATION_NAME = ""
DATA_DIR_ENV = "KAMAAL_DATA_DIR"


def resources_dir() -> Path:
    bundle = getattr(sys, "_MEIPASS", None)  # inside a PyInstaller bundle
    base = Path(bundle) if bundle else Path(__file__).resolve().parent.parent
    return base / "resources"


def presets_dir() -> Path:
    return resources_dir() / "presets"


DEMO_PRESET = "demo"  # what `make run` opens: DreamBooth-LoRA on the bundled shapes model


def list_presets() -> list[Path]:
    """Every bundled preset: the demo, then the toy ones (where a newcomer starts), then by name."""
    return sorted(presets_dir().glob("*.toml"),
                  key=lambda path: (path.stem != DEMO_PRESET, not path.stem.startswith("toy"), path.stem))


def user_presets_dir() -> Path:
    """Where the user's own presets go (``DATA_DIR/presets``); created on first save."""
    return data_dir() / "presets"


def list_user_presets() -> list[Path]:
    folder = user_presets_dir()
    return sorted(folder.glob("*.toml"), key=lambda path: path.stem.lower()) if folder.is_dir() else []


def all_presets() -> list[Path]:
    """The bundled presets, then the user's own (a user preset never hides a bundled one of the same name)."""
    bundled = list_presets()
    names = {path.stem for path in bundled}
    return bundled + [path for path in list_user_presets() if path.stem not in names]


def preset_path(name: str) -> Path:
    """The preset called ``name`` (with or without .toml); a clear error names the ones there are."""
    path = presets_dir() / (name if name.endswith(".toml") else f"{name}.toml")
    if not path.is_file():
        known = ", ".join(p.stem for p in list_presets()) or "none"
        raise FileNotFoundError(f"no preset called {name!r} (available: {known})")
    return path


def preset_summary(path: Path) -> str:
    """The leading comment block of a preset file, as one paragraph (shown as the chooser's tooltip)."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(lines)


def data_dir() -> Path:
    """The user's data folder (projects, settings): QStandardPaths' AppDataLocation, or $KAMAAL_DATA_DIR.

    Always outside the app's own folder (a packaged app's folder may be read-only and is replaced by an upgrade).
    """
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        return Path(override).expanduser().resolve()
    from PySide6.QtCore import QCoreApplication, QStandardPaths  # QtCore only: no GUI, no display needed

    QCoreApplication.setOrganizationName(ORGANIZATION_NAME)
    QCoreApplication.setApplicationName(APP_NAME)  # names the folder: ~/.local/share/Kamaal, %APPDATA%\Kamaal, …
    return Path(QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation))


def demo_project_dir() -> Path:
    return data_dir() / "projects" / "demo"


def settings_path() -> Path:
    return data_dir() / "settings.ini"


def has_display() -> bool:
    """False on a Linux machine with no X11/Wayland display and no QT_QPA_PLATFORM chosen (e.g. over SSH)."""
    if not sys.platform.startswith("linux"):
        return True
    return any(os.environ.get(name) for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"))
