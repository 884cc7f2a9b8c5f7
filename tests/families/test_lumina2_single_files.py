"""Lumina 2 as ComfyUI users keep it — ``lumina_2_model_bf16.safetensors`` (the original layout) in
models/diffusion_models, ``gemma_2_2b_fp16.safetensors`` in models/text_encoders, Flux's ``ae.safetensors`` in
models/vae, or everything in the one ``lumina_2.safetensors`` — loaded offline into the very model they came from,
with Gemma's tokenizer from the folder ``model.tokenizer_folder`` names (refused by name without one)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from trainer.errors import InputError
from trainer.models import load_model

COMPONENTS = ("transformer", "text_encoder", "vae")


@pytest.fixture(scope="module")
def comfy(tmp_path_factory, tiny_models):
    """A tiny Lumina 2 as ComfyUI keeps it (the transformer with ComfyUI's prefix, Gemma under ``model.`` with a
    tied LM head, the VAE in the original autoencoder's keys; the all-in-one file with ComfyUI's prefixes and its
    two non-weights); the pipeline it came from; its config folder without a tokenizer, as the shipped one is."""
    from trainer.models.lumina2_layout import pipeline_to_original
    from trainer.models.original_layout import vae_to_original
    from trainer.models.tiny import write_tiny_config_dir

    root = tmp_path_factory.mktemp("comfy-lumina2")
    model = tiny_models["lumina2"]
    pipe = load_model(model).pipeline
    models = root / "models"
    for folder in ("diffusion_models", "text_encoders", "vae", "checkpoints"):
        (models / folder).mkdir(parents=True)
    transformer = {f"model.diffusion_model.{k}": v.contiguous() for k, v in pipeline_to_original(pipe).items()}
    save_file(transformer, models / "diffusion_models" / "lumina_2_model_bf16.safetensors")
    encoder = {f"model.{k}": v.contiguous() for k, v in pipe.text_encoder.state_dict().items()}
    encoder["lm_head.weight"] = encoder["model.embed_tokens.weight"].clone()
    save_file(encoder, models / "text_encoders" / "gemma_2_2b_fp16.safetensors")
    vae = {k.removeprefix("first_stage_model."): v.contiguous()
           for k, v in vae_to_original(pipe.vae.state_dict(), len(pipe.vae.config.block_out_channels)).items()}
    save_file(vae, models / "vae" / "ae.safetensors")
    everything = {**transformer, **{f"vae.{k}": v for k, v in vae.items()},
                  **{f"text_encoders.gemma2_2b.transformer.model.{k}": v.contiguous()
                     for k, v in pipe.text_encoder.state_dict().items()},
                  "text_encoders.gemma2_2b.logit_scale": torch.tensor(4.6052),
                  "text_encoders.spiece_model": torch.zeros(16, dtype=torch.uint8)}
    save_file(everything, models / "checkpoints" / "lumina_2.safetensors")
    config_dir = write_tiny_config_dir(model, root / "config")
    shutil.move(config_dir / "tokenizer", root / "gemma-tokenizer")  # Kamaal ships none: the user names it
    return {"pipe": pipe, "models": models, "config_dir": config_dir, "tokenizer": root / "gemma-tokenizer"}


def same_weights(a, b) -> None:
    for name in COMPONENTS:
        left, right = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        assert left.keys() == right.keys(), name
        assert all(torch.equal(left[k], right[k]) for k in left), name


def picture(pipe) -> np.ndarray:
    pipe.set_progress_bar_config(disable=True)
    return np.asarray(pipe("a red circle", width=64, height=64, num_inference_steps=2, guidance_scale=1.0,
                           generator=torch.Generator().manual_seed(3)).images[0])


@pytest.mark.parametrize("file", ["diffusion_models/lumina_2_model_bf16.safetensors",
                                  "checkpoints/lumina_2.safetensors"])
def test_comfyuis_files_load_into_the_model_they_came_from(comfy, file):
    """The transformer file with Gemma and the VAE found in ComfyUI's folders beside it, and the all-in-one file:
    the same weights, and the same picture (Gemma's rotary tables, the tokenizer and all)."""
    loaded = load_model(comfy["models"] / file, config_dir=comfy["config_dir"], expected_architecture="lumina2",
                        tokenizer_folder=str(comfy["tokenizer"]))
    assert (loaded.info.architecture, loaded.info.prediction_type, loaded.info.source_kind) == (
        "lumina2", "flow_matching", "single_file")
    same_weights(comfy["pipe"], loaded.pipeline)
    assert np.array_equal(picture(loaded.pipeline), picture(comfy["pipe"]))


def test_the_tokenizer_folder_and_missing_files_are_refused_naming_the_field(comfy, tmp_path):
    alone = tmp_path / "elsewhere" / "x"
    alone.mkdir(parents=True)
    shutil.copy(comfy["models"] / "diffusion_models" / "lumina_2_model_bf16.safetensors", alone / "l.safetensors")
    encoder = comfy["models"] / "text_encoders" / "gemma_2_2b_fp16.safetensors"
    vae = comfy["models"] / "vae" / "ae.safetensors"
    named = {"config_dir": comfy["config_dir"], "text_encoder_files": [str(encoder)], "vae_file": str(vae)}
    same_weights(comfy["pipe"], load_model(alone / "l.safetensors", tokenizer_folder=str(comfy["tokenizer"]),
                                           **named).pipeline)
    with pytest.raises(InputError, match=r"^model\.tokenizer_folder: .*l\.safetensors is Lumina 2, whose Gemma "
                                         r"tokenizer Kamaal cannot ship; choose the tokenizer folder of "
                                         r"Alpha-VLLM/Lumina-Image-2\.0"):
        load_model(alone / "l.safetensors", **named)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"^model\.tokenizer_folder: .*empty holds no tokenizer"):
        load_model(alone / "l.safetensors", tokenizer_folder=str(tmp_path / "empty"), **named)
    with pytest.raises(InputError, match=r"^model\.text_encoder_files: .* holds the Lumina 2 transformer only; "
                                         r"choose its Gemma 2 text encoder file"):
        load_model(alone / "l.safetensors", config_dir=comfy["config_dir"], vae_file=str(vae),
                   tokenizer_folder=str(comfy["tokenizer"]))
    with pytest.raises(InputError, match=r"^model\.text_encoder_files: .* does not hold a Gemma 2 text encoder"):
        load_model(alone / "l.safetensors", config_dir=comfy["config_dir"], text_encoder_files=[str(vae)],
                   vae_file=str(vae), tokenizer_folder=str(comfy["tokenizer"]))


def test_the_tokenizer_folder_is_asked_only_where_a_family_needs_one_and_checked_before_a_run(comfy, tmp_path):
    from desktop_app.train.form_groups import field_visible
    from trainer.config import config_from_dict
    from trainer.preflight import input_problems

    assert field_visible("model.tokenizer_folder", "lora", "lumina2")
    assert not any(field_visible("model.tokenizer_folder", "lora", name) for name in ("zimage", "flux", "sd15", "toy"))
    model = {"architecture": "lumina2", "path": str(comfy["models"] / "checkpoints" / "lumina_2.safetensors")}
    missing = config_from_dict({"mode": "lora", "model": {**model, "tokenizer_folder": str(tmp_path / "nowhere")}})
    assert input_problems(missing)["model.tokenizer_folder"] == f"not a folder: {tmp_path / 'nowhere'}"
    named = config_from_dict({"mode": "lora", "model": {**model, "tokenizer_folder": str(comfy["tokenizer"])}})
    assert "model.tokenizer_folder" not in input_problems(named)
