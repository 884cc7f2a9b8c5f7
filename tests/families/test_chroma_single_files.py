"""Chroma as ComfyUI users keep it — the transformer in lodestones' layout (``Chroma1-HD.safetensors``, with its
``distilled_guidance_layer``) in models/diffusion_models, ``t5xxl_fp16.safetensors`` in models/text_encoders,
Flux's ``ae.safetensors`` in models/vae — loaded offline into the very model they came from and told from Flux.1;
the layout both ways, read by diffusers' own converter at the real shape; the shipped config is Chroma1-HD's; and
the kohya LoRA file as ComfyUI applies it to that layout, module by module."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.diffusion.conftest import diffusion_config
from tests.trainer.helpers import run_in_process
from trainer.errors import InputError
from trainer.families import family
from trainer.models import load_model
from trainer.protocol import EXIT_OK, Failed, Finished, Sample

COMPONENTS = ("transformer", "text_encoder", "vae")


@pytest.fixture(scope="module")
def comfy(tmp_path_factory, tiny_models):
    """A tiny Chroma as ComfyUI keeps it (the transformer with ComfyUI's prefix, T5 without the tied embedding's
    copy, the VAE in the original autoencoder's keys); the pipeline it came from; its config folder."""
    from trainer.models.chroma_single import pipeline_to_original
    from trainer.models.original_layout import vae_to_original
    from trainer.models.tiny import write_tiny_config_dir

    root = tmp_path_factory.mktemp("comfy-chroma")
    model = tiny_models["chroma"]
    pipe = load_model(model).pipeline
    models = root / "models"
    for folder in ("diffusion_models", "text_encoders", "vae"):
        (models / folder).mkdir(parents=True)
    save_file({f"model.diffusion_model.{k}": v.contiguous() for k, v in pipeline_to_original(pipe).items()},
              models / "diffusion_models" / "Chroma1-tiny.safetensors")
    save_file({k: v.contiguous() for k, v in pipe.text_encoder.state_dict().items()
               if k != "encoder.embed_tokens.weight"}, models / "text_encoders" / "t5xxl_fp16.safetensors")
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


def masked_prompt(pipe, prompt: str, negative_prompt: str = "") -> dict:
    """``ChromaPipeline``'s call arguments for ``prompt`` with its T5 masks as keep/drop (boolean): how Chroma was
    trained and how Kamaal draws it (diffusers 0.42.1 hands the transformer a float mask, which attention adds:
    issues #12116, #13619)."""
    embeds, _, mask, negative, _, negative_mask = pipe.encode_prompt(prompt, negative_prompt=negative_prompt,
                                                                     device="cpu", do_classifier_free_guidance=True)
    return {"prompt_embeds": embeds, "prompt_attention_mask": mask.bool(), "negative_prompt_embeds": negative,
            "negative_prompt_attention_mask": negative_mask.bool()}


def test_the_transformer_reads_the_pipelines_masks_as_keep_drop_and_padding_then_counts_for_nothing():
    """ChromaEngine's hook: the float 0/1 mask ChromaPipeline passes is read as keep/drop — the transformer then
    gives what a boolean mask gives, and the padded rows of the prompt no longer move the output (without the
    hook, diffusers adds the float mask to the attention scores and the padding is attended)."""
    import copy

    from trainer.diffusion.engine_chroma import keep_drop_masks
    from trainer.models.tiny import tiny_pipeline

    plain = tiny_pipeline("chroma").transformer.eval()
    hooked = copy.deepcopy(plain)
    keep_drop_masks(hooked)
    keep_drop_masks(hooked)  # once is enough: a second engine adds nothing
    generator = torch.Generator().manual_seed(0)
    tokens, image = 8, 16
    text = torch.randn(1, tokens, plain.config.joint_attention_dim, generator=generator)
    padded = text.clone()
    padded[:, 5:] = 5 * torch.randn(1, tokens - 5, text.shape[-1], generator=generator)  # rows past the first pad
    keep = torch.tensor([[1.0] * 5 + [0.0] * (tokens - 5) + [1.0] * image])
    ids = torch.zeros(image, 3)
    ids[:, 1], ids[:, 2] = torch.arange(image) // 4, torch.arange(image) % 4

    def run(model, hidden, mask):
        return model(hidden_states=torch.ones(1, image, plain.config.in_channels), encoder_hidden_states=hidden,
                     timestep=torch.tensor([0.5]), txt_ids=torch.zeros(tokens, 3), img_ids=ids, attention_mask=mask,
                     return_dict=False)[0]

    with torch.no_grad():
        assert torch.equal(run(hooked, text, keep), run(plain, text, keep.bool()))
        torch.testing.assert_close(run(hooked, padded, keep), run(hooked, text, keep))
        assert not torch.allclose(run(plain, padded, keep), run(plain, text, keep), atol=1e-3)


def picture(pipe) -> np.ndarray:
    pipe.set_progress_bar_config(disable=True)
    return np.asarray(pipe("a red circle", negative_prompt="blurry", width=64, height=64, num_inference_steps=2,
                           guidance_scale=4.0, generator=torch.Generator().manual_seed(3)).images[0])


def test_the_files_in_comfyuis_folders_load_into_the_model_they_came_from(comfy):
    """Detected as Chroma, not Flux.1 (its file has Flux's double/single blocks too), and it draws the very image
    the model it came from draws — the approximator's frequency table, which no file holds, included."""
    file = comfy["models"] / "diffusion_models" / "Chroma1-tiny.safetensors"
    loaded = load_model(file, config_dir=comfy["config_dir"])
    assert (loaded.info.architecture, loaded.info.prediction_type, loaded.info.source_kind) == (
        "chroma", "flow_matching", "single_file")
    same_weights(comfy["pipe"], loaded.pipeline)
    assert np.array_equal(picture(loaded.pipeline), picture(comfy["pipe"]))


def test_named_files_load_from_anywhere_and_missing_ones_are_refused_naming_the_field(comfy, tmp_path):
    import shutil

    alone = tmp_path / "elsewhere" / "x"
    alone.mkdir(parents=True)
    shutil.copy(comfy["models"] / "diffusion_models" / "Chroma1-tiny.safetensors", alone / "c.safetensors")
    encoder, vae = tmp_path / "my-t5.safetensors", tmp_path / "my-vae.safetensors"
    shutil.copy(comfy["models"] / "text_encoders" / "t5xxl_fp16.safetensors", encoder)
    shutil.copy(comfy["models"] / "vae" / "ae.safetensors", vae)
    single = alone / "c.safetensors"
    loaded = load_model(single, config_dir=comfy["config_dir"], text_encoder_files=[str(encoder)], vae_file=str(vae))
    same_weights(comfy["pipe"], loaded.pipeline)
    with pytest.raises(InputError, match=r"model\.text_encoder_files: .* holds the Chroma transformer only; choose "
                                         r"its T5-XXL text encoder file \(t5xxl_fp16\.safetensors\)"):
        load_model(single, config_dir=comfy["config_dir"], vae_file=str(vae))
    with pytest.raises(InputError, match=r"model\.vae_file: .* holds the Chroma transformer only; choose its VAE"):
        load_model(single, config_dir=comfy["config_dir"], text_encoder_files=[str(encoder)])
    with pytest.raises(InputError, match=r"model\.text_encoder_files: .*my-vae\.safetensors is not a T5 text encoder"):
        load_model(single, config_dir=comfy["config_dir"], text_encoder_files=[str(vae)], vae_file=str(vae))
    with pytest.raises(InputError, match=r"model\.text_encoder_files: Chroma has one text encoder"):
        load_model(single, config_dir=comfy["config_dir"], text_encoder_files=[str(encoder)] * 2, vae_file=str(vae))
    original = load_file(single)
    original["double_blocks.0.img_mod.lin.weight"] = torch.zeros(2, 2)  # a Flux.1 modulation: not Chroma's
    save_file(original, tmp_path / "odd.safetensors")
    with pytest.raises(InputError, match=r"model\.path: .*odd\.safetensors does not hold a Chroma transformer of "
                                         r"this shape: it has unknown double_blocks\.0\.img_mod\.lin\.weight"):
        load_model(tmp_path / "odd.safetensors", config_dir=comfy["config_dir"], text_encoder_files=[str(encoder)],
                   vae_file=str(vae))


def test_the_layout_converts_both_ways_and_agrees_with_diffusers_own_converter_at_chroma1s_shape():
    """diffusers → original → diffusers is exact on the tiny model; on the shipped Chroma1-HD config (19 double and
    38 single blocks 3072 wide, a 5-layer approximator: 8.9 B parameters, the registry's count) diffusers' own
    converter reads what Kamaal writes back into every key, shape and value (rows of the true heights, one column
    each, so the check stays small)."""
    import diffusers
    import transformers
    from diffusers.loaders.single_file_utils import convert_chroma_transformer_checkpoint_to_diffusers

    from trainer.models.chroma_single import to_diffusers, to_original
    from trainer.models.info import MODEL_CONFIGS
    from trainer.models.tiny import tiny_pipeline

    tiny = tiny_pipeline("chroma").transformer
    state = tiny.state_dict()
    back = to_diffusers(to_original(state, dict(tiny.config)), dict(tiny.config))
    assert back.keys() == state.keys() and all(torch.equal(back[k], state[k]) for k in state)

    folder = MODEL_CONFIGS / family("chroma").config_folders["flow_matching"]
    assert json.loads((folder / "model_index.json").read_text(encoding="utf-8"))["_class_name"] == "ChromaPipeline"
    reference = family("chroma").memory.reference_parameters
    with torch.device("meta"):
        real = diffusers.ChromaTransformer2DModel.from_config(
            diffusers.ChromaTransformer2DModel.load_config(folder / "transformer"))
        t5 = transformers.T5EncoderModel(transformers.T5Config.from_pretrained(folder / "text_encoder"))
        vae = diffusers.AutoencoderKL.from_config(diffusers.AutoencoderKL.load_config(folder / "vae"))
    assert sum(p.numel() for p in real.parameters()) == reference["transformer"]
    assert sum(p.numel() for p in t5.parameters()) == reference["text_encoder"]
    assert sum(p.numel() for p in vae.parameters()) == reference["vae"]
    generator = torch.Generator().manual_seed(0)
    thin = {key: torch.randn((*value.shape[:1], *([1] if value.dim() > 1 else [])), generator=generator)
            for key, value in real.state_dict().items()}
    original = to_original(thin, dict(real.config))
    assert original["single_blocks.37.linear1.weight"].shape[0] == 3 * 3072 + 4 * 3072
    assert "distilled_guidance_layer.layers.4.out_layer.weight" in original
    assert not any("_mod." in key or "modulation" in key for key in original)  # pruned, as in lodestones' files
    converted = convert_chroma_transformer_checkpoint_to_diffusers(dict(original))
    assert converted.keys() == thin.keys() and all(torch.equal(converted[k], thin[k]) for k in thin)


def test_comfyui_applies_the_kohya_file_module_by_module(tmp_path):
    """The kohya file in lodestones' layout, as ComfyUI applies it (``comfy/lora.py``: every ``lora_unet_`` name
    is a ``diffusion_model.`` weight, dots as underscores; Chroma has no diffusers-name branch there, so this is
    the file ComfyUI loads): with adapters on every kind of layer — q, k, v fused into ``img_attn.qkv`` /
    ``txt_attn.qkv`` and into ``linear1``'s first rows beside the MLP input, the approximator's layers — and random
    ups, every module has its place and ΔW added there gives, read back, the transformer with the LoRA fused."""
    from types import SimpleNamespace

    from peft.tuners.lora import LoraLayer

    from trainer.lora_formats import adapter_modules, add_lora_adapters, export_kohya_transformer_lora
    from trainer.models.chroma_single import to_diffusers, to_original
    from trainer.models.tiny import tiny_pipeline

    transformer = tiny_pipeline("chroma").transformer
    base = to_original(transformer.state_dict(), dict(transformer.config))
    targets = ["to_q", "to_k", "to_v", "add_q_proj", "add_k_proj", "add_v_proj", "to_out.0", "to_add_out",
               "proj_mlp", "ff.net.0.proj", "ff_context.net.2", "in_proj", "linear_1", "out_proj"]
    add_lora_adapters(transformer, [], SimpleNamespace(rank=2, alpha=3.0, dropout=0.0, target_modules=targets), False)
    generator = torch.Generator().manual_seed(1)
    for name, parameter in transformer.named_parameters():
        if "lora_B" in name:  # trained adapters: B is no longer zero
            parameter.data = torch.randn(parameter.shape, generator=generator)
    trained = adapter_modules(transformer)
    assert {"transformer_blocks.0.attn.add_k_proj", "single_transformer_blocks.1.proj_mlp",
            "distilled_guidance_layer.layers.1.linear_1", "distilled_guidance_layer.in_proj"} <= set(trained)
    kohya_file = export_kohya_transformer_lora(tmp_path / "c.safetensors", "chroma", transformer, [], "c", {})
    kohya = load_file(kohya_file)

    key_map = {"lora_unet_" + key.removesuffix(".weight").replace(".", "_"): key for key in base
               if key.endswith(".weight")}
    modules = {key.rsplit(".", 2)[0] if key.endswith(".weight") else key.rsplit(".", 1)[0] for key in kohya}
    assert {"lora_unet_double_blocks_0_img_attn_qkv", "lora_unet_double_blocks_0_txt_attn_qkv",
            "lora_unet_single_blocks_1_linear1", "lora_unet_distilled_guidance_layer_layers_0_in_layer",
            "lora_unet_distilled_guidance_layer_in_proj"} <= modules
    applied = dict(base)
    for name in modules:
        key = key_map[name]  # no module ComfyUI would drop as "lora key not loaded"
        down, up = kohya[f"{name}.lora_down.weight"], kohya[f"{name}.lora_up.weight"]
        applied[key] = applied[key] + float(kohya[f"{name}.alpha"]) / down.shape[0] * (up @ down)
    with torch.no_grad():
        for layer in transformer.modules():
            if isinstance(layer, LoraLayer):
                layer.merge()  # peft's own fused weights: W + scale·B@A
    expected = {key.replace(".base_layer.", "."): value for key, value in transformer.state_dict().items()
                if "lora_" not in key}
    got = to_diffusers(applied, dict(transformer.config))
    assert got.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], msg=key)


