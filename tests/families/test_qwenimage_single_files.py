"""Qwen-Image as ComfyUI users keep it — ``qwen_image_bf16.safetensors`` (diffusers' keys, ComfyUI's prefix) in
models/diffusion_models, ``qwen_2.5_vl_7b.safetensors`` (Hugging Face's original Qwen2.5-VL keys) in
models/text_encoders, ``qwen_image_vae.safetensors`` (Wan 2.1's layout) in models/vae — loaded offline into the very
model they came from; the fp8 transformer file, a text encoder file without its LM head and ComfyUI's "scaled" fp8 one
(its newer quantized format refused by name); the VAE's layout both ways, read by diffusers' own Wan converter at the
real shape; both LoRA files as ComfyUI's mapping and diffusers apply them, module by module."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from trainer.errors import InputError
from trainer.models import load_model

COMPONENTS = ("transformer", "text_encoder", "vae")
TRANSFORMER = "qwen_image_tiny_bf16.safetensors"
ENCODER = "qwen_2.5_vl_7b.safetensors"


def original_text_encoder(pipe) -> dict[str, torch.Tensor]:
    """The tiny Qwen2.5-VL in Hugging Face's original keys, as ComfyUI's file holds them."""
    state = {}
    for key, value in pipe.text_encoder.state_dict().items():
        key = key.replace("model.language_model.", "model.").replace("model.visual.", "visual.")
        state[key] = value.contiguous()
    return state


@pytest.fixture(scope="module")
def comfy(tmp_path_factory, tiny_models):
    """A tiny Qwen-Image as ComfyUI keeps it, with Z-Image's Qwen3 file beside its text encoder (not to be taken
    for it); the pipeline it came from; its config folder."""
    from trainer.models import wan_vae_layout
    from trainer.models.qwenimage_single import pipeline_to_comfy
    from trainer.models.tiny import write_tiny_config_dir

    root = tmp_path_factory.mktemp("comfy-qwenimage")
    model = tiny_models["qwenimage"]
    pipe = load_model(model).pipeline
    models = root / "models"
    for folder in ("diffusion_models", "text_encoders", "vae"):
        (models / folder).mkdir(parents=True)
    save_file({f"model.diffusion_model.{k}": v.contiguous() for k, v in pipeline_to_comfy(pipe).items()},
              models / "diffusion_models" / TRANSFORMER)
    save_file(original_text_encoder(pipe), models / "text_encoders" / ENCODER)
    save_file({"model.embed_tokens.weight": torch.zeros(8, 4)}, models / "text_encoders" / "qwen_3_4b.safetensors")
    vae = wan_vae_layout.to_original(pipe.vae.state_dict(), pipe.vae.config.num_res_blocks)
    save_file({k: v.contiguous() for k, v in vae.items()}, models / "vae" / "qwen_image_vae.safetensors")
    return {"pipe": pipe, "models": models, "model": model,
            "config_dir": write_tiny_config_dir(model, root / "config")}


def same_weights(a, b, names=COMPONENTS) -> None:
    for name in names:
        left, right = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        assert left.keys() == right.keys(), name
        assert all(torch.equal(left[k], right[k]) for k in left), name


def picture(pipe) -> np.ndarray:
    pipe.set_progress_bar_config(disable=True)
    return np.asarray(pipe("a red circle", negative_prompt=" ", true_cfg_scale=3.0, width=64, height=64,
                           num_inference_steps=2, generator=torch.Generator().manual_seed(3)).images[0])


def test_the_files_in_comfyuis_folders_load_into_the_model_they_came_from(comfy):
    file = comfy["models"] / "diffusion_models" / TRANSFORMER
    loaded = load_model(file, config_dir=comfy["config_dir"], expected_architecture="qwenimage")
    assert (loaded.info.architecture, loaded.info.prediction_type, loaded.info.source_kind) == (
        "qwenimage", "flow_matching", "single_file")
    same_weights(comfy["pipe"], loaded.pipeline)
    assert np.array_equal(picture(loaded.pipeline), picture(comfy["pipe"]))  # rotary tables and all


def test_the_encoder_files_layout_is_the_one_transformers_itself_reads(comfy, tmp_path):
    """The Qwen2.5-VL layout the fixture writes (``model.layers…``, ``visual.…``: Hugging Face's original keys, what
    ComfyUI's ``qwen_2.5_vl_7b`` holds) is the one transformers 5's own loader converts: it reads the file into the
    model it came from, as Kamaal's reader does."""
    import transformers

    encoder = comfy["pipe"].text_encoder
    encoder.config.save_pretrained(tmp_path)
    shutil.copy(comfy["models"] / "text_encoders" / ENCODER, tmp_path / "model.safetensors")
    read = transformers.Qwen2_5_VLForConditionalGeneration.from_pretrained(tmp_path, local_files_only=True)
    ours, theirs = encoder.state_dict(), read.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_the_fp8_transformer_and_an_encoder_without_its_lm_head_load(comfy, tmp_path):
    """``qwen_image_fp8_e4m3fn.safetensors`` (no prefix) holds plain e4m3 weights: loaded, they are the model's
    weights rounded to fp8.  A Qwen2.5-VL file without ``lm_head`` encodes prompts exactly as the whole one."""
    pipe = comfy["pipe"]
    models = tmp_path / "models"
    shutil.copytree(comfy["models"] / "vae", models / "vae")
    (models / "diffusion_models").mkdir(parents=True)
    (models / "text_encoders").mkdir()
    fp8 = {k: (v.to(torch.float8_e4m3fn) if v.dim() == 2 else v).contiguous()
           for k, v in pipe.transformer.state_dict().items()}
    save_file(fp8, models / "diffusion_models" / "qwen_image_fp8_e4m3fn.safetensors")
    headless = {k: v for k, v in original_text_encoder(pipe).items() if not k.startswith("lm_head.")}
    save_file(headless, models / "text_encoders" / ENCODER)

    loaded = load_model(models / "diffusion_models" / "qwen_image_fp8_e4m3fn.safetensors",
                        config_dir=comfy["config_dir"]).pipeline
    state = loaded.transformer.state_dict()
    assert all(torch.equal(state[k], v.to(torch.float32)) for k, v in fp8.items())
    assert any(not torch.equal(state[k], v) for k, v in pipe.transformer.state_dict().items())  # it did round
    with torch.no_grad():
        prompts = ["a red circle", "a small blue square on a green field"]  # of two lengths: a mask
        ours, our_mask = loaded.encode_prompt(prompts, device=torch.device("cpu"))
        theirs, their_mask = pipe.encode_prompt(prompts, device=torch.device("cpu"))
    assert torch.equal(ours, theirs) and torch.equal(our_mask, their_mask)


def test_comfyuis_scaled_fp8_encoder_is_read_as_comfyui_computes_with_it(comfy, tmp_path):
    """``qwen_2.5_vl_7b_fp8_scaled.safetensors``: fp8 weights, each with its ``scale_weight`` (and a ``scale_input``,
    and the ``scaled_fp8`` marker).  Loaded, each weight is fp8 × scale, as ComfyUI's scaled-fp8 layers compute,
    and the prompts encode close to the full-precision file's; a layer of ComfyUI's newer quantized format that is
    not fp8 with one scale is refused by name."""
    pipe = comfy["pipe"]
    original = original_text_encoder(pipe)
    scaled, expected = dict(original), {}
    for key, weight in original.items():
        if key.startswith("model.layers.") and weight.dim() == 2:
            scale = weight.abs().max() / 448  # e4m3's largest value
            scaled[key] = (weight / scale).to(torch.float8_e4m3fn)
            scaled[key.replace(".weight", ".scale_weight")] = scale.to(torch.float32)
            scaled[key.replace(".weight", ".scale_input")] = torch.ones(())
            expected[key] = scaled[key].to(torch.float32) * scale
    scaled["scaled_fp8"] = torch.zeros(0, dtype=torch.float8_e4m3fn)
    file = tmp_path / "qwen_2.5_vl_7b_fp8_scaled.safetensors"
    save_file(scaled, file)
    transformer = comfy["models"] / "diffusion_models" / TRANSFORMER
    loaded = load_model(transformer, config_dir=comfy["config_dir"], text_encoder_files=[str(file)]).pipeline
    state = loaded.text_encoder.state_dict()
    for key, weight in expected.items():
        ours = state[key.replace("model.", "model.language_model.", 1)]
        assert torch.equal(ours, weight) and not torch.equal(ours, original[key]), key
    prompts = ["a red circle", "a small blue square on a green field"]
    with torch.no_grad():
        ours, _ = loaded.encode_prompt(prompts, device=torch.device("cpu"))
        theirs, _ = pipe.encode_prompt(prompts, device=torch.device("cpu"))
    assert ((ours - theirs).norm() / theirs.norm()).item() < 0.1

    newer = {**original, "model.layers.0.mlp.up_proj.comfy_quant": torch.zeros(4, dtype=torch.uint8)}
    save_file(newer, tmp_path / "quantized.safetensors")
    with pytest.raises(InputError, match=r"model\.text_encoder_files: .*quantized\.safetensors is stored in ComfyUI's "
                                         r"quantized format \(it holds model\.layers\.0\.mlp\.up_proj\.comfy_quant\)"
                                         r".* use the full-precision file \(qwen_2\.5_vl_7b\.safetensors\)"):
        load_model(transformer, config_dir=comfy["config_dir"],
                   text_encoder_files=[str(tmp_path / "quantized.safetensors")])


def test_named_files_load_from_anywhere_and_missing_ones_are_refused_naming_the_field(comfy, tmp_path):
    alone = tmp_path / "elsewhere" / "x"
    alone.mkdir(parents=True)
    shutil.copy(comfy["models"] / "diffusion_models" / TRANSFORMER, alone / "q.safetensors")
    encoder, vae = tmp_path / "my-encoder.safetensors", tmp_path / "my-vae.safetensors"
    shutil.copy(comfy["models"] / "text_encoders" / ENCODER, encoder)
    shutil.copy(comfy["models"] / "vae" / "qwen_image_vae.safetensors", vae)
    loaded = load_model(alone / "q.safetensors", config_dir=comfy["config_dir"], text_encoder_files=[str(encoder)],
                        vae_file=str(vae))
    same_weights(comfy["pipe"], loaded.pipeline)
    with pytest.raises(InputError, match=r"model\.text_encoder_files: .* holds the Qwen-Image transformer only; "
                                         r"choose its Qwen2\.5-VL text encoder file \(qwen_2\.5_vl_7b\.safetensors\)"):
        load_model(alone / "q.safetensors", config_dir=comfy["config_dir"], vae_file=str(vae))
    with pytest.raises(InputError, match=r"model\.vae_file: .* choose its VAE file \(qwen_image_vae\.safetensors\)"):
        load_model(alone / "q.safetensors", config_dir=comfy["config_dir"], text_encoder_files=[str(encoder)])
    with pytest.raises(InputError, match=r"model\.text_encoder_files: .* does not hold a Qwen2\.5-VL text encoder"):
        load_model(alone / "q.safetensors", config_dir=comfy["config_dir"], text_encoder_files=[str(vae)],
                   vae_file=str(vae))
    with pytest.raises(InputError, match=r"model\.vae_file: .* does not hold a Qwen-Image \(Wan 2\.1\) VAE"):
        load_model(alone / "q.safetensors", config_dir=comfy["config_dir"], text_encoder_files=[str(encoder)],
                   vae_file=str(encoder))


def test_the_vae_layout_converts_both_ways_and_agrees_with_diffusers_own_wan_converter():
    """diffusers → original → diffusers is exact on the tiny VAE (one resnet per level), and diffusers' Wan VAE
    converter, which knows only the real shape, reads what Kamaal writes at that shape back into every key and
    value (thin tensors of the true heights)."""
    import diffusers
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    from trainer.models import wan_vae_layout
    from trainer.models.info import MODEL_CONFIGS
    from trainer.models.tiny import tiny_pipeline

    tiny = tiny_pipeline("qwenimage").vae
    state = tiny.state_dict()
    original = wan_vae_layout.to_original(state, tiny.config.num_res_blocks)
    assert "decoder.upsamples.2.resample.1.weight" in original and "decoder.head.2.weight" in original
    back = wan_vae_layout.to_diffusers(original, list(state), tiny.config.num_res_blocks)
    assert back.keys() == state.keys() and all(torch.equal(back[k], state[k]) for k in state)

    config = diffusers.AutoencoderKLQwenImage.load_config(MODEL_CONFIGS / "qwen-image" / "vae")
    with torch.device("meta"):
        real = diffusers.AutoencoderKLQwenImage.from_config(config)
    generator = torch.Generator().manual_seed(0)
    thin = {key: torch.randn((*value.shape[:1], *([1] if value.dim() > 1 else [])), generator=generator)
            for key, value in real.state_dict().items()}
    original = wan_vae_layout.to_original(thin, real.config.num_res_blocks)
    assert {"decoder.upsamples.4.shortcut.weight", "decoder.upsamples.7.time_conv.weight", "conv2.bias",
            "encoder.middle.2.residual.6.weight"} <= set(original)
    converted = convert_wan_vae_to_diffusers(dict(original))
    assert converted.keys() == thin.keys() and all(torch.equal(converted[k], thin[k]) for k in thin)


def comfy_key_map(model_keys) -> dict[str, str]:
    """The LoRA module names ComfyUI's ``model_lora_keys_unet`` maps onto a Qwen-Image model's weights (facts from
    ``comfy/lora.py``): for each ``diffusion_model.K.weight``, the generic ``lora_unet_<K with _>`` and ``K``, and
    Qwen-Image's own ``transformer.K`` and ``lycoris_<K with _>`` (and ``diffusion_model.K``, the prefix its
    ``load_lora`` strips)."""
    key_map = {}
    for key in model_keys:
        if key.startswith("diffusion_model.") and key.endswith(".weight"):
            name = key.removeprefix("diffusion_model.").removesuffix(".weight")
            for alias in (f"lora_unet_{name.replace('.', '_')}", name, f"transformer.{name}",
                          f"lycoris_{name.replace('.', '_')}", f"diffusion_model.{name}"):
                key_map[alias] = key
    return key_map


def comfy_applies(tensors: dict[str, torch.Tensor], base: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``base`` (ComfyUI's model weights, diffusers' keys) with the LoRA ``tensors`` added as ComfyUI's loader adds
    them: each module found under one of the mapped names, ΔW = up @ down × alpha/rank (1 without an alpha); a
    module with no mapped name fails the test, as ComfyUI would skip it ("lora key not loaded")."""
    key_map = comfy_key_map(base)
    patched = {k: v.clone() for k, v in base.items()}
    modules = {key.rsplit(".lora_", 1)[0].removesuffix(".alpha") for key in tensors}
    for module in sorted(modules):
        assert module in key_map, f"ComfyUI would skip {module}"
        if f"{module}.lora_B.weight" in tensors:
            up, down = tensors[f"{module}.lora_B.weight"], tensors[f"{module}.lora_A.weight"]
        else:
            up, down = tensors[f"{module}.lora_up.weight"], tensors[f"{module}.lora_down.weight"]
        alpha = tensors.get(f"{module}.alpha")
        scale = float(alpha) / down.shape[0] if alpha is not None else 1.0
        patched[key_map[module]] += scale * (up @ down)
    return patched


def test_comfyui_and_diffusers_apply_both_lora_files_module_by_module(comfy, tmp_path):
    """ComfyUI's Qwen-Image LoRA mapping takes the diffusers file (``transformer.<module>.lora_A/B``) and the
    kohya/musubi file (``lora_unet_transformer_blocks_0_attn_to_q.lora_down/up`` with alpha = rank) as they are:
    every Linear LoRA can target has a place, and ΔW added there gives the transformer diffusers builds by fusing
    the diffusers file.  diffusers' ``load_lora_weights`` reads the kohya file (its Qwen converter) to the same."""
    import diffusers
    from peft import LoraConfig
    from safetensors.torch import load_file

    from trainer.families.qwenimage import musubi_layout
    from trainer.lora_formats import export_kohya_transformer_lora, export_transformer_lora
    from trainer.models.qwenimage_single import pipeline_to_comfy

    transformer = load_model(comfy["model"]).pipeline.transformer
    base = {k: v.clone() for k, v in transformer.state_dict().items()}
    linears = [name for name, module in transformer.named_modules() if isinstance(module, torch.nn.Linear)]
    assert set(musubi_layout(dict(transformer.config))) == set(linears)  # the layout knows every Linear
    transformer.add_adapter(LoraConfig(r=4, lora_alpha=8, target_modules=linears, init_lora_weights="gaussian"))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, parameter in transformer.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.05)  # B starts at zero; give every module a change
    diffusers_file = export_transformer_lora(tmp_path / "d" / "lora.safetensors", "qwenimage", transformer, [], {})
    kohya_file = export_kohya_transformer_lora(tmp_path / "kohya.safetensors", "qwenimage", transformer, [], "k", {})
    assert kohya_file is not None
    kohya = load_file(kohya_file)
    assert "lora_unet_transformer_blocks_1_img_mlp_net_0_proj.lora_down.weight" in kohya
    assert len({key.rsplit(".", 2)[0] for key in kohya}) == len(linears)

    def fused(lora_file) -> dict[str, torch.Tensor]:
        pipe = diffusers.QwenImagePipeline.from_pretrained(comfy["model"], local_files_only=True)
        pipe.load_lora_weights(str(lora_file.parent), weight_name=lora_file.name)
        pipe.fuse_lora()
        return {k.replace(".base_layer", ""): v for k, v in pipe.transformer.state_dict().items() if "lora_" not in k}

    expected = fused(diffusers_file)
    assert any(not torch.equal(expected[key], base[key]) for key in base)
    comfy_base = {f"diffusion_model.{k}": v for k, v in pipeline_to_comfy(comfy["pipe"]).items()}
    for tensors in (load_file(diffusers_file), kohya):
        by_comfy = comfy_applies(tensors, comfy_base)
        assert by_comfy.keys() == {f"diffusion_model.{k}" for k in expected}
        for key, value in expected.items():
            torch.testing.assert_close(by_comfy[f"diffusion_model.{key}"], value, rtol=1e-5, atol=1e-6, msg=key)
    from_kohya = fused(kohya_file)
    for key, value in expected.items():
        torch.testing.assert_close(from_kohya[key], value, rtol=1e-5, atol=1e-6, msg=key)


def test_a_qwenimage_edit_file_has_qwenimages_keys_and_loads_as_the_edit_model_when_the_config_names_it(comfy):
    """ComfyUI's ``qwen_image_edit_2509`` file holds Qwen-Image's keys: detected alone it is Qwen-Image; with
    ``model.architecture = "qwenimageedit"`` the same files load into ``QwenImageEditPlusPipeline``, every weight as
    stored, with a processor that reads pictures (the edit's condition image) without torchvision."""
    from PIL import Image

    from trainer.models import inspect_model

    file = comfy["models"] / "diffusion_models" / TRANSFORMER
    assert inspect_model(file).architecture == "qwenimage"
    loaded = load_model(file, config_dir=comfy["config_dir"], expected_architecture="qwenimageedit")
    assert loaded.info.architecture == "qwenimageedit"
    assert type(loaded.pipeline).__name__ == "QwenImageEditPlusPipeline"
    same_weights(comfy["pipe"], loaded.pipeline)
    text = "Picture 1: <|vision_start|><|image_pad|><|vision_end|>make it red"
    inputs = loaded.pipeline.processor(text=[text], images=[Image.new("RGB", (64, 64))], return_tensors="pt")
    assert inputs["image_grid_thw"].tolist() == [[1, 4, 4]]  # 64 px → 56 px: 4 × 4 patches of 14 px
