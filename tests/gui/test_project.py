"""trainer.project: the folder a person works in (project.toml + runs/)."""

from __future__ import annotations

import shutil
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


def fake_resources(root: Path, picture: bytes = b"red") -> Path:
    """A miniature of the app's resources/: a preset naming a bundled model and a bundled dataset."""
    (root / "models" / "m").mkdir(parents=True)
    (root / "models" / "m" / "weights.bin").write_bytes(b"model")
    (root / "demo" / "dataset").mkdir(parents=True)
    (root / "demo" / "dataset" / "a.png").write_bytes(picture)
    (root / "demo" / "dataset" / "a.txt").write_text("a sks shape")
    (root / "presets").mkdir()
    (root / "presets" / "demo.toml").write_text(
        'mode = "lora"\n[model]\narchitecture = "sd15"\npath = "../models/m"\n'
        '[dataset]\npath = "../demo/dataset"\n[training]\nsteps = 7\n')
    return root


def test_the_demo_project_follows_its_bundled_inputs_when_they_move_or_change(tmp_path):
    first = fake_resources(tmp_path / "clone-1" / "resources")
    demo_dir = tmp_path / "data" / "projects" / "demo"
    project, note = Project.open_demo(demo_dir, first / "presets" / "demo.toml", bundled=first)
    assert note is None and Path(project.config.model.path) == (first / "models" / "m").resolve()
    dataset = Path(project.config.dataset.path)
    assert dataset.parent == demo_dir / "datasets"
    project.save(project.config.model_copy(update={"training": project.config.training.model_copy(
        update={"steps": 9})}))  # the person's own change
    (project.runs_dir / "run-1").mkdir()

    again, note = Project.open_demo(demo_dir, first / "presets" / "demo.toml", bundled=first)
    assert note is None and again.config.training.steps == 9  # same install: nothing to refresh

    # A second checkout: the same resources somewhere else.  The settings follow them, edits kept.
    second = tmp_path / "clone-2" / "resources"
    shutil.copytree(first, second)
    moved, note = Project.open_demo(demo_dir, second / "presets" / "demo.toml", bundled=second)
    assert note and "moved" in note and (demo_dir / "project.toml.before-refresh").is_file()
    assert Path(moved.config.model.path) == (second / "models" / "m").resolve()
    assert moved.config.training.steps == 9 and Path(moved.config.dataset.path) == dataset
    assert (moved.runs_dir / "run-1").is_dir()

    # An upgrade changed a shipped picture: settings from the new preset, the new pictures copied beside.
    (second / "demo" / "dataset" / "a.png").write_bytes(b"blue")
    upgraded, note = Project.open_demo(demo_dir, second / "presets" / "demo.toml", bundled=second)
    assert note and "changed" in note
    assert (Path(upgraded.config.dataset.path) / "a.png").read_bytes() == b"blue"
    assert (dataset / "a.png").read_bytes() == b"red"  # the old copy (and any edits in it) is kept
    assert (upgraded.runs_dir / "run-1").is_dir()
    assert Project.open_demo(demo_dir, second / "presets" / "demo.toml", bundled=second)[1] is None


def test_a_demo_project_from_before_the_record_is_refreshed_once(tmp_path):
    resources = fake_resources(tmp_path / "resources")
    demo_dir = tmp_path / "demo"
    Project.create(demo_dir, resources / "presets" / "demo.toml", resources)  # what earlier versions made
    _, note = Project.open_demo(demo_dir, resources / "presets" / "demo.toml", bundled=resources)
    assert note and (demo_dir / "bundled.json").is_file()
    assert sorted(p.name for p in (demo_dir / "datasets").iterdir()) == ["dataset"]  # unchanged copy reused
    assert Project.open_demo(demo_dir, resources / "presets" / "demo.toml", bundled=resources)[1] is None
