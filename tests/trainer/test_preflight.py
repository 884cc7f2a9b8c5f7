"""Inputs the trainer would refuse are found before it starts, by field, from the disk alone."""

from __future__ import annotations

import pytest

from tests.conftest import PRESETS
from trainer.config import ConfigError, config_from_dict, load_config
from trainer.preflight import check_inputs, input_problems


@pytest.mark.parametrize("preset", ["toy", "toy-frozen", "demo"])
def test_the_runnable_presets_pass(preset):
    assert input_problems(load_config(PRESETS / f"{preset}.toml")) == {}


@pytest.mark.parametrize("preset", ["sd15-lora-8gb", "sd15-dreambooth", "sd15-frozen", "sdxl-lora-12gb"])
def test_presets_for_your_own_model_ask_for_it(preset):
    problems = input_problems(load_config(PRESETS / f"{preset}.toml"))
    assert "choose the base model" in problems["model.path"]


def sd(tmp_path, model: str, dataset: str, **more) -> dict:
    return input_problems(config_from_dict({"mode": "lora", "model": {"architecture": "sd15", "path": model},
                                            "dataset": {"path": dataset}, **more}))


def test_model_and_image_folders_must_exist_and_be_the_right_kind(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    model = tmp_path / "model"
    model.mkdir()
    assert "no model_index.json" in sd(tmp_path, str(model), str(images))["model.path"]
    (model / "model_index.json").write_text("{}")
    assert sd(tmp_path, str(model), str(images)) == {}
    assert sd(tmp_path, str(tmp_path / "gone"), str(images))["model.path"].startswith("not found")
    (tmp_path / "notes.txt").write_text("x")
    assert "neither a .safetensors/.ckpt" in sd(tmp_path, str(tmp_path / "notes.txt"), str(images))["model.path"]
    (tmp_path / "m.safetensors").write_bytes(b"")
    assert "model.path" not in sd(tmp_path, str(tmp_path / "m.safetensors"), str(images))
    assert sd(tmp_path, str(model), str(tmp_path / "nope"))["dataset.path"].startswith("not found")
    assert "is a file" in sd(tmp_path, str(model), str(tmp_path / "notes.txt"))["dataset.path"]
    more = sd(tmp_path, str(model), str(images), concepts=[{"path": str(tmp_path / "missing")}])
    assert list(more) == ["concepts[0].path"]


def test_a_toy_network_starts_from_a_toy_weights_file(tmp_path):
    def toy(path: str) -> dict:
        return input_problems(config_from_dict({"mode": "frozen", "model": {"architecture": "toy", "path": path}}))

    assert toy("") == {}
    (tmp_path / "diffusers").mkdir()
    assert "not a .safetensors file" in toy(str(tmp_path / "diffusers"))["model.path"]
    assert toy(str(tmp_path / "gone.safetensors"))["model.path"].startswith("file not found")
    with pytest.raises(ConfigError, match=r"model.path: .*not a \.safetensors file"):
        check_inputs(config_from_dict({"mode": "frozen", "model": {"architecture": "toy",
                                                                   "path": str(tmp_path / "diffusers")}}))
