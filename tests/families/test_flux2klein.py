"""Flux.2 klein through the registry, on a tiny model built from its real classes (``Flux2Transformer2DModel``,
``AutoencoderKLFlux2`` with its batch-norm statistics, Qwen3 as a causal LM): the engine's latents, prompts and
prediction are the pipeline's; LoRA learns, and both its files — the diffusers one and the kohya one in Black
Forest Labs' layout — load with ``Flux2KleinPipeline.load_lora_weights`` and give the image the trained adapter
gave; the kohya file, applied module by module as ComfyUI applies it, gives the weights the diffusers file gives;
a stopped and resumed run ends where an uninterrupted one does; frozen-layer training moves only the chosen block
and writes the BFL transformer file diffusers' own converter reads back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

from tests.diffusion.conftest import diffusion_config
from tests.families.harness import TrainedRun, assert_resume_equals_uninterrupted, lora_config, train
from tests.trainer.helpers import run_in_process
from trainer.protocol import EXIT_OK, Failed, Finished, Sample
from trainer.runfolder import RunFolder

ARCH = "flux2klein"


@pytest.fixture(scope="module")
def tiny_klein(tiny_models) -> Path:
    return tiny_models[ARCH]


def pipeline(model_dir: Path):
    import diffusers

    pipe = diffusers.Flux2KleinPipeline.from_pretrained(model_dir, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def draw(pipe, prompt: str, seed: int, guidance: float = 7.5, steps: int = 3) -> np.ndarray:
    image = pipe(prompt=prompt, width=64, height=64, num_inference_steps=steps, guidance_scale=guidance,
                 generator=torch.Generator("cpu").manual_seed(seed)).images[0]
    return np.asarray(image, dtype=np.int16)


def delta(tensors: dict, down_key: str, up_key: str, alpha_key: str | None = None) -> torch.Tensor:
    down, up = tensors[down_key].float(), tensors[up_key].float()
    scale = float(tensors[alpha_key]) / down.shape[0] if alpha_key else 1.0
    return (up @ down) * scale


def test_the_tiny_model_command_writes_a_klein_folder_that_loads_and_is_detected(tmp_path, capsys):
    from trainer.cli import main
    from trainer.models import load_model

    assert main(["tiny-model", str(tmp_path / "k"), "--arch", ARCH]) == 0
    assert f"Wrote a tiny {ARCH} model" in capsys.readouterr().out
    loaded = load_model(tmp_path / "k")
    assert (loaded.info.architecture, loaded.info.prediction_type) == (ARCH, "flow_matching")
    assert type(loaded.pipeline).__name__ == "Flux2KleinPipeline"
    assert loaded.pipeline.tokenizer.apply_chat_template(  # the shipped Qwen3 template, thinking off as klein asks
        [{"role": "user", "content": "a red circle"}], tokenize=False, add_generation_prompt=True,
        enable_thinking=False) == ("<|im_start|>user\na red circle<|im_end|>\n<|im_start|>assistant\n"
                                   "<think>\n\n</think>\n\n")


def test_what_klein_cannot_do_is_refused_by_name():
    """Its Qwen3 encoder takes no LoRA (no loader applies one)."""
    from trainer.config import ConfigError, config_from_dict

    with pytest.raises(ConfigError, match=r"lora\.train_text_encoder: Flux\.2 klein's Qwen3 text encoder takes no"):
        config_from_dict({"mode": "lora", "model": {"architecture": ARCH}, "lora": {"train_text_encoder": True}})


def test_the_engine_encodes_latents_and_prompts_and_predicts_as_the_pipeline_does(tiny_klein):
    """Latents: the VAE's mean patchified and normalised by its batch-norm statistics (made non-trivial here), as
    the pipeline's ``_encode_vae_image`` gives them, in the VAE's own shape; prompts: ``encode_prompt``'s; the
    prediction: the transformer's velocity on the pipeline's packed tokens and position ids, at time σ."""
    from trainer.diffusion.components import Components
    from trainer.diffusion.engine_flux2 import patchified, unpatchified
    from trainer.diffusion.engines import engine_for

    pipe = pipeline(tiny_klein)
    generator = torch.Generator().manual_seed(0)
    channels = pipe.vae.bn.running_mean.shape[0]
    pipe.vae.bn.running_mean.copy_(torch.randn(channels, generator=generator))
    pipe.vae.bn.running_var.copy_(torch.rand(channels, generator=generator) + 0.5)
    parts = Components(ARCH, "flow_matching", [pipe.tokenizer], [pipe.text_encoder], pipe.vae, pipe.transformer,
                       pipe.scheduler)
    engine = engine_for(parts)
    pixels = torch.rand(2, 3, 64, 64, generator=generator) * 2 - 1
    with torch.no_grad():
        latents = engine.image_latents(pixels)
        expected = pipe._encode_vae_image(pixels, generator=None)
    assert latents.shape == (2, channels // 4, 8, 8)
    torch.testing.assert_close(patchified(latents), expected)
    assert torch.equal(unpatchified(patchified(latents)), latents)

    prompts = ["a red circle", "a small blue square on a green field"]
    with torch.no_grad():
        text = engine.encode_prompts([pipe.text_encoder], prompts, "cpu")
        embeds, text_ids = pipe.encode_prompt(list(prompts), device=torch.device("cpu"))
    assert torch.equal(text.hidden, embeds) and embeds.shape[1] == 512

    noisy = torch.randn(2, channels // 4, 8, 8, generator=generator)
    sigma = torch.tensor([0.25, 0.8])
    with torch.no_grad():
        predicted = engine.predict(pipe.transformer, noisy, sigma, text)
        tokens, image_ids = pipe.prepare_latents(2, channels // 4, 64, 64, torch.float32, "cpu", None,
                                                 latents=patchified(noisy))
        out = pipe.transformer(hidden_states=tokens, timestep=sigma * 1000 / 1000, guidance=None,
                               encoder_hidden_states=embeds, txt_ids=text_ids, img_ids=image_ids,
                               return_dict=False)[0]
        velocity = pipe._unpack_latents_with_ids(out, image_ids)
    torch.testing.assert_close(patchified(predicted), velocity, rtol=1e-4, atol=1e-5)


def test_the_sigma_shift_counts_the_transformers_tokens():
    """musubi-tuner's flux2_shift: μ from 0.5 at 256 tokens to 1.15 at 4096, tokens one per 2×2 patch of the
    VAE's latents (1024 px → 4096 tokens → shift e^1.15)."""
    import math
    from types import SimpleNamespace

    from trainer.diffusion.engine_flux2 import Flux2Engine

    engine = Flux2Engine(SimpleNamespace(architecture=ARCH))
    half = torch.tensor([0.5])
    assert engine.sigmas(half, torch.zeros(1, 32, 128, 128)).item() == pytest.approx(
        math.exp(1.15) / (1 + math.exp(1.15)))
    assert engine.sigmas(half, torch.zeros(1, 32, 32, 32)).item() == pytest.approx(
        math.exp(0.5) / (1 + math.exp(0.5)))


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_klein, shapes_dataset) -> TrainedRun:
    """The LoRA run the tests below read: the captions' Qwen3 embeddings cached on disk."""
    targets = ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out",
               "to_qkv_mlp_proj"]
    # The tiny VAE's latents are small (std ~0.17, its batch-norm statistics the identity), so the velocity is
    # mostly noise and learns slowly: at 3e-3 the curve fell 1.36 → 1.35, at 2e-2 (seed 1, 30 steps) 1.36 → 1.10.
    config = lora_config(tiny_klein, shapes_dataset, ARCH, training={"learning_rate": 2e-2},
                         lora={"rank": 4, "alpha": 8.0, "target_modules": targets},
                         dataset={"cache_text": "disk"})
    return train(config, tmp_path_factory.mktemp("lora") / "run")