@pytest.mark.slow
def test_a_frozen_run_moves_only_its_block_and_writes_the_transformer_file_comfyui_loads(comfy, shapes_dataset,
                                                                                          tmp_path):
    """Frozen-layer training on Chroma moves only the chosen block; the run writes the diffusers folder and the
    transformer in lodestones' layout, which — with the T5 and ae files beside it, as ComfyUI keeps them — loads
    offline and draws the run's final sample (with Chroma's keep/drop masks, as the run drew it)."""
    import shutil

    from PIL import Image

    block = "transformer_blocks.0"
    config = diffusion_config(comfy["model"], shapes_dataset, "chroma", mode="frozen", frozen={"trainable": [block]},
                              training={"steps": 4, "learning_rate": 1e-3, "eval_every": 2},
                              sampling={"inference_steps": 2})
    code, rec = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK, rec.of(Failed)
    folder, single = (Path(p) for p in rec.of(Finished)[0].outputs)
    part = Path("transformer") / "diffusion_pytorch_model.safetensors"
    before, after = load_file(comfy["model"] / part), load_file(folder / part)
    moved = {name for name in before if not torch.equal(before[name], after[name])}
    assert moved and all(name.startswith(f"{block}.") for name in moved)

    models = tmp_path / "models"
    (models / "diffusion_models").mkdir(parents=True)
    shutil.copytree(comfy["models"] / "text_encoders", models / "text_encoders")
    shutil.copytree(comfy["models"] / "vae", models / "vae")
    shutil.copy(single, models / "diffusion_models" / single.name)
    loaded = load_model(models / "diffusion_models" / single.name, config_dir=comfy["config_dir"]).pipeline
    loaded.set_progress_bar_config(disable=True)
    final = rec.of(Sample)[-1]
    trained = np.asarray(Image.open(final.paths[0]).convert("RGB"), dtype=np.int16)
    image = loaded(**masked_prompt(loaded, final.prompts[0]), width=64, height=64, num_inference_steps=2,
                   guidance_scale=config.sampling.guidance_scale,
                   generator=torch.Generator("cpu").manual_seed(final.seeds[0])).images[0]
    assert np.abs(np.asarray(image, dtype=np.int16) - trained).max() <= 2
