"""A project: the folder a person works in — the config they are editing and the runs it produced.

Layout::

    PROJECT/
      project.toml     the config being edited (a complete, valid config; saved atomically)
      datasets/        the project's own image folders (imports; copies of a bundled preset's pictures)
      runs/            one run folder per training run (see trainer/runfolder.py)

A project made from a bundled preset (the demo) gets its own copy of the preset's pictures: edits
(captions, crops) and generated class images are written next to a dataset, and the app's folder
may be read-only and is replaced by an upgrade.  Models stay where they are (only read).

Light on purpose (standard library + config): the GUI process opens projects with it.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.config import Config, ConfigError, config_from_dict, load_config, save_config
from trainer.runfolder import RunFolder, unique_run_dir

PROJECT_FILE = "project.toml"
RUNS_FOLDER = "runs"
DATASETS_FOLDER = "datasets"
# The app's bundled resources (presets, demo pictures, the shapes model); in a PyInstaller bundle this
# file lives under sys._MEIPASS, and so do the resources.
BUNDLED = Path(__file__).resolve().parents[1] / "resources"


@dataclass
class Project:
    root: Path
    _config: Config = field(repr=False)

    # -------------------------------------------------------------------- opening

    @classmethod
    def open(cls, folder: Path) -> Project:
        """Open an existing project; a missing or invalid project.toml is a :class:`ConfigError`."""
        root = Path(folder).expanduser().resolve()
        return cls(root, load_config(root / PROJECT_FILE))

    @classmethod
    def create(cls, folder: Path, preset_path: Path) -> Project:
        """Make a new project in ``folder`` whose settings start as a copy of the preset."""
        root = Path(folder).expanduser().resolve()
        if (root / PROJECT_FILE).exists():
            raise ConfigError([f"{root} already holds a project"])
        config = load_config(Path(preset_path))
        root.mkdir(parents=True, exist_ok=True)
        config = _own_bundled_folders(config, root)
        project = cls(root, config)
        project.runs_dir.mkdir(parents=True, exist_ok=True)
        project.save(config)
        return project

    @classmethod
    def open_or_create(cls, folder: Path, preset_path: Path) -> Project:
        root = Path(folder).expanduser().resolve()
        if (root / PROJECT_FILE).exists():
            return cls.open(root)
        return cls.create(root, preset_path)

    @staticmethod
    def is_project(folder: Path) -> bool:
        return (Path(folder) / PROJECT_FILE).is_file()

    # -------------------------------------------------------------------- settings

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def config_path(self) -> Path:
        return self.root / PROJECT_FILE

    @property
    def config(self) -> Config:
        return self._config

    def save(self, config: Config) -> None:
        """Write the settings (atomically: a crash never leaves a half-written project.toml)."""
        save_config(config, self.config_path)
        self._config = config

    # -------------------------------------------------------------------- runs

    @property
    def runs_dir(self) -> Path:
        """Where new runs go: ``output.runs_dir`` when set, else the project's own runs/ folder."""
        configured = self._config.output.runs_dir
        if configured:
            path = Path(configured).expanduser()
            return path if path.is_absolute() else (self.root / path).resolve()
        return self.root / RUNS_FOLDER

    def new_run_dir(self) -> Path:
        """A fresh, unused run folder path ``runs/RUN_NAME-YYYYmmdd-HHMMSS`` (not created yet)."""
        return unique_run_dir(self.runs_dir, self._config.output.run_name)

    def runs(self) -> list[RunFolder]:
        """Every run folder under the runs folder, oldest first."""
        if not self.runs_dir.is_dir():
            return []
        found = [RunFolder(child) for child in self.runs_dir.iterdir()
                 if child.is_dir() and (child / "config.toml").is_file()]
        return sorted(found, key=lambda run: (run.config_path.stat().st_mtime, run.root.name))


def _data_folders(data: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """(table, key) of every image folder a config names: the dataset, class sets, concepts."""
    places = [(data["dataset"], "path"), (data["dreambooth"], "class_dir")]
    for concept in data.get("concepts", []):
        places += [(concept, "path"), (concept, "class_dir")]
    return places


def _own_bundled_folders(config: Config, root: Path, bundled: Path = BUNDLED) -> Config:
    """The config with every image folder inside the app's resources copied to ``root/datasets/<name>``."""
    data = config.to_dict()
    copied: dict[Path, str] = {}
    for table, key in _data_folders(data):
        folder = Path(table[key]).resolve() if table[key] else None
        if folder is None or not folder.is_dir() or not folder.is_relative_to(bundled.resolve()):
            continue
        if folder not in copied:
            copied[folder] = str(_copy_folder(folder, root / DATASETS_FOLDER))
        table[key] = copied[folder]
    return config_from_dict(data) if copied else config


def _copy_folder(source: Path, parent: Path) -> Path:
    """Copy ``source`` into ``parent`` under a free name, whole or not at all (temp folder + rename)."""
    parent.mkdir(parents=True, exist_ok=True)
    target, n = parent / source.name, 1
    while target.exists():
        n += 1
        target = parent / f"{source.name}-{n}"
    staging = Path(tempfile.mkdtemp(prefix=f".{source.name}-", dir=parent))
    try:
        shutil.copytree(source, staging, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".kamaal"))
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target