@pytest.mark.slow
def test_klein_lora_learns_and_both_its_files_reproduce_the_trained_adapter(lora_run, tiny_klein):
    rec = lora_run.recorder
    curve = [row["heldout_loss"] for row in RunFolder(lora_run.root).read_metrics() if "heldout_loss" in row]
    assert len(curve) == 4 and curve[-1] < 0.92 * curve[0], curve

    kohya_file, diffusers_file = (Path(p) for p in rec.of(Finished)[0].outputs)
    assert (kohya_file.name, diffusers_file.name) == ("tiny.safetensors", "pytorch_lora_weights.safetensors")
    with safe_open(diffusers_file, "pt") as handle:
        keys = set(handle.keys())
        assert json.loads(handle.metadata()["kamaal.config"])["model"]["architecture"] == ARCH
    assert {key.split(".")[0] for key in keys} == {"transformer"}
    with safe_open(kohya_file, "pt") as handle:
        modules = {key.rsplit(".", 2)[0] for key in handle.keys() if key.endswith(".weight")}
        assert handle.metadata()["ss_network_module"] == "networks.lora_flux_2"
    assert {"lora_unet_double_blocks_0_img_attn_qkv", "lora_unet_double_blocks_0_txt_attn_qkv",
            "lora_unet_double_blocks_0_img_attn_proj", "lora_unet_single_blocks_1_linear1"} <= modules

    final = rec.of(Sample)[-1]
    assert final.step == 30
    trained = np.asarray(Image.open(final.paths[0]).convert("RGB"), dtype=np.int16)
    pipe = pipeline(tiny_klein)
    plain = draw(pipe, final.prompts[0], final.seeds[0])
    assert np.abs(plain - trained).max() > 10  # the adapter really changed the picture
    for lora_file in (diffusers_file, kohya_file):
        pipe.load_lora_weights(str(lora_file.parent), weight_name=lora_file.name)
        assert np.abs(draw(pipe, final.prompts[0], final.seeds[0]) - trained).max() <= 2, lora_file.name
        pipe.unload_lora_weights()  # the base model again for the next file


