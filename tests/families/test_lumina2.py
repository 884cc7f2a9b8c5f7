"""Lumina 2 through the registry, on a tiny model built from its real classes (``Lumina2Transformer2DModel`` with
grouped-query attention, Gemma 2, Flux's VAE shape): the engine's latents, prompts and prediction are the pipeline's;
LoRA learns, its diffusers file loads with ``Lumina2Pipeline.load_lora_weights`` and gives the image the trained
adapter gave, and its kohya file names the original (NextDiT) layers ComfyUI applies, module by module; a stopped and
resumed run ends where an uninterrupted one does; frozen-layer training moves only the chosen block."""

from __future__ import annotations

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


@pytest.fixture(scope="module")
def tiny_lumina(tiny_models) -> Path:
    return tiny_models["lumina2"]


def pipeline(model_dir: Path):
    import diffusers

    pipe = diffusers.Lumina2Pipeline.from_pretrained(model_dir, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def draw(pipe, prompt: str, seed: int, guidance: float = 7.5) -> np.ndarray:
    image = pipe(prompt, width=64, height=64, num_inference_steps=3, guidance_scale=guidance,
                 generator=torch.Generator("cpu").manual_seed(seed)).images[0]
    return np.asarray(image, dtype=np.int16)


def test_the_engine_reads_images_prompts_and_predictions_as_the_pipeline_does(tiny_lumina):
    """Latents shifted and scaled as the pipeline undoes before decoding; each prompt's real tokens (the system
    prompt's too) as ``encode_prompt`` gives them, padded again with a mask in a batch; the prediction is the
    velocity the pipeline's sampler steps with (the transformer's output negated, at time 1 − σ)."""
    from trainer.diffusion.components import Components
    from trainer.diffusion.engines import engine_for
    from trainer.diffusion.text import TextConditioning

    pipe = pipeline(tiny_lumina)
    parts = Components("lumina2", "flow_matching", [pipe.tokenizer], [pipe.text_encoder], pipe.vae, pipe.transformer,
                       pipe.scheduler)
    engine = engine_for(parts)
    pixels = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        latents = engine.image_latents(pixels)
        config = pipe.vae.config
        torch.testing.assert_close(latents / config.scaling_factor + config.shift_factor,
                                   pipe.vae.encode(pixels).latent_dist.mean)

    prompts = ["a red circle", "a small blue square on a green field"]
    with torch.no_grad():
        text = engine.encode_prompts([pipe.text_encoder], prompts, "cpu")
        hidden, mask, _, _ = pipe.encode_prompt(list(prompts), do_classifier_free_guidance=False,
                                                device=torch.device("cpu"))
    assert prompts == ["a red circle", "a small blue square on a green field"]  # the caller's list is untouched
    assert hidden.shape[1] == 256 and text.mask is not None  # the pipeline pads to 256; the engine keeps real tokens
    lengths = mask.sum(dim=1).tolist()
    assert [len(row) for row in text.sequences()] == lengths and lengths[0] < lengths[1]
    assert all(torch.equal(row, full[:n]) for row, full, n in zip(text.sequences(), hidden, lengths, strict=True))
    alone = [text.select(slice(i, i + 1)) for i in range(2)]  # a cache keeps each caption alone, unpadded
    assert alone[0].mask is None and alone[0].hidden.shape[1] == lengths[0]
    joined = TextConditioning.cat(alone)
    assert torch.equal(joined.hidden, text.hidden) and torch.equal(joined.mask, text.mask)

    noisy = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    sigma = torch.tensor([0.25, 0.8])
    with torch.no_grad():
        predicted = engine.predict(pipe.transformer, noisy, sigma, text)
        # As the pipeline's loop: its padded prompts and mask, time 1 − t / 1000, the output negated.
        out = pipe.transformer(hidden_states=noisy, timestep=1 - sigma * 1000 / 1000, encoder_hidden_states=hidden,
                               encoder_attention_mask=mask, return_dict=False)[0]
    torch.testing.assert_close(predicted, -out, rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_lumina, varied_captions) -> TrainedRun:
    """The LoRA run the tests below read: captions of different lengths in one batch (padded, masked), their Gemma 2
    embeddings cached on disk each at its own length."""
    config = lora_config(tiny_lumina, varied_captions, "lumina2",
                         dataset={"cache_text": "disk"})
    return train(config, tmp_path_factory.mktemp("lora") / "run")


@pytest.mark.slow
def test_lumina2_lora_learns_and_both_files_reproduce_the_trained_adapter(lora_run, tiny_lumina):
    """The diffusers file through ``Lumina2Pipeline.load_lora_weights`` draws the trained image; the kohya file
    (``lora_unet_`` + the original layer, q/k/v fused into ``attention.qkv``) holds every trained module's delta in
    its layer's rows.  (diffusers' Lumina 2 converter hard-codes the real widths: the layout is checked against it
    at the real shape below.)"""
    from trainer.families.lumina2 import original_layout
    from trainer.models.lumina2_layout import to_original

    rec = lora_run.recorder
    curve = [row["heldout_loss"] for row in RunFolder(lora_run.root).read_metrics() if "heldout_loss" in row]
    # Measured (seed 1, 30 steps, captions of three lengths): 1.34 → 1.12 (0.83×).
    assert len(curve) == 4 and curve[-1] < 0.92 * curve[0], curve

    kohya_file, lora_file = (Path(p) for p in rec.of(Finished)[0].outputs)
    assert lora_file.name == "pytorch_lora_weights.safetensors" and kohya_file.name == "tiny.safetensors"
    reference = load_file(lora_file)
    assert {key.split(".")[0] for key in reference} == {"transformer"}
    trained_modules = {key.rsplit(".lora_", 1)[0].removeprefix("transformer.") for key in reference}
    assert {"layers.0.attn.to_q", "noise_refiner.0.attn.to_k", "context_refiner.0.attn.to_out.0"} <= trained_modules

    final = rec.of(Sample)[-1]
    assert final.step == 30
    trained = np.asarray(Image.open(final.paths[0]).convert("RGB"), dtype=np.int16)
    pipe = pipeline(tiny_lumina)
    plain = draw(pipe, final.prompts[0], final.seeds[0])
    pipe.load_lora_weights(str(lora_file.parent), weight_name=lora_file.name)
    loaded = draw(pipe, final.prompts[0], final.seeds[0])
    assert np.abs(loaded - trained).max() <= 2
    assert np.abs(plain - trained).max() > 10  # the adapter really changed the picture

    # The kohya file, module by module: each trained module's delta sits in its original layer's rows (q, k, v
    # stacked in attention.qkv), and every name is one ComfyUI maps (lora_unet_ + a diffusion_model weight).
    kohya = load_file(kohya_file)
    with safe_open(kohya_file, "pt") as handle:
        assert handle.metadata()["ss_network_module"] == "networks.lora_lumina"
    modules = {key.rsplit(".", 2)[0] if key.endswith(".weight") else key.rsplit(".", 1)[0] for key in kohya}
    assert {"lora_unet_layers_0_attention_qkv", "lora_unet_layers_1_attention_out",
            "lora_unet_noise_refiner_0_attention_qkv", "lora_unet_context_refiner_0_attention_qkv"} <= modules
    transformer = pipeline(tiny_lumina).transformer  # without the adapters just loaded
    layout = original_layout(dict(transformer.config))
    original = to_original(transformer.state_dict(), dict(transformer.config))
    assert modules <= {"lora_unet_" + key.removesuffix(".weight").replace(".", "_") for key in original}
    for module in trained_modules:
        target, offset, rows, _, _ = layout[module]
        name = "lora_unet_" + target.replace(".", "_")
        down, up = kohya[f"{name}.lora_down.weight"], kohya[f"{name}.lora_up.weight"]
        fused = float(kohya[f"{name}.alpha"]) / down.shape[0] * (up @ down)
        assert fused.shape == original[f"{target}.weight"].shape
        part = fused[offset: offset + rows] if rows else fused
        torch.testing.assert_close(part, reference[f"transformer.{module}.lora_B.weight"]
                                   @ reference[f"transformer.{module}.lora_A.weight"])


def test_the_original_layout_is_the_one_diffusers_converts_from_at_the_real_shape():
    """The shipped real-size folder counts the registry's parameters (transformer 2.61 B, Gemma-2-2B without its LM
    head, Flux's VAE).  At that shape (26 layers, 2304 wide, q 2304 rows, k and v 768 each), the weights written in
    the original layout by ``lumina2_layout.to_original`` (a frozen run's single file, the LoRA's layer names) are
    read back by diffusers' own ``convert_lumina2_to_diffusers`` into
    every key, shape and value (thin tensors of the true heights keep it small): the layout kohya's and ComfyUI's
    Lumina 2 LoRA names refer to."""
    import diffusers
    import transformers
    from diffusers.loaders.single_file_utils import convert_lumina2_to_diffusers

    from trainer.families import family
    from trainer.models.info import MODEL_CONFIGS
    from trainer.models.lumina2_layout import to_original

    folder = MODEL_CONFIGS / family("lumina2").config_folders["flow_matching"]
    with torch.device("meta"):
        real = diffusers.Lumina2Transformer2DModel.from_config(
            diffusers.Lumina2Transformer2DModel.load_config(folder / "transformer"))
        gemma = transformers.Gemma2Model(transformers.Gemma2Config.from_pretrained(folder / "text_encoder"))
        vae = diffusers.AutoencoderKL.from_config(diffusers.AutoencoderKL.load_config(folder / "vae"))
    counts = {name: sum(p.numel() for p in module.parameters())
              for name, module in (("transformer", real), ("text_encoder", gemma), ("vae", vae))}
    assert counts == family("lumina2").memory.reference_parameters
    generator = torch.Generator().manual_seed(0)
    thin = {key: torch.randn((*value.shape[:1], *([1] if value.dim() > 1 else [])), generator=generator)
            for key, value in real.state_dict().items()}
    original = to_original(thin, dict(real.config))
    assert original["layers.25.attention.qkv.weight"].shape[0] == 2304 + 2 * 768
    assert "context_refiner.1.attention_norm1.weight" in original and "final_layer.linear.weight" in original
    converted = convert_lumina2_to_diffusers(dict(original))
    assert converted.keys() == thin.keys()
    assert all(torch.equal(converted[key], thin[key]) for key in thin)


@pytest.mark.slow
def test_lumina2_resume_equals_uninterrupted(tmp_path, lora_run):
    """Captions of different lengths in one batch (padded, masked), their Gemma 2 embeddings cached on disk each at
    its own length: the resumed run reads them back and ends where the uninterrupted one does."""
    assert_resume_equals_uninterrupted(lora_run, tmp_path / "resumed")


@pytest.mark.slow
def test_lumina2_frozen_layers_move_only_the_chosen_block(tmp_path, tiny_lumina, shapes_dataset):
    """Only the named block moves; the diffusers folder draws the run's final sample, and RUN_NAME.safetensors holds
    the same transformer in the original layout (ComfyUI's Load Diffusion Model)."""
    from trainer.models import inspect_model
    from trainer.models.lumina2_layout import to_diffusers

    config = diffusion_config(tiny_lumina, shapes_dataset, "lumina2", mode="frozen",
                              frozen={"trainable": ["layers.1"]},
                              training={"steps": 4, "learning_rate": 1e-3, "eval_every": 2},
                              sampling={"inference_steps": 2, "guidance_scale": 1.0})
    code, rec = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK, rec.of(Failed)
    folder, single = (Path(p) for p in rec.of(Finished)[0].outputs)
    part = Path("transformer") / "diffusion_pytorch_model.safetensors"
    before, after = load_file(tiny_lumina / part), load_file(folder / part)
    moved = {name for name in before if not torch.equal(before[name], after[name])}
    assert moved and all(name.startswith("layers.1.") for name in moved)
    original = load_file(single)
    assert single.name == "tiny.safetensors" and "layers.1.attention.qkv.weight" in original
    back = to_diffusers(original, dict(pipeline(folder).transformer.config))
    assert back.keys() == after.keys() and all(torch.equal(back[k], after[k]) for k in after)
    # Taken for Lumina 2, not for Z-Image, whose NextDiT keys it shares (less the pad tokens).
    assert inspect_model(single).architecture == "lumina2"
    final = rec.of(Sample)[-1]
    trained = np.asarray(Image.open(final.paths[0]).convert("RGB"), dtype=np.int16)
    image = pipeline(folder)(final.prompts[0], width=64, height=64, num_inference_steps=2, guidance_scale=1.0,
                             generator=torch.Generator("cpu").manual_seed(final.seeds[0])).images[0]
    assert np.abs(np.asarray(image, dtype=np.int16) - trained).max() <= 2


@pytest.mark.slow
def test_lumina2_dreambooth_draws_its_class_images_through_lumina2pipeline_and_uses_the_prior(
        tmp_path, tiny_lumina, shapes_dataset, monkeypatch):
    """DreamBooth with prior preservation: the missing class image is the base model's own picture of the class
    prompt (``Lumina2Pipeline``, the seed the generator names), and every step adds the class term."""
    from tests.diffusion.conftest import draw_shapes
    from trainer.jobs.diffusion import DiffusionJob

    class_dir = draw_shapes(tmp_path / "class", 2, with_captions=False)
    seen: list[bool] = []
    original = DiffusionJob._batch_loss

    def spy(self, examples, is_class, indices):
        seen.append(is_class)
        return original(self, examples, is_class, indices)

    monkeypatch.setattr(DiffusionJob, "_batch_loss", spy)
    config = diffusion_config(tiny_lumina, shapes_dataset, "lumina2", mode="dreambooth",
                              dreambooth={"instance_prompt": "a sks circle", "class_prompt": "a circle",
                                          "class_dir": str(class_dir), "num_class_images": 3,
                                          "prior_loss_weight": 1.0},
                              training={"steps": 2, "eval_every": 2},
                              sampling={"inference_steps": 2, "guidance_scale": 1.0})
    code, rec = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK, rec.of(Failed)
    assert seen.count(True) == 2 and seen.count(False) == 2
    generated = np.asarray(Image.open(class_dir / "class-00000.png").convert("RGB"), dtype=np.int16)
    expected = pipeline(tiny_lumina)("a circle", width=64, height=64, num_inference_steps=2, guidance_scale=1.0,
                                     generator=torch.Generator("cpu").manual_seed(1 * 100_003)).images[0]
    assert np.abs(np.asarray(expected, dtype=np.int16) - generated).max() <= 2


def test_what_lumina2_cannot_do_is_refused_by_name(tmp_path, tiny_lumina):
    """Its Gemma 2 encoder takes no LoRA (no loader applies one); fusing a LoRA reaches the LoRA's own checks."""
    from trainer.config import ConfigError, config_from_dict
    from trainer.errors import InputError
    from trainer.merge.fuse import fuse_lora

    with pytest.raises(ConfigError, match=r"lora\.train_text_encoder: Lumina 2's Gemma 2 text encoder takes no LoRA"):
        config_from_dict({"mode": "lora", "model": {"architecture": "lumina2"}, "lora": {"train_text_encoder": True}})
    # Merges of this family are available (tests/merge/test_family_models_*): fusing gets as far as the LoRA.
    with pytest.raises(InputError, match=r"LoRA: .*missing\.safetensors does not exist"):
        fuse_lora(tiny_lumina, [(tmp_path / "missing.safetensors", 1.0)], output_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()
