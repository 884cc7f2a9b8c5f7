"""The tiny built-in model: deterministic from its seed, loadable offline by diffusers, and it samples."""

from __future__ import annotations

from pathlib import Path

import diffusers
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from trainer.models import build_tiny_model, load_model

WEIGHT_FILES = ("unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors",
                "text_encoder/model.safetensors")


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return {f"{name}:{key}": value for name in WEIGHT_FILES for key, value in load_file(folder / name).items()}


def test_same_seed_gives_bitwise_same_weights(tmp_path, tiny_models):
    again = build_tiny_model(tmp_path / "again", "sd15", seed=0)
    first, second = weights(tiny_models["sd15"]), weights(again)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    other = weights(build_tiny_model(tmp_path / "other", "sd15", seed=1))
    assert any(not torch.equal(first[k], other[k]) for k in first)


def test_building_does_not_disturb_the_callers_random_state(tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_tiny_model(tmp_path / "m", "sd15", seed=7)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize(("arch", "pipeline_class"), [("sd15", diffusers.StableDiffusionPipeline),
                                                      ("sdxl", diffusers.StableDiffusionXLPipeline)])
def test_diffusers_loads_it_offline_and_samples_an_image(no_network, tiny_models, arch, pipeline_class):
    pipeline = pipeline_class.from_pretrained(tiny_models[arch], local_files_only=True)
    pipeline.set_progress_bar_config(disable=True)
    images = pipeline("a photo of a cat", num_inference_steps=2, height=64, width=64, output_type="np",
                      generator=torch.Generator().manual_seed(0)).images
    assert images.shape == (1, 64, 64, 3)
    assert np.isfinite(images).all() and images.std() > 0


def test_our_loader_reads_the_folder(no_network, tiny_models):
    loaded = load_model(tiny_models["sd2"])
    assert (loaded.info.architecture, loaded.info.prediction_type, loaded.info.source_kind) == (
        "sd2", "v_prediction", "diffusers")
    assert loaded.pipeline.scheduler.config.prediction_type == "v_prediction"
    overridden = load_model(tiny_models["sd2"], prediction_type="epsilon")
    assert overridden.pipeline.scheduler.config.prediction_type == "epsilon"