@pytest.mark.parametrize("arch", [ARCH, "flux2dev", "flux2kleinedit", "flux2devedit"])
def test_the_kohya_file_fuses_q_k_v_into_bfls_layers_as_comfyui_applies_them(tmp_path, arch):
    """Adapters on every kind of Linear with random ups, module by module: a double block's q, k, v (image and
    text stream) are the three row blocks of ``img_attn.qkv`` / ``txt_attn.qkv``; ``linear1``/``linear2`` and the
    shared modulations are whole; the final norm's halves are swapped.  Applied as ComfyUI does (every
    ``lora_unet_`` name is a ``diffusion_model.`` weight with dots as underscores; W += alpha/rank · up @ down) to
    BFL's layout and read back by diffusers' own Flux.2 converter: the very weights the diffusers/peft file gives.
    Flux.2 dev the same way, its guidance embedder (``guidance_in``) too; the edit families' files are klein's and
    dev's."""
    from types import SimpleNamespace

    from diffusers.loaders.single_file_utils import convert_flux2_transformer_checkpoint_to_diffusers

    from trainer.families.flux2 import bfl_layout
    from trainer.lora_formats import add_lora_adapters, export_kohya_transformer_lora, export_transformer_lora
    from trainer.models.flux2_single import to_original
    from trainer.models.tiny import tiny_pipeline

    transformer = tiny_pipeline(arch).transformer
    base = to_original(transformer.state_dict(), dict(transformer.config))
    targets = ["to_q", "to_k", "to_v", "add_q_proj", "add_k_proj", "add_v_proj", "to_out.0", "to_add_out",
               "linear_in", "linear_out", "to_qkv_mlp_proj", "attn.to_out", "double_stream_modulation_img.linear",
               "single_stream_modulation.linear", "norm_out.linear", "proj_out", "x_embedder", "context_embedder",
               "guidance_embedder.linear_1"]
    targets = [t for t in targets if t != "attn.to_out"] + [f"single_transformer_blocks.{i}.attn.to_out"
                                                            for i in range(transformer.config.num_single_layers)]
    add_lora_adapters(transformer, [], SimpleNamespace(rank=2, alpha=3.0, dropout=0.0, target_modules=targets), False)
    generator = torch.Generator().manual_seed(1)
    for name, parameter in transformer.named_parameters():
        if "lora_B" in name:  # trained adapters: B is no longer zero
            parameter.data = torch.randn(parameter.shape, generator=generator)
    kohya_file = export_kohya_transformer_lora(tmp_path / "k.safetensors", arch, transformer, [], "k", {})
    diffusers_file = export_transformer_lora(tmp_path / "peft.safetensors", arch, transformer, [], {})
    kohya, reference = load_file(kohya_file), load_file(diffusers_file)

    def trained(module: str) -> torch.Tensor:
        return delta(reference, f"transformer.{module}.lora_A.weight", f"transformer.{module}.lora_B.weight")

    def kohya_delta(name: str) -> torch.Tensor:
        return delta(kohya, f"{name}.lora_down.weight", f"{name}.lora_up.weight", f"{name}.alpha")

    layout = bfl_layout(dict(transformer.config))
    modules = {key.rsplit(".", 2)[0] if key.endswith(".weight") else key.rsplit(".", 1)[0] for key in kohya}
    unet = {key.rsplit(".lora_", 1)[0].removeprefix("transformer.") for key in reference}
    assert modules == {"lora_unet_" + layout[m][0].replace(".", "_") for m in unet}
    assert {"lora_unet_double_blocks_0_img_attn_qkv", "lora_unet_double_blocks_0_txt_attn_qkv",
            "lora_unet_double_blocks_0_img_mlp_0", "lora_unet_single_blocks_1_linear1",
            "lora_unet_single_blocks_1_linear2", "lora_unet_double_stream_modulation_img_lin",
            "lora_unet_final_layer_adaLN_modulation_1", "lora_unet_img_in", "lora_unet_txt_in"} <= modules
    assert ("lora_unet_guidance_in_in_layer" in modules) == transformer.config.guidance_embeds  # dev's, not klein's
    for module in sorted(unet):
        original, offset, rows, total, swap = layout[module]
        fused = kohya_delta("lora_unet_" + original.replace(".", "_"))
        part = fused[offset: offset + rows] if rows else fused
        if swap:
            part = torch.cat(part.chunk(2, dim=0)[::-1])
        assert fused.shape[0] == (total or part.shape[0])
        torch.testing.assert_close(part, trained(module))

    key_map = {"lora_unet_" + key.removesuffix(".weight").replace(".", "_"): key for key in base
               if key.endswith(".weight")}
    applied = dict(base)
    for name in modules:
        key = key_map[name]  # no kohya module that ComfyUI would drop as "lora key not loaded"
        applied[key] = applied[key] + kohya_delta(name)
    converted = convert_flux2_transformer_checkpoint_to_diffusers(dict(applied))
    expected = {key.replace(".base_layer.", "."): value.detach().clone()
                for key, value in transformer.state_dict().items() if "lora_" not in key}
    for module in unet:
        expected[f"{module}.weight"] = expected[f"{module}.weight"] + trained(module)
    assert converted.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(converted[key], expected[key], msg=key)


