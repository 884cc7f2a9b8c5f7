"""Krea 2 as ComfyUI and musubi-tuner users keep it — ``turbo.safetensors`` (krea-ai's original layout, ComfyUI's
prefix) in models/diffusion_models, ``qwen3vl_4b_bf16.safetensors`` (ComfyUI's ``model.``/``visual.`` keys) in
models/text_encoders, ``qwen_image_vae.safetensors`` (Wan 2.1's layout) in models/vae — loaded offline into the very
model they came from (Turbo by its name); a Raw file without a prefix beside a Qwen3-VL file without its vision tower;
a file of another shape refused naming it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from trainer.errors import InputError
from trainer.models import load_model

COMPONENTS = ("transformer", "text_encoder", "vae")


def comfy_text_encoder(pipe) -> dict[str, torch.Tensor]:
    """The tiny Qwen3-VL as ComfyUI's file holds it: the language model under ``model.``, the tower under
    ``visual.``, with the tied LM head written out."""
    state = {key.replace("language_model.", "model.", 1): value.contiguous()
             for key, value in pipe.text_encoder.state_dict().items()}
    state["lm_head.weight"] = state["model.embed_tokens.weight"].clone()
    return state


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    """A tiny Krea 2 as ComfyUI keeps it, with Z-Image's Qwen3 file beside its text encoder (not to be taken for
    it); the pipeline it came from; its config folder."""
    from trainer.models import wan_vae_layout
    from trainer.models.krea2_layout import pipeline_to_original
    from trainer.models.tiny import build_tiny_model, write_tiny_config_dir

    root = tmp_path_factory.mktemp("comfy-krea2")
    model = build_tiny_model(root / "tiny-krea2", "krea2", seed=0)
    pipe = load_model(model).pipeline
    models = root / "models"
    for folder in ("diffusion_models", "text_encoders", "vae"):
        (models / folder).mkdir(parents=True)
    save_file({f"model.diffusion_model.{k}": v.contiguous() for k, v in pipeline_to_original(pipe).items()},
              models / "diffusion_models" / "turbo.safetensors")
    save_file(comfy_text_encoder(pipe), models / "text_encoders" / "qwen3vl_4b_bf16.safetensors")
    save_file({"model.embed_tokens.weight": torch.zeros(8, 4)}, models / "text_encoders" / "qwen_3_4b.safetensors")
    vae = wan_vae_layout.to_original(pipe.vae.state_dict(), pipe.vae.config.num_res_blocks)
    save_file({k: v.contiguous() for k, v in vae.items()}, models / "vae" / "qwen_image_vae.safetensors")
    return {"pipe": pipe, "models": models, "config_dir": write_tiny_config_dir(model, root / "config")}


def same_weights(a, b, names=COMPONENTS) -> None:
    for name in names:
        left, right = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        assert left.keys() == right.keys(), name
        assert all(torch.equal(left[k], right[k]) for k in left), name


def picture(pipe, guidance: float = 4.5) -> np.ndarray:
    pipe.set_progress_bar_config(disable=True)
    return np.asarray(pipe("a red circle", guidance_scale=guidance, width=64, height=64, num_inference_steps=2,
                           generator=torch.Generator().manual_seed(3)).images[0])


def test_the_files_in_comfyuis_folders_load_into_the_model_they_came_from(comfy):
    file = comfy["models"] / "diffusion_models" / "turbo.safetensors"
    loaded = load_model(file, config_dir=comfy["config_dir"], expected_architecture="krea2")
    assert (loaded.info.architecture, loaded.info.prediction_type, loaded.info.source_kind) == (
        "krea2", "flow_matching", "single_file")
    same_weights(comfy["pipe"], loaded.pipeline)
    assert loaded.pipeline.config.is_distilled and not comfy["pipe"].config.is_distilled  # Turbo, by its name
    assert loaded.pipeline.text_encoder_select_layers == comfy["pipe"].text_encoder_select_layers
    loaded.pipeline.register_to_config(is_distilled=False)  # drawn with the same schedule: the same picture
    assert np.array_equal(picture(loaded.pipeline), picture(comfy["pipe"]))


def test_a_raw_file_without_prefix_and_an_encoder_without_its_vision_tower_load(comfy, tmp_path):
    """krea-ai's ``raw.safetensors`` keys have no prefix; a Qwen3-VL file with the language model alone encodes
    prompts exactly as the whole one (the pipeline never reads the tower)."""
    import shutil

    from trainer.models.krea2_layout import pipeline_to_original

    pipe = comfy["pipe"]
    models = tmp_path / "models"
    shutil.copytree(comfy["models"] / "vae", models / "vae")
    (models / "diffusion_models").mkdir(parents=True)
    (models / "text_encoders").mkdir()
    save_file({k: v.contiguous() for k, v in pipeline_to_original(pipe).items()},
              models / "diffusion_models" / "raw.safetensors")
    text_only = {k: v for k, v in comfy_text_encoder(pipe).items() if not k.startswith("visual.")}
    save_file(text_only, models / "text_encoders" / "qwen3vl_4b_bf16.safetensors")
    loaded = load_model(models / "diffusion_models" / "raw.safetensors", config_dir=comfy["config_dir"]).pipeline
    assert not loaded.config.is_distilled
    same_weights(pipe, loaded, ("transformer", "vae"))
    with torch.no_grad():
        prompts = ["a red circle", "a small blue square on a green field"]
        ours, our_mask = loaded.encode_prompt(prompts, device=torch.device("cpu"))
        theirs, their_mask = pipe.encode_prompt(prompts, device=torch.device("cpu"))
    assert torch.equal(ours, theirs) and torch.equal(our_mask, their_mask)


def test_a_file_of_another_shape_is_refused_naming_it(comfy, tmp_path):
    models = tmp_path / "models"
    (models / "diffusion_models").mkdir(parents=True)
    file = models / "diffusion_models" / "krea2_other.safetensors"
    save_file({"txtfusion.projector.weight": torch.zeros(1, 12), "blocks.0.attn.wx.weight": torch.zeros(2, 2)}, file)
    with pytest.raises(InputError, match=r"model\.path: .*krea2_other\.safetensors does not hold a Krea 2 transformer "
                                         r"of this shape: it has unknown blocks\.0\.attn\.wx\.weight"):
        load_model(file, config_dir=comfy["config_dir"],
                   text_encoder_files=[str(comfy["models"] / "text_encoders" / "qwen3vl_4b_bf16.safetensors")],
                   vae_file=str(comfy["models"] / "vae" / "qwen_image_vae.safetensors"))
