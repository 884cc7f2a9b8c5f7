"""Settings to and from files: the user's own presets, and the whole config as a TOML file.

A user preset is a complete config in ``DATA_DIR/presets/NAME.toml`` (``desktop_app.paths``), the
same format as the bundled presets and as ``kamaal-train train`` reads, so a preset saved in the app
trains from the command line as it is.  Small files, written atomically; all on the GUI thread.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtWidgets import QFileDialog, QInputDialog, QMessageBox

from desktop_app.paths import list_presets, user_presets_dir
from trainer.config import Config, ConfigError, load_config, save_config
from trainer.fsutil import atomic_write_text

if TYPE_CHECKING:
    from desktop_app.window_api import Window

PRESET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")


def save_user_preset(config: Config, name: str) -> Path:
    """Write ``config`` as the user preset ``name``; refuses names of bundled presets and odd characters."""
    name = name.strip()
    if not PRESET_NAME.match(name):
        raise ValueError("a preset name uses letters, digits, spaces, '.', '_' or '-' (at most 64)")
    if name in {path.stem for path in list_presets()}:
        raise ValueError(f"“{name}” is a built-in preset; choose another name")
    path = user_presets_dir() / f"{name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, f"# Your preset “{name}”, saved from Kamaal.\n" + config.to_toml())
    return path


def ask_save_preset(window: Window) -> Path | None:
    config = window.config_model.config
    if config is None:
        QMessageBox.information(window, "Save preset", "Fix the settings marked in red first.")
        return None
    name, ok = QInputDialog.getText(window, "Save as preset", "Name of your preset:",
                                    text=config.output.run_name)
    if not ok or not name.strip():
        return None
    existing = user_presets_dir() / f"{name.strip()}.toml"
    if existing.exists() and not window.ask(window, "Replace preset?", f"Replace your preset “{name.strip()}”?"):
        return None
    try:
        path = save_user_preset(config, name)
    except (ValueError, OSError) as exc:
        QMessageBox.warning(window, "Cannot save the preset", str(exc))
        return None
    window.controls.add_preset(path)
    window.statusBar().showMessage(f"Saved your preset “{path.stem}”", 5000)
    return path


def load_config_file(window: Window, path: str | Path | None = None) -> bool:
    """Replace the settings with a TOML config file (asks for the file when ``path`` is None)."""
    if path is None:
        path, _ = QFileDialog.getOpenFileName(window, "Load settings", str(window.project.root),
                                              "Kamaal config (*.toml)")
        if not path:
            return False
    try:
        config = load_config(Path(path))
    except ConfigError as exc:
        QMessageBox.warning(window, "Cannot load these settings", str(exc))
        return False
    window.config_model.load(config)
    window.statusBar().showMessage(f"Settings from {Path(path).name}", 5000)
    return True


def save_config_file(window: Window, path: str | Path | None = None) -> bool:
    """Write the settings as a TOML config (``kamaal-train train`` accepts it as it is)."""
    config = window.config_model.config
    if config is None:
        QMessageBox.information(window, "Save settings", "Fix the settings marked in red first.")
        return False
    if path is None:
        suggested = str(window.project.root / f"{config.output.run_name}.toml")
        path, _ = QFileDialog.getSaveFileName(window, "Save settings as", suggested, "Kamaal config (*.toml)")
        if not path:
            return False
    try:
        save_config(config, Path(path))
    except OSError as exc:
        QMessageBox.warning(window, "Cannot save the settings", str(exc))
        return False
    window.statusBar().showMessage(f"Settings saved to {path}", 5000)
    return True