def test_klein_layouts_convert_both_ways_and_agree_with_diffusers_own_converter():
    """diffusers → BFL → diffusers is exact on the tiny model; at the real klein 4B and 9B shapes and dev's (thin
    tensors of the true heights) diffusers' own Flux.2 converter reads what Kamaal writes back into every key and
    value."""
    import diffusers
    from diffusers.loaders.single_file_utils import convert_flux2_transformer_checkpoint_to_diffusers

    from trainer.models.flux2_single import to_diffusers, to_original
    from trainer.models.info import MODEL_CONFIGS
    from trainer.models.tiny import tiny_pipeline

    tiny = tiny_pipeline(ARCH).transformer
    state = tiny.state_dict()
    back = to_diffusers(to_original(state, dict(tiny.config)), dict(tiny.config))
    assert back.keys() == state.keys() and all(torch.equal(back[k], state[k]) for k in state)
    for folder, last_single in (("flux2-klein-4b", 19), ("flux2-klein-9b", 23), ("flux2-dev", 47)):
        config = diffusers.Flux2Transformer2DModel.load_config(MODEL_CONFIGS / folder / "transformer")
        with torch.device("meta"):
            real = diffusers.Flux2Transformer2DModel.from_config(config)
        generator = torch.Generator().manual_seed(0)
        thin = {key: torch.randn((*value.shape[:1], *([1] if value.dim() > 1 else [])), generator=generator)
                for key, value in real.state_dict().items()}
        original = to_original(thin, dict(real.config))
        assert f"single_blocks.{last_single}.linear1.weight" in original
        converted = convert_flux2_transformer_checkpoint_to_diffusers(dict(original))
        assert converted.keys() == thin.keys() and all(torch.equal(converted[k], thin[k]) for k in thin)


@pytest.mark.slow
def test_klein_resume_equals_uninterrupted(tmp_path, lora_run):
    """Captions' Qwen3 embeddings cached on disk: the resumed run reads them back and ends where the uninterrupted
    one does."""
    assert_resume_equals_uninterrupted(lora_run, tmp_path / "resumed")


