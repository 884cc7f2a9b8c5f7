"""Flux.1 from the files ComfyUI users keep: the transformer in Black Forest Labs' layout with clip_l, t5xxl
and ae files of their own, found in ComfyUI's folders or named in the config, loaded offline into the very
model they came from; missing or wrong companions are refused naming the field."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from trainer.errors import InputError
from trainer.families import family
from trainer.models import load_model
from trainer.models.info import MODEL_CONFIGS

COMPONENTS = ("transformer", "text_encoder", "text_encoder_2", "vae")


@pytest.fixture(scope="module")
def comfy(tmp_path_factory, tiny_models):
    """A tiny Flux as ComfyUI keeps it: models/unet, models/clip (CLIP with its text_model level, T5 without
    the tied embedding copy), models/vae; and the pipeline it came from, and its config folder."""
    from trainer.models.flux_layout import to_original
    from trainer.models.original_layout import vae_to_original
    from trainer.models.tiny import write_tiny_config_dir

    root = tmp_path_factory.mktemp("comfy")
    model = tiny_models["flux"]
    pipe = load_model(model).pipeline
    models = root / "models"
    for folder in ("unet", "clip", "vae"):
        (models / folder).mkdir(parents=True)
    transformer = to_original(pipe.transformer.state_dict(), dict(pipe.transformer.config))
    save_file({f"model.diffusion_model.{k}": v.contiguous() for k, v in transformer.items()},
              models / "unet" / "flux1-tiny.safetensors")
    save_file({f"text_model.{k}": v.contiguous() for k, v in pipe.text_encoder.state_dict().items()},
              models / "clip" / "clip_l.safetensors")
    save_file({k: v.contiguous() for k, v in pipe.text_encoder_2.state_dict().items()
               if k != "encoder.embed_tokens.weight"}, models / "clip" / "t5xxl_fp16.safetensors")
    vae = vae_to_original(pipe.vae.state_dict(), len(pipe.vae.config.block_out_channels))
    save_file({k.removeprefix("first_stage_model."): v.contiguous() for k, v in vae.items()},
              models / "vae" / "ae.safetensors")
    return {"pipe": pipe, "models": models, "config_dir": write_tiny_config_dir(model, root / "config")}


def same_weights(a, b) -> None:
    for name in COMPONENTS:
        left, right = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        assert left.keys() == right.keys(), name
        assert all(torch.equal(left[k], right[k]) for k in left), name


def test_the_files_in_comfyuis_folders_load_into_the_model_they_came_from(comfy):
    loaded = load_model(comfy["models"] / "unet" / "flux1-tiny.safetensors", config_dir=comfy["config_dir"],
                        expected_architecture="flux")
    assert loaded.info.architecture == "flux" and loaded.info.source_kind == "single_file"
    same_weights(comfy["pipe"], loaded.pipeline)
    # Ready to encode as a folder is: no part left training (T5's dropout made every caption a random draw).
    assert not any(module.training for name in COMPONENTS for module in getattr(loaded.pipeline, name).modules())
    ids = torch.tensor([[5, 6, 7, 1]])
    with torch.no_grad():
        first, second = (loaded.pipeline.text_encoder_2(ids)[0] for _ in range(2))
    assert torch.equal(first, second)


def test_named_files_load_in_any_order_from_anywhere(comfy, tmp_path):
    import shutil

    for name in ("clip_l.safetensors", "t5xxl_fp16.safetensors"):
        shutil.copy(comfy["models"] / "clip" / name, tmp_path / f"encoder-{name}")
    shutil.copy(comfy["models"] / "vae" / "ae.safetensors", tmp_path / "my-vae.safetensors")
    alone = tmp_path / "elsewhere" / "x"
    alone.mkdir(parents=True)
    shutil.copy(comfy["models"] / "unet" / "flux1-tiny.safetensors", alone / "flux.safetensors")
    loaded = load_model(alone / "flux.safetensors", config_dir=comfy["config_dir"],
                        text_encoder_files=[str(tmp_path / "encoder-t5xxl_fp16.safetensors"),
                                            str(tmp_path / "encoder-clip_l.safetensors")],
                        vae_file=str(tmp_path / "my-vae.safetensors"))
    same_weights(comfy["pipe"], loaded.pipeline)
    vae = str(tmp_path / "my-vae.safetensors")
    with pytest.raises(InputError, match=r"model\.text_encoder_files: Flux needs its clip_l and t5xxl"):
        load_model(alone / "flux.safetensors", config_dir=comfy["config_dir"], vae_file=vae)
    with pytest.raises(InputError, match=r"model\.text_encoder_files: Flux needs its t5xxl text encoder file"):
        load_model(alone / "flux.safetensors", config_dir=comfy["config_dir"], vae_file=vae,
                   text_encoder_files=[str(tmp_path / "encoder-clip_l.safetensors")])
    with pytest.raises(InputError, match=r"model\.vae_file: .* holds the Flux transformer only"):
        load_model(alone / "flux.safetensors", config_dir=comfy["config_dir"],
                   text_encoder_files=[str(tmp_path / "encoder-clip_l.safetensors"),
                                       str(tmp_path / "encoder-t5xxl_fp16.safetensors")])


def test_the_shipped_flux_configs_are_the_released_models(comfy):
    """dev and schnell as released (parameter counts of the registry's reference model), told apart by the
    guidance embedder; every transformer key a BFL file would give has its place in them."""
    import diffusers
    import transformers

    from trainer.models.flux_layout import to_diffusers, to_original

    reference = family("flux").memory.reference_parameters
    for variant, guidance in (("flux-dev", True), ("flux-schnell", False)):
        folder = MODEL_CONFIGS / variant
        with torch.device("meta"):
            transformer = diffusers.FluxTransformer2DModel.from_config(
                diffusers.FluxTransformer2DModel.load_config(folder / "transformer"))
            vae = diffusers.AutoencoderKL.from_config(diffusers.AutoencoderKL.load_config(folder / "vae"))
            clip = transformers.CLIPTextModel(transformers.CLIPTextConfig.from_pretrained(folder / "text_encoder"))
            t5 = transformers.T5EncoderModel(transformers.T5Config.from_pretrained(folder / "text_encoder_2"))
        assert transformer.config.guidance_embeds is guidance
        count = sum(p.numel() for p in transformer.parameters())
        if guidance:
            assert count == reference["transformer"]
            assert sum(p.numel() for p in t5.parameters()) == reference["text_encoder_2"]
            assert sum(p.numel() for p in clip.parameters()) == reference["text_encoder"]
            assert sum(p.numel() for p in vae.parameters()) == reference["vae"]
        state, config = transformer.state_dict(), dict(transformer.config)
        assert to_diffusers(to_original(state, config), config).keys() == state.keys()
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
        assert index["_class_name"] == "FluxPipeline"


def test_dev_and_schnell_files_are_told_apart_by_the_guidance_embedder(tmp_path):
    from trainer.models.checkpoint_io import open_checkpoint
    from trainer.models.flux_single import transformer_variant

    for name, keys in (("dev", ["double_blocks.0.img_attn.qkv.weight", "guidance_in.in_layer.weight"]),
                       ("schnell", ["double_blocks.0.img_attn.qkv.weight"])):
        save_file({key: torch.zeros(2, 2) for key in keys}, tmp_path / f"{name}.safetensors")
        assert transformer_variant(open_checkpoint(tmp_path / f"{name}.safetensors")) == f"flux-{name}"


def test_the_block_tree_task_reads_a_flux_file_with_its_named_companions(comfy, tmp_path, monkeypatch):
    """The Frozen-layers tree of a single-file Flux whose encoders and VAE are named in the settings (not in
    ComfyUI's folders): the task passes them on, and lists the transformer's blocks and both encoders.  (The
    tiny model's configs stand in for the shipped real-size ones.)"""
    import shutil

    import trainer.models.flux_single as flux_single
    from trainer.tasks.builtin import inspect_blocks

    shutil.copytree(comfy["config_dir"], tmp_path / "configs" / "flux-dev")
    monkeypatch.setattr(flux_single, "MODEL_CONFIGS", tmp_path / "configs")

    class Context:
        def progress(self, *args) -> None:
            pass

    alone = tmp_path / "a" / "b"
    alone.mkdir(parents=True)
    shutil.copy(comfy["models"] / "unet" / "flux1-tiny.safetensors", alone / "flux.safetensors")
    args = {"model": str(alone / "flux.safetensors"), "depth": 1,
            "text_encoder_files": [str(comfy["models"] / "clip" / name)
                                   for name in ("t5xxl_fp16.safetensors", "clip_l.safetensors")],
            "vae_file": str(comfy["models"] / "vae" / "ae.safetensors")}
    blocks = inspect_blocks(args, Context())["blocks"]
    assert set(blocks) == {"transformer", "text_encoder", "text_encoder_2"}
    assert {row["block"] for row in blocks["transformer"]} >= {"transformer_blocks", "single_transformer_blocks"}
    with pytest.raises(InputError, match=r"model\.text_encoder_files"):
        inspect_blocks({**args, "text_encoder_files": []}, Context())


def test_the_memory_box_counts_a_flux_models_transformer_in_a_folder_and_in_a_file(comfy, tmp_path):
    """device-info's parameter counts (which the memory estimate reads by the family's component names) see the
    transformer and the T5 encoder of a Flux folder, and the transformer of a BFL file."""
    from trainer.models.tiny import build_tiny_model
    from trainer.tasks.measure import count_parameters

    pipe = comfy["pipe"]
    expected = {name: sum(p.numel() for p in getattr(pipe, name).parameters()) for name in COMPONENTS}
    folder = count_parameters(build_tiny_model(tmp_path / "flux", "flux", seed=0))
    assert folder["transformer"] == expected["transformer"] and "unet" not in folder
    assert folder["text_encoder_2"] == expected["text_encoder_2"]  # T5: the tied embedding once
    single = count_parameters(comfy["models"] / "unet" / "flux1-tiny.safetensors")
    assert single == {"transformer": expected["transformer"]}
