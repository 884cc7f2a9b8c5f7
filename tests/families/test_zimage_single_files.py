"""Z-Image as ComfyUI users keep it — ``z_image_turbo_bf16.safetensors`` (the original layout) in
models/diffusion_models, ``qwen_3_4b.safetensors`` in models/text_encoders, Flux's ``ae.safetensors`` in
models/vae — loaded offline into the very model they came from; the original layout both ways, read by diffusers'
own converter; and the diffusers LoRA file as ComfyUI applies it, module by module, onto that layout."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from trainer.errors import InputError
from trainer.models import load_model

COMPONENTS = ("transformer", "text_encoder", "vae")


@pytest.fixture(scope="module")
def comfy(tmp_path_factory, tiny_models):
    """A tiny Z-Image as ComfyUI keeps it (the transformer with ComfyUI's prefix, Qwen3 under ``model.`` with a
    tied LM head, the VAE in the original autoencoder's keys); the pipeline it came from; its config folder."""
    from trainer.models.original_layout import vae_to_original
    from trainer.models.tiny import write_tiny_config_dir
    from trainer.models.zimage_single import pipeline_to_original

    root = tmp_path_factory.mktemp("comfy-zimage")
    model = tiny_models["zimage"]
    pipe = load_model(model).pipeline
    models = root / "models"
    for folder in ("diffusion_models", "text_encoders", "vae"):
        (models / folder).mkdir(parents=True)
    save_file({f"model.diffusion_model.{k}": v.contiguous() for k, v in pipeline_to_original(pipe).items()},
              models / "diffusion_models" / "z_image_tiny_bf16.safetensors")
    encoder = {f"model.{k}": v.contiguous() for k, v in pipe.text_encoder.state_dict().items()}
    encoder["lm_head.weight"] = encoder["model.embed_tokens.weight"].clone()
    save_file(encoder, models / "text_encoders" / "qwen_3_4b.safetensors")
    vae = vae_to_original(pipe.vae.state_dict(), len(pipe.vae.config.block_out_channels))
    save_file({k.removeprefix("first_stage_model."): v.contiguous() for k, v in vae.items()},
              models / "vae" / "ae.safetensors")
    return {"pipe": pipe, "models": models, "model": model,
            "config_dir": write_tiny_config_dir(model, root / "config")}


def same_weights(a, b) -> None:
    for name in COMPONENTS:
        left, right = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        assert left.keys() == right.keys(), name
        assert all(torch.equal(left[k], right[k]) for k in left), name


def test_the_files_in_comfyuis_folders_load_into_the_model_they_came_from(comfy, tmp_path):
    import numpy as np

    file = comfy["models"] / "diffusion_models" / "z_image_tiny_bf16.safetensors"
    loaded = load_model(file, config_dir=comfy["config_dir"], expected_architecture="zimage")
    assert (loaded.info.architecture, loaded.info.prediction_type, loaded.info.source_kind) == (
        "zimage", "flow_matching", "single_file")
    same_weights(comfy["pipe"], loaded.pipeline)

    def picture(pipe) -> np.ndarray:
        pipe.set_progress_bar_config(disable=True)
        return np.asarray(pipe("a red circle", width=64, height=64, num_inference_steps=2, guidance_scale=0.0,
                               generator=torch.Generator().manual_seed(3)).images[0])

    assert np.array_equal(picture(loaded.pipeline), picture(comfy["pipe"]))  # rotary tables and all


def test_named_files_load_from_anywhere_and_missing_ones_are_refused_naming_the_field(comfy, tmp_path):
    import shutil

    alone = tmp_path / "elsewhere" / "x"
    alone.mkdir(parents=True)
    shutil.copy(comfy["models"] / "diffusion_models" / "z_image_tiny_bf16.safetensors", alone / "z.safetensors")
    encoder, vae = tmp_path / "my-qwen.safetensors", tmp_path / "my-vae.safetensors"
    shutil.copy(comfy["models"] / "text_encoders" / "qwen_3_4b.safetensors", encoder)
    shutil.copy(comfy["models"] / "vae" / "ae.safetensors", vae)
    loaded = load_model(alone / "z.safetensors", config_dir=comfy["config_dir"], text_encoder_files=[str(encoder)],
                        vae_file=str(vae))
    same_weights(comfy["pipe"], loaded.pipeline)
    with pytest.raises(InputError, match=r"model\.text_encoder_files: .* holds the Z-Image transformer only; choose "
                                         r"its Qwen3 text encoder file \(qwen_3_4b\.safetensors\)"):
        load_model(alone / "z.safetensors", config_dir=comfy["config_dir"], vae_file=str(vae))
    with pytest.raises(InputError, match=r"model\.vae_file: .* choose its VAE file \(ae\.safetensors, Flux's\)"):
        load_model(alone / "z.safetensors", config_dir=comfy["config_dir"], text_encoder_files=[str(encoder)])
    with pytest.raises(InputError, match=r"model\.text_encoder_files: .* does not hold a Qwen3 text encoder"):
        load_model(alone / "z.safetensors", config_dir=comfy["config_dir"], text_encoder_files=[str(vae)],
                   vae_file=str(vae))


def test_the_original_layout_converts_both_ways_and_agrees_with_diffusers_own_converter():
    """diffusers → original → diffusers is exact on the tiny model, and diffusers' single-file converter reads the
    original keys Kamaal writes back into every key, shape and value — also at the real model's shape (30 layers
    and 2 + 2 refiners 3840 wide; rows of the true heights, one column each, so the check stays small)."""
    import diffusers
    from diffusers.loaders.single_file_utils import convert_z_image_transformer_checkpoint_to_diffusers

    from trainer.models.info import MODEL_CONFIGS
    from trainer.models.tiny import tiny_pipeline
    from trainer.models.zimage_single import to_diffusers, to_original

    tiny = tiny_pipeline("zimage").transformer
    state = tiny.state_dict()
    original = to_original(state, dict(tiny.config))
    back = to_diffusers(original, dict(tiny.config))
    assert back.keys() == state.keys() and all(torch.equal(back[k], state[k]) for k in state)
    converted = convert_z_image_transformer_checkpoint_to_diffusers(dict(original))
    assert converted.keys() == state.keys() and all(torch.equal(converted[k], state[k]) for k in state)

    config = diffusers.ZImageTransformer2DModel.load_config(MODEL_CONFIGS / "z-image-turbo" / "transformer")
    with torch.device("meta"):
        real = diffusers.ZImageTransformer2DModel.from_config(config)
    generator = torch.Generator().manual_seed(0)
    thin = {key: torch.randn((*value.shape[:1], *([1] if value.dim() > 1 else [])), generator=generator)
            for key, value in real.state_dict().items()}
    original = to_original(thin, dict(real.config))
    assert original["layers.29.attention.qkv.weight"].shape[0] == 3 * 3840
    assert {"context_refiner.1.attention.out.weight", "noise_refiner.1.adaLN_modulation.0.bias"} <= set(original)
    converted = convert_z_image_transformer_checkpoint_to_diffusers(dict(original))
    assert converted.keys() == thin.keys() and all(torch.equal(converted[k], thin[k]) for k in thin)


def test_comfyui_applies_the_diffusers_lora_file_module_by_module(comfy, tmp_path):
    """ComfyUI (``comfy/lora.py``, Z-Image's branch through ``comfy/utils.z_image_to_diffusers``) maps each
    ``transformer.<diffusers module>`` of the file onto the original layout: q, k, v into their rows of the fused
    ``attention.qkv``, ``to_out.0`` onto ``attention.out``, the rest by name, in the layers and both refiners.
    Every module the file holds (every Linear LoRA can target, here) must have that place, and ΔW added there —
    as ComfyUI adds it — must give, read back by diffusers' converter, the transformer with the LoRA fused."""
    from diffusers.loaders.single_file_utils import convert_z_image_transformer_checkpoint_to_diffusers
    from peft import LoraConfig
    from safetensors.torch import load_file

    from trainer.families.zimage import original_layout
    from trainer.lora_formats import export_transformer_lora
    from trainer.models.zimage_single import to_original

    transformer = load_model(comfy["model"]).pipeline.transformer
    config = dict(transformer.config)
    base = {k: v.clone() for k, v in transformer.state_dict().items()}
    linears = [name for name, module in transformer.named_modules() if isinstance(module, torch.nn.Linear)]
    transformer.add_adapter(LoraConfig(r=4, lora_alpha=8, target_modules=linears, init_lora_weights="gaussian"))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, parameter in transformer.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.05)  # B starts at zero; give every module a change
    lora_file = export_transformer_lora(tmp_path / "lora.safetensors", "zimage", transformer, [], {})
    tensors = load_file(lora_file)
    modules = sorted({key.removeprefix("transformer.").rsplit(".lora_", 1)[0] for key in tensors})
    assert len(modules) == len(linears) and all(key.startswith("transformer.") for key in tensors)

    layout = original_layout(config)
    patched = to_original(base, config)
    for module in modules:
        assert module in layout, module  # ComfyUI has a place for it
        name, offset, rows, height, _ = layout[module]
        delta = tensors[f"transformer.{module}.lora_B.weight"] @ tensors[f"transformer.{module}.lora_A.weight"]
        target = patched[f"{name}.weight"]
        assert target.shape[0] == (height or delta.shape[0]) and target.shape[1] == delta.shape[1], module
        target[offset: offset + (rows or delta.shape[0])] += delta

    import diffusers

    pipe = diffusers.ZImagePipeline.from_pretrained(comfy["model"], local_files_only=True)
    pipe.load_lora_weights(str(lora_file.parent), weight_name=lora_file.name)
    pipe.fuse_lora()
    fused = {k.replace(".base_layer", ""): v for k, v in pipe.transformer.state_dict().items() if "lora_" not in k}
    by_comfy = convert_z_image_transformer_checkpoint_to_diffusers(patched)
    assert by_comfy.keys() == fused.keys()
    for key in fused:
        torch.testing.assert_close(by_comfy[key], fused[key], rtol=1e-5, atol=1e-6, msg=key)
    assert any(not torch.equal(by_comfy[key], base[key]) for key in base)
