"""Qwen-Image through the registry, on a tiny model built from its real classes (``QwenImageTransformer2DModel``,
``AutoencoderKLQwenImage``, Qwen2.5-VL): the engine's latents, prompts and prediction are the pipeline's; LoRA
learns and its diffusers and kohya/musubi files load with ``QwenImagePipeline.load_lora_weights`` and give the
image the trained adapter gave; a stopped and resumed run ends where an uninterrupted one does; previews guide as the
pipeline does (``true_cfg_scale`` with a negative prompt) whether the prompts come as text or encoded once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from tests.diffusion.conftest import diffusion_config
from tests.families.harness import TrainedRun, assert_resume_equals_uninterrupted, lora_config, train
from tests.trainer.helpers import run_in_process
from trainer.protocol import EXIT_OK, Failed, Finished, Sample
from trainer.runfolder import RunFolder


@pytest.fixture(scope="module")
def tiny_qwen(tiny_models) -> Path:
    return tiny_models["qwenimage"]


def pipeline(model_dir: Path):
    import diffusers

    pipe = diffusers.QwenImagePipeline.from_pretrained(model_dir, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def draw(pipe, prompt: str, seed: int, guidance: float = 3.0) -> np.ndarray:
    image = pipe(prompt, negative_prompt=" ", true_cfg_scale=guidance, width=64, height=64, num_inference_steps=3,
                 generator=torch.Generator("cpu").manual_seed(seed)).images[0]
    return np.asarray(image, dtype=np.int16)


def test_the_engine_reads_images_prompts_and_predictions_as_the_pipeline_does(tiny_qwen):
    """Latents normalised by the VAE's per-channel mean and std (the pipeline undoes exactly that before decoding);
    each prompt's real tokens, as ``encode_prompt`` gives them; the prediction is the transformer's on the latents
    packed as the pipeline packs them, at time σ."""
    from trainer.diffusion.components import Components
    from trainer.diffusion.engines import engine_for

    pipe = pipeline(tiny_qwen)
    parts = Components("qwenimage", "flow_matching", [pipe.tokenizer], [pipe.text_encoder], pipe.vae, pipe.transformer,
                       pipe.scheduler)
    engine = engine_for(parts)
    pixels = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        latents = engine.image_latents(pixels)
        config = pipe.vae.config
        undone = latents.unsqueeze(2) * torch.tensor(config.latents_std).view(1, -1, 1, 1, 1) + torch.tensor(
            config.latents_mean).view(1, -1, 1, 1, 1)
        torch.testing.assert_close(undone, pipe.vae.encode(pixels.unsqueeze(2)).latent_dist.mean)
    assert latents.shape == (1, 4, 8, 8)

    prompts = ["a red circle", "a small blue square on a green field"]
    with torch.no_grad():
        text = engine.encode_prompts([pipe.text_encoder], prompts, "cpu")
        hidden, mask = pipe.encode_prompt(list(prompts), device=torch.device("cpu"))
    assert torch.equal(text.hidden, hidden) and torch.equal(text.mask, mask.bool())
    noisy = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    sigma = torch.tensor([0.25, 0.8])
    with torch.no_grad():
        predicted = engine.predict(pipe.transformer, noisy, sigma, text)
        packed = pipe._pack_latents(noisy.unsqueeze(1), 2, 4, 8, 8)  # as prepare_latents: (batch, 1 frame, c, h, w)
        out = pipe.transformer(hidden_states=packed, timestep=sigma * 1000 / 1000, encoder_hidden_states=hidden,
                               encoder_hidden_states_mask=mask, img_shapes=[[(1, 4, 4)]] * 2, return_dict=False)[0]
        expected = pipe._unpack_latents(out, 64, 64, pipe.vae_scale_factor).squeeze(2)
    torch.testing.assert_close(predicted, expected)


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_qwen, varied_captions) -> TrainedRun:
    """The LoRA run the tests below read: captions of different lengths in one batch (padded, masked), their Qwen2.5-VL
    embeddings cached on disk each at its own length; guided previews."""
    config = lora_config(tiny_qwen, varied_captions, "qwenimage", sampling={"guidance_scale": 3.0},
                         dataset={"cache_text": "disk"})
    return train(config, tmp_path_factory.mktemp("lora") / "run")


@pytest.mark.slow
def test_qwenimage_lora_learns_and_its_file_reproduces_the_trained_adapter(lora_run, tiny_qwen):
    rec = lora_run.recorder
    curve = [row["heldout_loss"] for row in RunFolder(lora_run.root).read_metrics() if "heldout_loss" in row]
    # Measured (seed 1, 30 steps, captions of three lengths): 1.44 → 1.22 (0.85×).
    assert len(curve) == 4 and curve[-1] < 0.92 * curve[0], curve

    kohya_file, lora_file = (Path(p) for p in rec.of(Finished)[0].outputs)
    keys = set(load_file(lora_file))
    assert {key.split(".")[0] for key in keys} == {"transformer"}
    assert any(".attn.to_q." in key for key in keys) and any(".attn.to_out.0." in key for key in keys)

    final = rec.of(Sample)[-1]
    trained = np.asarray(Image.open(final.paths[0]).convert("RGB"), dtype=np.int16)
    pipe = pipeline(tiny_qwen)
    plain = draw(pipe, final.prompts[0], final.seeds[0])
    pipe.load_lora_weights(str(lora_file.parent), weight_name=lora_file.name)
    loaded = draw(pipe, final.prompts[0], final.seeds[0])
    assert np.abs(loaded - trained).max() <= 2
    assert np.abs(plain - trained).max() > 10  # the adapter really changed the picture
    # RUN_NAME.safetensors, musubi-tuner's names (lora_unet_transformer_blocks_0_attn_to_q), through diffusers' reader
    assert kohya_file.name == "tiny.safetensors" and all(k.startswith("lora_unet_") for k in load_file(kohya_file))
    pipe.unload_lora_weights()  # the base model again: no second load of the pipeline
    pipe.load_lora_weights(str(kohya_file.parent), weight_name=kohya_file.name)
    assert np.abs(draw(pipe, final.prompts[0], final.seeds[0]) - trained).max() <= 2


@pytest.mark.slow
def test_qwenimage_resume_equals_uninterrupted_and_frozen_moves_one_block(
        lora_run, tmp_path, tiny_qwen, shapes_dataset):
    """Captions of different lengths cached on disk; then a frozen-layer run moves only the block it names."""
    assert_resume_equals_uninterrupted(lora_run, tmp_path / "resumed")

    config = diffusion_config(tiny_qwen, shapes_dataset, "qwenimage", mode="frozen",
                              frozen={"trainable": ["transformer_blocks.1"]},
                              training={"steps": 4, "learning_rate": 1e-3, "eval_every": 2},
                              sampling={"inference_steps": 2})
    code, rec = run_in_process(config, tmp_path / "frozen")
    assert code == EXIT_OK, rec.of(Failed)
    folder, single = (Path(p) for p in rec.of(Finished)[0].outputs)
    part = Path("transformer") / "diffusion_pytorch_model.safetensors"
    before, after = load_file(tiny_qwen / part), load_file(folder / part)
    moved = {name for name in before if not torch.equal(before[name], after[name])}
    assert moved and all(name.startswith("transformer_blocks.1.") for name in moved)
    # RUN_NAME.safetensors: the transformer as ComfyUI's Load Diffusion Model takes it, read here by diffusers' own
    # single-file loader for Qwen-Image (whose key mapping is ComfyUI's names as they are)
    import diffusers

    assert single.name == "tiny.safetensors"
    read = diffusers.QwenImageTransformer2DModel.from_single_file(
        str(single), config=str(folder), subfolder="transformer", local_files_only=True).state_dict()
    assert read.keys() == after.keys() and all(torch.equal(read[k], after[k]) for k in after)


@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_previews_from_prompts_encoded_once_guide_as_the_pipeline_does(guidance, tiny_qwen, tmp_path):
    """Qwen-Image guides through ``true_cfg_scale`` and only with a negative prompt, which its ``encode_prompt``
    encodes apart: the previews from text and from prompts encoded once are the same image, guided or not."""
    from trainer.diffusion.sampling import draw as draw_samples
    from trainer.diffusion.sampling import encode_sample_prompts

    pipe = pipeline(tiny_qwen)
    encoded = encode_sample_prompts(pipe, "qwenimage", ["a red circle"], guidance, "cpu")
    assert ("negative_prompt_embeds" in encoded["a red circle"]) == (guidance > 1)
    from_text, _, _ = draw_samples(pipe, ["a red circle"], [3], 64, 64, 2, guidance, tmp_path / "text")
    from_embeds, _, _ = draw_samples(pipe, ["a red circle"], [3], 64, 64, 2, guidance, tmp_path / "embeds",
                                     conditioning=encoded)
    image = np.asarray(Image.open(from_text[0]))
    assert np.array_equal(image, np.asarray(Image.open(from_embeds[0])))
    if guidance > 1:  # it did guide: the unguided picture differs
        plain = pipe("a red circle", width=64, height=64, num_inference_steps=2,
                     generator=torch.Generator("cpu").manual_seed(3)).images[0]
        assert not np.array_equal(image, np.asarray(plain))


def test_what_qwenimage_cannot_do_is_refused_by_name(tmp_path, tiny_qwen):
    from trainer.config import ConfigError, config_from_dict
    from trainer.errors import InputError
    from trainer.merge.fuse import fuse_lora

    with pytest.raises(ConfigError, match=r"lora\.train_text_encoder: Qwen-Image's Qwen2\.5-VL text encoder takes no"):
        config_from_dict({"mode": "lora", "model": {"architecture": "qwenimage"}, "lora": {"train_text_encoder": True}})
    with pytest.raises(ConfigError, match=r"model\.text_encoder_quantization: Flux\.1's text encoders keep their "
                                          r"precision \(choose none; quantized encoders: Qwen-Image\b"):
        config_from_dict({"mode": "lora", "model": {"architecture": "flux", "text_encoder_quantization": "fp8"}})
    assert config_from_dict({"mode": "lora", "model": {"architecture": "qwenimage", "text_encoder_quantization": "nf4"}
                             }).model.text_encoder_quantization == "nf4"
    # Merges of this family are available (tests/merge/test_family_models_*): fusing gets as far as the LoRA.
    with pytest.raises(InputError, match=r"LoRA: .*missing\.safetensors does not exist"):
        fuse_lora(tiny_qwen, [(tmp_path / "missing.safetensors", 1.0)], output_dir=tmp_path / "out")


def wide_text_encoder(pipe, seed: int = 0):
    """The tiny Qwen2.5-VL 64 wide (the layers bitsandbytes and torchao see in real models are multiples of 64)."""
    import transformers

    config = pipe.text_encoder.config.to_dict()
    config["text_config"].update(hidden_size=64, intermediate_size=128, num_attention_heads=8)
    config["vision_config"].update(hidden_size=64, intermediate_size=128, out_hidden_size=64)
    torch.manual_seed(seed)
    return transformers.Qwen2_5_VLForConditionalGeneration(transformers.Qwen2_5_VLConfig(**config)).eval()


@pytest.mark.parametrize("kind", ["fp8", "nf4"])
def test_a_quantized_text_encoder_stores_its_layers_in_fewer_bytes_and_encodes_nearly_what_it_did(kind, tiny_qwen):
    """``model.text_encoder_quantization`` reaches Qwen2.5-VL's language model (and vision tower) through the paths the
    family declares, and the prompts it encodes stay close to the full-precision ones."""
    from trainer.families import family
    from trainer.models.quantize import quantize_denoiser, quantized_linears, weight_bytes

    pipe = pipeline(tiny_qwen)
    encoder = wide_text_encoder(pipe)
    (spec,) = family("qwenimage").text_encoders
    layers = sum(linear.weight.numel() for _, linear in quantized_linears(encoder, spec.blocks))
    language = sum(linear.weight.numel() for _, linear in quantized_linears(encoder, spec.blocks[:1]))
    assert 0 < language < layers  # both containers are found
    ids = pipe.tokenizer(["a red circle on a white page"], return_tensors="pt").input_ids
    with torch.no_grad():
        reference = encoder(input_ids=ids, output_hidden_states=True).hidden_states[-1]
    before = weight_bytes(encoder)
    assert quantize_denoiser(encoder, spec.blocks, kind, "cpu", torch.float32) == layers
    assert before - weight_bytes(encoder) > 0.5 * layers * 2  # fp32 → at most 1 byte per weight
    with torch.no_grad():
        hidden = encoder(input_ids=ids, output_hidden_states=True).hidden_states[-1]
    error = ((hidden - reference).norm() / reference.norm()).item()
    assert error < {"nf4": 0.2, "fp8": 0.1}[kind], error


@pytest.mark.slow
def test_a_lora_run_encodes_its_captions_with_the_quantized_text_encoder(tmp_path, tiny_qwen, shapes_dataset):
    """The 16 and 12 GB presets' way: Qwen2.5-VL in fp8 encodes every caption, then leaves for the computer's memory;
    the run trains, and its log says what was quantized."""
    import shutil

    import diffusers

    model = shutil.copytree(tiny_qwen, tmp_path / "tiny-qwenimage-64")
    pipe = pipeline(tiny_qwen)
    wide_text_encoder(pipe).save_pretrained(model / "text_encoder")
    config = {**dict(pipe.transformer.config), "joint_attention_dim": 64}
    diffusers.QwenImageTransformer2DModel.from_config(config).save_pretrained(model / "transformer")
    run_config = diffusion_config(model, shapes_dataset, "qwenimage",
                                  model={"architecture": "qwenimage", "path": str(model),
                                         "text_encoder_quantization": "fp8", "text_encoder_device": "cpu"},
                                  training={"steps": 2, "eval_every": 2}, sampling={"inference_steps": 1},
                                  dataset={"cache_text": "disk"})
    code, rec = run_in_process(run_config, tmp_path / "run")
    assert code == EXIT_OK, rec.of(Failed)
    log = RunFolder(tmp_path / "run").log_path.read_text(encoding="utf-8")
    # 3 language-model layers × 7 Linears and 2 vision blocks × 5, all 64 wide or more
    assert "Qwen2.5-VL text encoder: 31 Linear layers (0.2 M weights) in fp8 (torchao)" in log
    losses = [row["loss"] for row in RunFolder(tmp_path / "run").read_metrics() if row.get("loss") is not None]
    assert len(losses) == 2 and all(np.isfinite(losses))
