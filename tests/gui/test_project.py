"""trainer.project: the folder a person works in (project.toml + runs/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import PRESETS
from trainer.config import ConfigError, load_config, save_config
from trainer.project import Project
from trainer.runfolder import RunFolder


def test_open_or_create_copies_the_preset_then_reopens(tmp_path):
    project = Project.open_or_create(tmp_path / "p", PRESETS / "toy.toml")
    assert project.config == load_config(PRESETS / "toy.toml")
    assert project.config_path.is_file() and project.runs_dir.is_dir()
    edited = project.config.model_copy(update={"mode": "frozen"})
    project.save(edited)
    again = Project.open_or_create(tmp_path / "p", PRESETS / "toy-frozen.toml")
    assert again.config.mode == "frozen" and again.config == edited


def test_new_run_dirs_are_unique_and_listed(tmp_path):
    project = Project.create(tmp_path / "p", PRESETS / "toy.toml")
    first = RunFolder.create(project.config, project.new_run_dir())
    second = RunFolder.create(project.config, project.new_run_dir())
    assert first.root != second.root
    assert first.root.name.startswith("toy-") and first.root.parent == project.runs_dir
    assert [run.root for run in project.runs()] == [first.root, second.root]
    (project.runs_dir / "not-a-run").mkdir()
    assert len(project.runs()) == 2


def test_a_broken_project_file_is_a_config_error(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "project.toml").write_text("mode = 'nope'\n")
    with pytest.raises(ConfigError, match="mode"):
        Project.open(tmp_path / "p")
    with pytest.raises(ConfigError, match="already holds a project"):
        Project.create(tmp_path / "p", PRESETS / "toy.toml")


def test_a_project_from_the_demo_preset_owns_copies_of_its_pictures(tmp_path):
    """Edits and generated class images go next to a dataset: never into the app's (read-only) folder."""
    demo = load_config(PRESETS / "demo.toml")
    project = Project.create(tmp_path / "p", PRESETS / "demo.toml")
    config = project.config
    for copied, original in ((config.dataset.path, demo.dataset.path),
                             (config.dreambooth.class_dir, demo.dreambooth.class_dir)):
        assert Path(copied).parent == project.root / "datasets" and Path(copied).name == Path(original).name
        assert sorted(p.name for p in Path(copied).iterdir()) == sorted(p.name for p in Path(original).iterdir())
    assert config.model.path == demo.model.path  # models are only read: not copied
    assert load_config(project.config_path) == config  # saved with the project's own folders
    assert not list((project.root / "datasets").glob(".*"))  # no staging folder left behind


def test_a_user_preset_keeps_its_folders(tmp_path):
    (tmp_path / "mine").mkdir()
    preset = tmp_path / "mine.toml"
    config = load_config(PRESETS / "demo.toml")
    save_config(config.model_copy(update={"dataset": config.dataset.model_copy(
        update={"path": str(tmp_path / "mine")})}), preset)
    project = Project.create(tmp_path / "p", preset)
    assert Path(project.config.dataset.path) == tmp_path / "mine"