@pytest.mark.slow
def test_klein_frozen_layers_move_only_the_chosen_block_and_write_the_bfl_file(tmp_path, tiny_klein, shapes_dataset):
    from diffusers.loaders.single_file_utils import convert_flux2_transformer_checkpoint_to_diffusers

    config = diffusion_config(tiny_klein, shapes_dataset, ARCH, mode="frozen",
                              frozen={"trainable": ["single_transformer_blocks.1"]},
                              training={"steps": 8, "learning_rate": 1e-3, "eval_every": 4},
                              sampling={"inference_steps": 2})
    code, rec = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK, rec.of(Failed)
    folder, single = (Path(p) for p in rec.of(Finished)[0].outputs)
    part = Path("transformer") / "diffusion_pytorch_model.safetensors"
    before, after = load_file(tiny_klein / part), load_file(folder / part)
    moved = {name for name in before if not torch.equal(before[name], after[name])}
    assert moved and all(name.startswith("single_transformer_blocks.1.") for name in moved)
    original = load_file(single)  # RUN_NAME.safetensors: the BFL transformer ComfyUI's Load Diffusion Model takes
    assert single.name == "tiny.safetensors" and "single_blocks.1.linear1.weight" in original
    back = convert_flux2_transformer_checkpoint_to_diffusers(dict(original))
    assert back.keys() == after.keys() and all(torch.equal(back[k], after[k]) for k in after)
    final = rec.of(Sample)[-1]
    trained = np.asarray(Image.open(final.paths[0]).convert("RGB"), dtype=np.int16)
    assert np.abs(draw(pipeline(folder), final.prompts[0], final.seeds[0], steps=2) - trained).max() <= 2


def test_previews_at_guidance_one_need_no_negative_prompt(tiny_klein, tmp_path):
    """The pipeline guides only above 1 (with the empty prompt, encoded by its own second call: the prompts encoded
    once carry it then — ``test_memory_options`` draws every family at 7.5); at 1 no negative side is encoded, and
    the previews are still the images from the text."""
    guidance = 1.0
    from trainer.diffusion.sampling import draw as draw_samples
    from trainer.diffusion.sampling import encode_sample_prompts

    pipe = pipeline(tiny_klein)
    encoded = encode_sample_prompts(pipe, ARCH, ["a red circle"], guidance, "cpu")
    assert set(encoded["a red circle"]) == {"prompt_embeds"}
    from_text, _, _ = draw_samples(pipe, ["a red circle"], [3], 64, 64, 2, guidance, tmp_path / "text")
    from_embeds, _, _ = draw_samples(pipe, ["a red circle"], [3], 64, 64, 2, guidance, tmp_path / "embeds",
                                     conditioning=encoded)
    assert np.array_equal(np.asarray(Image.open(from_text[0])), np.asarray(Image.open(from_embeds[0])))


@pytest.mark.slow
def test_klein_dreambooth_draws_its_missing_class_image_through_the_klein_pipeline(tmp_path, tiny_klein,
                                                                                   shapes_dataset):
    """DreamBooth with prior preservation: the one missing class image is drawn by ``Flux2KleinPipeline`` (whose
    first argument is a reference image, so the prompt goes by name), and every step has a class term."""
    from tests.diffusion.conftest import draw_shapes

    class_dir = draw_shapes(tmp_path / "class", 2, with_captions=False)
    config = diffusion_config(tiny_klein, shapes_dataset, ARCH, mode="dreambooth",
                              dreambooth={"instance_prompt": "a sks circle", "class_prompt": "a circle",
                                          "class_dir": str(class_dir), "num_class_images": 3},
                              training={"steps": 4, "eval_every": 2},
                              sampling={"inference_steps": 1, "guidance_scale": 1.0})
    code, rec = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK, rec.of(Failed)
    assert sorted(p.name for p in class_dir.iterdir()) == ["class-00000.png", "shape-00.png", "shape-01.png"]
    log = (tmp_path / "run" / "log.txt").read_text(encoding="utf-8")
    assert "Generating 1 class image(s) for 'a circle'" in log and "3 class images" in log
    assert Path(rec.of(Finished)[0].outputs[-1]).name == "pytorch_lora_weights.safetensors"
