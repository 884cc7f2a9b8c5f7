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

import filecmp
import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.config import Config, ConfigError, config_from_dict, load_config, save_config
from trainer.runfolder import RunFolder, unique_run_dir

PROJECT_FILE = "project.toml"
# The demo project remembers which bundled preset it was made from, where the app's resources were and a
# fingerprint of what they held, so it can tell when another install or an upgrade moved or changed them.
BUNDLED_RECORD = "bundled.json"
BEFORE_REFRESH = "project.toml.before-refresh"
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
    def create(cls, folder: Path, preset_path: Path, bundled: Path = BUNDLED) -> Project:
        """Make a new project in ``folder`` whose settings start as a copy of the preset."""
        root = Path(folder).expanduser().resolve()
        if (root / PROJECT_FILE).exists():
            raise ConfigError([f"{root} already holds a project"])
        config = load_config(Path(preset_path))
        root.mkdir(parents=True, exist_ok=True)
        config = _own_bundled_folders(config, root, bundled)
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

    @classmethod
    def open_demo(cls, folder: Path, preset_path: Path, bundled: Path = BUNDLED) -> tuple[Project, str | None]:
        """The demo project, made from a bundled preset on first use.  When the app's resources it was made
        from moved (another checkout or install) or changed (an upgrade), or it predates this record, its
        settings are made again from the current preset: the runs stay, the old settings are kept as
        ``project.toml.before-refresh``, pictures already copied are reused when unchanged.  Returns the
        project and a sentence for the person when it was refreshed.  Only ever used for the demo folder:
        a person's own projects are never rewritten."""
        root = Path(folder).expanduser().resolve()
        wanted = _bundled_record(Path(preset_path), bundled)
        if not (root / PROJECT_FILE).exists():
            project = cls.create(root, preset_path, bundled)
            _write_record(root, wanted)
            return project, None
        try:
            recorded = json.loads((root / BUNDLED_RECORD).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            recorded = None
        if recorded == wanted:
            return cls.open(root), None
        shutil.copy2(root / PROJECT_FILE, root / BEFORE_REFRESH)
        if recorded and recorded.get("fingerprint") == wanted["fingerprint"]:
            # Same resources in another place: keep the person's settings, point them at the new place.
            old_root = str(recorded.get("resources", ""))
            data = _moved_paths(load_config(root / PROJECT_FILE).to_dict(), old_root, wanted["resources"])
            config, why = config_from_dict(data), "moved (another checkout or install)"
        else:
            config = _own_bundled_folders(load_config(Path(preset_path)), root, bundled)
            why = "changed (an upgrade)" if recorded else "moved or changed"
        project = cls(root, config)
        project.save(config)
        _write_record(root, wanted)
        return project, (f"The demo project was refreshed: the app's bundled model and pictures {why} since it "
                         f"was made. Its runs are kept; its previous settings are in {root / BEFORE_REFRESH}.")

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


def same_settings(preset: Config, config: Config) -> bool:
    """Whether ``config`` is ``preset`` as a project holds it: equal, except that the project may keep its
    own copies of the preset's image folders (a project made from a bundled preset does)."""
    if preset == config:
        return True

    def by_folder_name(settings: Config) -> dict[str, Any]:
        data = settings.to_dict()
        for table, key in _data_folders(data):
            table[key] = Path(table[key]).name if table[key] else ""
        return data

    return by_folder_name(preset) == by_folder_name(config)


def _data_folders(data: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """(table, key) of every image folder a config names: the dataset, class sets, concepts."""
    places = [(data["dataset"], "path"), (data["dreambooth"], "class_dir")]
    for concept in data.get("concepts", []):
        places += [(concept, "path"), (concept, "class_dir")]
    return places


def _own_bundled_folders(config: Config, root: Path, bundled: Path = BUNDLED) -> Config:
    """The config with every image folder inside the app's resources copied to ``root/datasets/<name>``
    (an earlier copy with the same pictures is used as it is, edits and all)."""
    data = config.to_dict()
    copied: dict[Path, str] = {}
    for table, key in _data_folders(data):
        folder = Path(table[key]).resolve() if table[key] else None
        if folder is None or not folder.is_dir() or not folder.is_relative_to(bundled.resolve()):
            continue
        if folder not in copied:
            earlier = root / DATASETS_FOLDER / folder.name
            same = earlier.is_dir() and _same_pictures(folder, earlier)
            copied[folder] = str(earlier if same else _copy_folder(folder, root / DATASETS_FOLDER))
        table[key] = copied[folder]
    return config_from_dict(data) if copied else config


def _files(folder: Path) -> list[Path]:
    return sorted(p.relative_to(folder) for p in folder.rglob("*")
                  if p.is_file() and ".kamaal" not in p.relative_to(folder).parts)


def _same_pictures(source: Path, copy: Path) -> bool:
    names = _files(source)
    return names == _files(copy) and all(filecmp.cmp(source / n, copy / n, shallow=False) for n in names)


def _bundled_record(preset_path: Path, bundled: Path) -> dict[str, str]:
    """Which preset, where the resources are, and a digest of the preset and every bundled folder it names."""
    digest = hashlib.sha256(preset_path.read_bytes())
    data = load_config(preset_path).to_dict()
    places = [(data["model"], "path"), *_data_folders(data)]
    for folder in sorted({Path(table[key]).resolve() for table, key in places if table.get(key)}):
        if folder.is_dir() and folder.is_relative_to(bundled.resolve()):
            for name in _files(folder):
                digest.update(f"{folder.name}/{name.as_posix()}".encode())
                digest.update(hashlib.sha256((folder / name).read_bytes()).digest())
    return {"preset": preset_path.name, "resources": str(bundled.resolve()), "fingerprint": digest.hexdigest()}


def _moved_paths(value: Any, old_root: str, new_root: str) -> Any:
    """``value`` (a config as plain data) with every path inside ``old_root`` moved to ``new_root``."""
    if isinstance(value, dict):
        return {k: _moved_paths(v, old_root, new_root) for k, v in value.items()}
    if isinstance(value, list):
        return [_moved_paths(v, old_root, new_root) for v in value]
    if isinstance(value, str) and old_root and Path(value).is_relative_to(old_root):
        return str(Path(new_root) / Path(value).relative_to(old_root))
    return value


def _write_record(root: Path, record: dict[str, str]) -> None:
    from trainer.fsutil import atomic_write_bytes

    atomic_write_bytes(root / BUNDLED_RECORD, json.dumps(record, indent=2).encode("utf-8"))


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

