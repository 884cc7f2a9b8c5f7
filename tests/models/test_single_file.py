"""Original-layout single files load offline through diffusers' converters, weight for weight."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from trainer.errors import InputError
from trainer.models import inspect_model, load_model, tiny_pipeline

COMPONENTS = {"sd15": ("unet", "vae", "text_encoder"), "sd2": ("unet", "vae", "text_encoder"),
              "sdxl": ("unet", "vae", "text_encoder", "text_encoder_2")}


def assert_same_weights(expected: torch.nn.Module, actual: torch.nn.Module) -> None:
    want, got = expected.state_dict(), actual.state_dict()
    assert want.keys() == got.keys()
    different = [k for k in want if not torch.equal(want[k], got[k])]
    assert not different, different[:5]


@pytest.mark.parametrize("arch", ["sd15", "sd2", "sdxl"])
def test_single_file_round_trip_is_exact_and_offline(no_network, tiny_single_files, tiny_config_dirs, arch):
    loaded = load_model(tiny_single_files[arch], config_dir=tiny_config_dirs[arch], expected_architecture=arch)
    assert loaded.info.architecture == arch and loaded.info.source_kind == "single_file"
    original = tiny_pipeline(arch, seed=0)
    for name in COMPONENTS[arch]:
        assert_same_weights(getattr(original, name), getattr(loaded.pipeline, name))


def test_weights_only_ckpt_with_lightning_nesting_and_position_ids(no_network, tmp_path, tiny_single_files,
                                                                  tiny_config_dirs):
    state = load_file(tiny_single_files["sd15"])
    # Older SD 1.x files carry CLIP's position_ids buffer; CompVis .ckpt files nest under "state_dict".
    state["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(77)[None]
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": state, "global_step": 470000, "epoch": 3}, path)
    loaded = load_model(path, config_dir=tiny_config_dirs["sd15"])
    assert_same_weights(tiny_pipeline("sd15", seed=0).unet, loaded.pipeline.unet)


def test_prediction_type_from_metadata_and_from_override(tmp_path, tiny_single_files, tiny_config_dirs):
    state = load_file(tiny_single_files["sd2"])
    marked = tmp_path / "v.safetensors"
    save_file(state, marked, metadata={"modelspec.prediction_type": "v"})
    assert inspect_model(marked).prediction_type == "v_prediction"
    assert inspect_model(tiny_single_files["sd2"]).prediction_type == "epsilon"  # no marker, tiny statistic
    loaded = load_model(tiny_single_files["sd2"], config_dir=tiny_config_dirs["sd2"], prediction_type="v_prediction")
    assert loaded.info.prediction_type == "v_prediction"
    assert loaded.pipeline.scheduler.config.prediction_type == "v_prediction"


def test_architecture_mismatch_with_the_config_is_named(tiny_single_files, tiny_config_dirs):
    with pytest.raises(InputError, match=r"holds SDXL weights, but model.architecture is 'sd15'"):
        load_model(tiny_single_files["sdxl"], config_dir=tiny_config_dirs["sdxl"], expected_architecture="sd15")


def test_weights_that_do_not_fit_the_configs_are_refused(tiny_single_files):
    # A tiny file against the real-size SD 1.5 configs: shapes differ, and the message says so.
    with pytest.raises(InputError, match=r"sd15.safetensors does not fit the Stable Diffusion 1.x unet config"):
        load_model(tiny_single_files["sd15"])
