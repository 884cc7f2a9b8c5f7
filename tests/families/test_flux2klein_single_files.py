"""Flux.2 klein as ComfyUI users keep it — the BFL transformer (``flux-2-klein-base-4b.safetensors``) in
models/diffusion_models, ``qwen_3_4b.safetensors`` in models/text_encoders, the VAE in models/vae — loaded offline
into the very model they came from; files of another kind or size refused naming the field."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from trainer.errors import InputError
from trainer.models import load_model

COMPONENTS = ("transformer", "text_encoder", "vae")
NAME = "flux-2-klein-base-tiny.safetensors"


@pytest.fixture(scope="module")
def comfy(tmp_path_factory, tiny_models):
    """A tiny klein as ComfyUI keeps it (the transformer in BFL's keys with ComfyUI's prefix, Qwen3 under ``model.``
    with its LM head, the VAE in BFL's keys), the VAE in diffusers' keys too; the pipeline it came from; its config
    folder."""
    from trainer.models.flux2_single import pipeline_to_original
    from trainer.models.tiny import write_tiny_config_dir

    root = tmp_path_factory.mktemp("comfy-klein")
    model = tiny_models["flux2klein"]
    pipe = load_model(model).pipeline
    models = root / "models"
    for folder in ("diffusion_models", "text_encoders", "vae"):
        (models / folder).mkdir(parents=True)
    save_file({f"model.diffusion_model.{k}": v.contiguous() for k, v in pipeline_to_original(pipe).items()},
              models / "diffusion_models" / NAME)
    encoder = {k: v.contiguous().clone() for k, v in pipe.text_encoder.state_dict().items()}
    save_file(encoder, models / "text_encoders" / "qwen_3_4b.safetensors")
    save_file(bfl_vae(pipe.vae), models / "vae" / "flux2-vae.safetensors")
    save_file({k: v.contiguous() for k, v in pipe.vae.state_dict().items()}, root / "diffusers-vae.safetensors")
    return {"pipe": pipe, "models": models, "root": root,
            "config_dir": write_tiny_config_dir(model, root / "config")}


def bfl_vae(vae) -> dict[str, torch.Tensor]:
    """The VAE as Black Forest Labs' autoencoder file holds it: Flux.1's encoder/decoder names (LDM), the quant
    convolutions inside the encoder and decoder, the batch-norm statistics at the top (musubi-tuner's
    ``flux2_models.AutoEncoder``)."""
    from trainer.models.original_layout import vae_to_original

    state = vae.state_dict()
    original = vae_to_original({k: v for k, v in state.items() if not k.startswith("bn.")},
                               len(vae.config.block_out_channels))
    renamed = {key.removeprefix("first_stage_model.").replace("post_quant_conv.", "decoder.post_quant_conv.")
               .replace("quant_conv.", "encoder.quant_conv.").replace("decoder.post_encoder.", "decoder.post_"): value
               for key, value in original.items()}
    return {k: v.contiguous() for k, v in (renamed | {k: v for k, v in state.items() if k.startswith("bn.")}).items()}


def same_weights(a, b) -> None:
    for name in COMPONENTS:
        left, right = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        assert left.keys() == right.keys(), name
        assert all(torch.equal(left[k], right[k]) for k in left), name


def picture(pipe) -> np.ndarray:
    pipe.set_progress_bar_config(disable=True)
    return np.asarray(pipe(prompt="a red circle", width=64, height=64, num_inference_steps=2, guidance_scale=4.0,
                           generator=torch.Generator().manual_seed(3)).images[0])


def test_the_files_in_comfyuis_folders_load_into_the_model_they_came_from(comfy):
    file = comfy["models"] / "diffusion_models" / NAME
    loaded = load_model(file, config_dir=comfy["config_dir"], expected_architecture="flux2klein")
    assert (loaded.info.architecture, loaded.info.prediction_type, loaded.info.source_kind) == (
        "flux2klein", "flow_matching", "single_file")
    same_weights(comfy["pipe"], loaded.pipeline)
    assert loaded.pipeline.config.is_distilled is False  # "base" in the file's name: the pipeline guides
    assert np.array_equal(picture(loaded.pipeline), picture(comfy["pipe"]))  # rotary tables, BN statistics and all
    # The same file is Flux.2 klein edit's when the config names that family (its files are klein's: ``files_of``).
    edit = load_model(file, config_dir=comfy["config_dir"], expected_architecture="flux2kleinedit")
    assert edit.info.architecture == "flux2kleinedit" and type(edit.pipeline).__name__ == "Flux2KleinPipeline"
    same_weights(comfy["pipe"], edit.pipeline)


def test_named_files_load_from_anywhere_and_missing_ones_are_refused_naming_the_field(comfy, tmp_path):
    alone = tmp_path / "elsewhere" / "x"
    alone.mkdir(parents=True)
    shutil.copy(comfy["models"] / "diffusion_models" / NAME, alone / "klein.safetensors")
    encoder, vae = tmp_path / "my-qwen.safetensors", tmp_path / "my-vae.safetensors"
    shutil.copy(comfy["models"] / "text_encoders" / "qwen_3_4b.safetensors", encoder)
    shutil.copy(comfy["root"] / "diffusers-vae.safetensors", vae)  # the klein folder's own VAE file, diffusers' keys
    loaded = load_model(alone / "klein.safetensors", config_dir=comfy["config_dir"],
                        text_encoder_files=[str(encoder)], vae_file=str(vae))
    same_weights(comfy["pipe"], loaded.pipeline)
    assert loaded.pipeline.config.is_distilled is True  # no "base" in the name: the distilled model
    with pytest.raises(InputError, match=r"model\.text_encoder_files: .* holds the Flux\.2 klein transformer only; "
                                         r"choose its Qwen3 text encoder file \(qwen_3_4b\.safetensors\)"):
        load_model(alone / "klein.safetensors", config_dir=comfy["config_dir"], vae_file=str(vae))
    with pytest.raises(InputError, match=r"model\.vae_file: .* holds the Flux\.2 klein transformer only"):
        load_model(alone / "klein.safetensors", config_dir=comfy["config_dir"], text_encoder_files=[str(encoder)])
    with pytest.raises(InputError, match=r"model\.text_encoder_files: .* does not hold a Qwen3 text encoder"):
        load_model(alone / "klein.safetensors", config_dir=comfy["config_dir"], text_encoder_files=[str(vae)],
                   vae_file=str(vae))
    with pytest.raises(InputError, match=r"model\.vae_file: .* is not Flux\.2's VAE \(it has no batch-norm"):
        load_model(alone / "klein.safetensors", config_dir=comfy["config_dir"], text_encoder_files=[str(encoder)],
                   vae_file=str(encoder))


def test_a_flux2_file_of_another_size_is_refused_by_name_and_a_flux1_file_is_not_taken_for_one(tmp_path):
    """A Flux.2 file of neither klein width without dev's guidance embedder is refused; Flux.1's BFL files (per-block
    ``img_mod``) stay Flux.1's."""
    from trainer.models.detect import detect_architecture

    dev = tmp_path / "flux2-dev.safetensors"
    save_file({"img_in.weight": torch.zeros(6144, 1), "single_stream_modulation.lin.weight": torch.zeros(1, 1)}, dev)
    with pytest.raises(InputError, match=r"model\.path: .* is not a Flux\.2 klein transformer \(its img_in is 6144 "
                                         r"wide; klein 4B is 3072, 9B 4096\)"):
        load_model(dev)
    flux1 = {"double_blocks.0.img_mod.lin.weight": (1, 1), "single_blocks.0.linear1.weight": (1, 1)}
    flux2 = {"double_blocks.0.img_attn.qkv.weight": (1, 1), "single_stream_modulation.lin.weight": (1, 1)}
    assert (detect_architecture(flux1, "a"), detect_architecture(flux2, "b")) == ("flux", "flux2klein")


def test_the_shipped_configs_have_the_released_sizes_and_the_registry_counts_them():
    """Built on the meta device from resources/model_configs: klein 4B's counts are the registry's memory facts;
    9B's transformer and Qwen3-8B are the released sizes; both have the blocks the layout and presets assume."""
    import diffusers
    import transformers

    from trainer.families import family
    from trainer.models.info import MODEL_CONFIGS

    def counts(folder):
        with torch.device("meta"):
            transformer = diffusers.Flux2Transformer2DModel.from_config(
                diffusers.Flux2Transformer2DModel.load_config(folder / "transformer"))
            encoder = transformers.Qwen3ForCausalLM(transformers.Qwen3Config.from_pretrained(folder / "text_encoder"))
            vae = diffusers.AutoencoderKLFlux2.from_config(diffusers.AutoencoderKLFlux2.load_config(folder / "vae"))
        blocks = len(transformer.transformer_blocks) + len(transformer.single_transformer_blocks)
        return {name: sum(p.numel() for p in module.parameters())
                for name, module in (("transformer", transformer), ("text_encoder", encoder), ("vae", vae))}, blocks

    facts = family("flux2klein").memory
    assert counts(MODEL_CONFIGS / "flux2-klein-4b") == (facts.reference_parameters, facts.block_count)
    assert counts(MODEL_CONFIGS / "flux2-klein-9b") == ({"transformer": 9_078_581_248, "text_encoder": 8_190_735_360,
                                                         "vae": 84_046_115}, 32)
