"""Concepts in the config: ``[[concepts]]`` tables after the first concept (``dataset.*``),
round-tripped through TOML, refused by name, and set from the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import PRESETS
from trainer.concepts import concepts_of
from trainer.config import (
    ConfigError,
    apply_overrides,
    config_from_dict,
    load_config,
    read_toml,
    resolve_paths,
    save_config,
)

TWO_CONCEPTS = """\
mode = "dreambooth"

[model]
architecture = "sd15"

[dataset]
name = "my dog"
path = "datasets/dog"
instance_token = "sks"
resolution = 512

[dreambooth]
class_dir = "datasets/dog-class"
class_prompt = "a photo of dog"

[[concepts]]
name = "my cat"
path = "datasets/cat"
instance_token = "zwx"
caption_template = "a photo of {token} cat"
repeats = 3
resolution = 768
class_dir = "datasets/cat-class"
class_prompt = "a photo of cat"
num_class_images = 50
"""


def test_two_concepts_round_trip_through_toml(tmp_path):
    (tmp_path / "project.toml").write_text(TWO_CONCEPTS, encoding="utf-8")
    config = load_config(tmp_path / "project.toml")
    first, second = concepts_of(config)
    assert (first.title, first.path, first.repeats, first.resolution) == (
        "my dog", str(tmp_path / "datasets" / "dog"), 1, 512)
    assert first.class_dir == str(tmp_path / "datasets" / "dog-class") and first.field("class_dir") == (
        "dreambooth.class_dir")
    assert (second.title, second.instance_token, second.repeats, second.resolution) == ("my cat", "zwx", 3, 768)
    assert second.path == str(tmp_path / "datasets" / "cat")  # relative to the file, like every path
    assert second.class_dir == str(tmp_path / "datasets" / "cat-class") and second.num_class_images == 50
    assert second.default_prompt == "a photo of zwx cat" and second.field("repeats") == "concepts[0].repeats"
    assert first.has_class_set(config) and second.has_class_set(config)
    save_config(config, tmp_path / "saved.toml")
    assert read_toml(tmp_path / "saved.toml")["concepts"][0]["name"] == "my cat"
    assert load_config(tmp_path / "saved.toml") == config


def test_a_concept_without_resolution_uses_the_datasets(tmp_path):
    config = config_from_dict({"dataset": {"resolution": 640}, "concepts": [{"path": "x"}]})
    assert config.concepts[0].resolution == 0 and concepts_of(config)[1].resolution == 640
    assert not concepts_of(config)[1].has_class_set(config)  # toy mode: no prior preservation


@pytest.mark.parametrize(("concept", "message"), [
    ({"path": "b", "repeats": 0}, "concepts[1].repeats: must be ≥ 1, got 0"),
    ({"path": "b", "resolution": 500}, "concepts[1].resolution: must be a multiple of 8, got 500"),
    ({"path": "b", "resolution": 32}, "concepts[1].resolution: must be 0 (= dataset.resolution) or ≥ 64, got 32"),
    ({"repeats": 2}, "concepts[1].path: is required"),
    ({"path": "b", "token": "zwx"}, "concepts[1].token: unknown key"),
    ({"path": "b", "class_dir": "c"}, "concepts[1].class_prompt: a class folder needs a class prompt"),
    ({"path": "b", "num_class_images": -1}, "concepts[1].num_class_images: must be ≥ 0, got -1"),
])
def test_concept_refusals_name_the_field(concept, message):
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"concepts": [{"path": "a"}, concept]})
    assert message in str(caught.value)
    assert message.split(":")[0] in caught.value.by_field()


def test_concepts_must_be_a_list_of_tables():
    with pytest.raises(ConfigError, match="concepts: must be a list"):
        config_from_dict({"concepts": {"path": "a"}})
    with pytest.raises(ConfigError, match=r"concepts\[0\]: must be a table"):
        config_from_dict({"concepts": ["a"]})


def test_every_preset_still_has_one_concept():
    for preset in sorted(PRESETS.glob("*.toml")):
        assert len(concepts_of(load_config(preset))) == 1, preset.name


def test_set_reaches_a_concept_and_resolves_its_path_against_the_cwd(tmp_path, monkeypatch):
    (tmp_path / "c.toml").write_text(TWO_CONCEPTS, encoding="utf-8")
    monkeypatch.chdir(tmp_path / "..")
    config = load_config(tmp_path / "c.toml", ["concepts[0].repeats=5", "concepts.0.path=elsewhere"])
    assert config.concepts[0].repeats == 5
    assert config.concepts[0].path == str(Path.cwd() / "elsewhere")
    with pytest.raises(ConfigError, match="has no item 3"):
        apply_overrides({"concepts": [{"path": "a"}]}, ["concepts[3].repeats=2"])


def test_resolving_paths_keeps_empty_class_folders_empty(tmp_path):
    config = resolve_paths(config_from_dict({"concepts": [{"path": "a"}]}), tmp_path)
    assert config.concepts[0].path == str(tmp_path / "a") and config.concepts[0].class_dir == ""
