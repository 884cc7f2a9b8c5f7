"""Qwen-Image 2.1 through the registry, on a tiny model built from its real classes (``QwenImage21Transformer2DModel``,
``AutoencoderKLQwenImage21``, Qwen3-VL read through the text half of its processor): the engine's latents, prompts
and prediction are the pipeline's; LoRA learns and its diffusers and ComfyUI-layout files give the image the trained
adapter gave; a stopped and resumed run ends where an uninterrupted one does; frozen-layer training moves only the
chosen block; a folder that names the real Qwen3-VL processor loads offline without torchvision."""

from __future__ import annotations

import json
import shutil
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
def tiny_qwen21(tiny_models) -> Path:
    return tiny_models["qwenimage21"]


def pipeline(model_dir: Path):
    import diffusers

    from trainer.models.qwen_vl_text import pipeline_parts

    pipe = diffusers.QwenImage21Pipeline.from_pretrained(model_dir, local_files_only=True,
                                                         **pipeline_parts(model_dir))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def draw(pipe, prompt: str, seed: int) -> np.ndarray:
    image = pipe(prompt, width=64, height=64, num_inference_steps=3,
                 generator=torch.Generator("cpu").manual_seed(seed)).images[0]
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_the_engine_reads_images_prompts_and_predictions_as_the_pipeline_does(tiny_qwen21):
    """Latents of the RGBA VAE (an RGB image made opaque) normalised per channel, as the pipeline undoes before
    decoding; each prompt's real tokens as ``encode_prompt`` gives them; the prediction is the transformer's on the
    latents packed as the pipeline packs them, with its image slots, at time σ, the target's tokens of its output."""
    from trainer.diffusion.components import Components
    from trainer.diffusion.engines import engine_for

    pipe = pipeline(tiny_qwen21)
    parts = Components("qwenimage21", "flow_matching", [pipe.processor], [pipe.text_encoder], pipe.vae,
                       pipe.transformer, pipe.scheduler)
    engine = engine_for(parts)
    pixels = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    rgba = Image.fromarray(((pixels[0].permute(1, 2, 0) + 1) * 127.5).round().byte().numpy()).convert("RGBA")
    with torch.no_grad():
        latents = engine.image_latents(pipe.image_processor.preprocess(rgba, 64, 64)[:, :3])
        expected = pipe._encode_vae_image(pipe.image_processor.preprocess(rgba, 64, 64).unsqueeze(2), None)
    assert latents.shape == (1, 8, 4, 4)
    torch.testing.assert_close(latents, expected.squeeze(2))

    prompts = ["a red circle", "a small blue square on a green field"]
    with torch.no_grad():
        text = engine.encode_prompts([pipe.text_encoder], prompts, "cpu")
        hidden, mask, slots = pipe.encode_prompt(list(prompts), device=torch.device("cpu"))
    assert torch.equal(text.hidden, hidden) and torch.equal(text.mask, mask.bool()) and not slots.any()
    noisy = torch.randn(2, 8, 4, 4, generator=torch.Generator().manual_seed(1))
    sigma = torch.tensor([0.25, 0.8])
    with torch.no_grad():
        predicted = engine.predict(pipe.transformer, noisy, sigma, text)
        packed = pipe._pack_latents(noisy, 2, 8, 4, 4)
        img_mask = torch.cat([slots, slots.new_ones(2, 16 // 4)], dim=1)  # as __call__'s append_target_slots
        out = pipe.transformer(hidden_states=packed, timestep=sigma * 1000 / 1000, encoder_hidden_states=hidden,
                               encoder_hidden_states_mask=mask, img_shapes=[[(1, 4, 4)]] * 2, img_mask=img_mask,
                               return_dict=False)[0][:, -16:]
    torch.testing.assert_close(predicted, pipe._unpack_latents(out, 64, 64, pipe.vae_scale_factor).squeeze(2))
    # The shift counts every latent pixel as a token (4096 at 1024 px: the scheduler's max_shift).
    assert abs(engine.shift((1, 64, 64, 64)) - np.exp(1.15)) < 1e-6


def lora_delta(tensors: dict, down: str, up: str, alpha: str | None = None) -> torch.Tensor:
    scale = float(tensors[alpha]) / tensors[down].shape[0] if alpha else 1.0
    return (tensors[up].float() @ tensors[down].float()) * scale


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_qwen21, varied_captions) -> TrainedRun:
    """The LoRA run the tests below read: captions of different lengths in one batch (padded, masked), their Qwen3-VL
    embeddings cached on disk each at its own length."""
    # 1e-2: the blocks' tanh-gated residuals start small, so the tiny adapters move slowly at the suite's 3e-3
    # (measured, seed 1, 30 steps: 1.46 → 1.33 at 3e-3; 1.46 → 1.07 (0.73×) at 1e-2; 1.46 → 0.98 (0.67×) at 1e-2 on
    # captions of three lengths, this run).
    targets = ["to_q", "to_k", "to_v", "to_out.0", "img_mlp.gate_layer", "img_mlp.proj", "img_mlp.out"]
    config = lora_config(tiny_qwen21, varied_captions, "qwenimage21", training={"learning_rate": 1e-2},
                         lora={"rank": 4, "alpha": 8.0, "target_modules": targets},
                         sampling={"guidance_scale": 1.0},
                         dataset={"cache_text": "disk"})
    return train(config, tmp_path_factory.mktemp("lora") / "run")


@pytest.mark.slow
def test_qwenimage21_lora_learns_and_its_files_reproduce_the_trained_adapter(lora_run, tiny_qwen21):
    """Attention and SwiGLU targets: the diffusers file through ``load_lora_weights``, and the kohya file module by
    module (``img_mlp.gate_up`` = the gate's rows over the up projection's) and applied as ComfyUI applies it — each
    ``lora_unet_`` name onto the weight of ComfyUI's layout it spells, the model then read back by diffusers' own
    single-file converter for 2.1 — give the image the trained adapter gave."""
    import diffusers

    from trainer.models.qwenimage21_single import to_comfy

    rec = lora_run.recorder
    curve = [row["heldout_loss"] for row in RunFolder(lora_run.root).read_metrics() if "heldout_loss" in row]
    assert len(curve) == 4 and curve[-1] < 0.92 * curve[0], curve

    kohya_file, lora_file = (Path(p) for p in rec.of(Finished)[0].outputs)
    reference = load_file(lora_file)
    assert {key.split(".")[0] for key in reference} == {"transformer"}
    final = rec.of(Sample)[-1]
    trained = np.asarray(Image.open(final.paths[0]).convert("RGB"), dtype=np.int16)
    pipe = pipeline(tiny_qwen21)
    plain = draw(pipe, final.prompts[0], final.seeds[0])
    pipe.load_lora_weights(str(lora_file.parent), weight_name=lora_file.name)
    assert np.abs(draw(pipe, final.prompts[0], final.seeds[0]) - trained).max() <= 2
    assert np.abs(plain - trained).max() > 10  # the adapter really changed the picture

    kohya = load_file(kohya_file)
    assert kohya_file.name == "tiny.safetensors" and all(k.startswith("lora_unet_") for k in kohya)
    modules = {key.split(".")[0] for key in kohya}
    trained_modules = {key.removeprefix("transformer.").rsplit(".lora_", 1)[0] for key in reference}
    for module in trained_modules:
        update = lora_delta(reference, f"transformer.{module}.lora_A.weight", f"transformer.{module}.lora_B.weight")
        fused = module.endswith(("img_mlp.gate_layer", "img_mlp.proj"))
        name = "lora_unet_" + (module.rsplit(".", 1)[0] + ".gate_up" if fused else module).replace(".", "_")
        written = lora_delta(kohya, f"{name}.lora_down.weight", f"{name}.lora_up.weight", f"{name}.alpha")
        if fused:
            rows = update.shape[0]
            written = written[:rows] if module.endswith("gate_layer") else written[rows:]
        torch.testing.assert_close(written, update)
    assert len(modules) == len(trained_modules) - len(pipe.transformer.transformer_blocks)  # gate + up: one

    base = pipeline(tiny_qwen21)
    comfy = {f"diffusion_model.{k}": v for k, v in to_comfy(base.transformer.state_dict()).items()}
    spelled = {"lora_unet_" + key.removeprefix("diffusion_model.").removesuffix(".weight").replace(".", "_"): key
               for key in comfy if key.endswith(".weight")}  # comfy/lora.py's lora_unet_ key map
    for name in modules:
        target = spelled[name]  # every module of the file is one ComfyUI knows
        comfy[target] = comfy[target] + lora_delta(kohya, f"{name}.lora_down.weight", f"{name}.lora_up.weight",
                                                   f"{name}.alpha")
    base.transformer = diffusers.QwenImage21Transformer2DModel.from_single_file(
        {f"model.{k}": v for k, v in comfy.items()}, config=str(tiny_qwen21), subfolder="transformer",
        local_files_only=True)
    assert np.abs(draw(base, final.prompts[0], final.seeds[0]) - trained).max() <= 2


@pytest.mark.slow
def test_qwenimage21_resume_equals_uninterrupted_and_frozen_moves_one_block(
        lora_run, tmp_path, tiny_qwen21, shapes_dataset):
    """Captions of different lengths cached on disk; then a frozen-layer run moves only the block it names."""
    assert_resume_equals_uninterrupted(lora_run, tmp_path / "resumed")

    config = diffusion_config(tiny_qwen21, shapes_dataset, "qwenimage21", mode="frozen",
                              frozen={"trainable": ["transformer_blocks.1"]},
                              training={"steps": 4, "learning_rate": 1e-3, "eval_every": 2},
                              sampling={"inference_steps": 2})
    code, rec = run_in_process(config, tmp_path / "frozen")
    assert code == EXIT_OK, rec.of(Failed)
    folder, single = (Path(p) for p in rec.of(Finished)[0].outputs)
    part = Path("transformer") / "diffusion_pytorch_model.safetensors"
    before, after = load_file(tiny_qwen21 / part), load_file(folder / part)
    moved = {name for name in before if not torch.equal(before[name], after[name])}
    assert moved and all(name.startswith("transformer_blocks.1.") for name in moved)
    # RUN_NAME.safetensors: the transformer in ComfyUI's layout (gate_up fused), read by diffusers' own converter
    import diffusers

    assert single.name == "tiny.safetensors" and any(k.endswith("img_mlp.gate_up.weight") for k in load_file(single))
    read = diffusers.QwenImage21Transformer2DModel.from_single_file(
        str(single), config=str(folder), subfolder="transformer", local_files_only=True).state_dict()
    assert read.keys() == after.keys() and all(torch.equal(read[k], after[k]) for k in after)


@pytest.mark.slow
def test_qwenimage21_dreambooth_draws_class_images_and_trains_the_prior_term(tmp_path, tiny_qwen21, shapes_dataset):
    class_dir = tmp_path / "class"
    config = diffusion_config(tiny_qwen21, shapes_dataset, "qwenimage21", mode="dreambooth",
                              dreambooth={"instance_prompt": "a sks circle", "class_prompt": "a circle",
                                          "class_dir": str(class_dir), "num_class_images": 2},
                              training={"steps": 2, "eval_every": 2}, sampling={"inference_steps": 1})
    code, rec = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK, rec.of(Failed)
    drawn = sorted(class_dir.glob("class-*.png"))
    assert len(drawn) == 2 and all(Image.open(p).size == (64, 64) for p in drawn)
    outputs = [Path(p) for p in rec.of(Finished)[0].outputs]
    assert outputs[-1].name == "pytorch_lora_weights.safetensors" and all(p.is_file() for p in outputs)


def test_comfyui_single_files_load_offline_as_the_folder_does(tmp_path, tiny_qwen21):
    """A ComfyUI tree: the transformer in ComfyUI's layout (prefixed, gate_up fused), Qwen3-VL in Hugging Face's keys
    in models/text_encoders, the VAE in diffusers' keys in models/vae: the same weights as the folder, found beside
    the transformer; a VAE in another layout is refused naming the file."""
    from safetensors.torch import save_file

    from trainer.errors import InputError
    from trainer.models.loading import load_model
    from trainer.models.qwenimage21_single import from_comfy, pipeline_to_comfy
    from trainer.models.tiny import write_tiny_config_dir

    pipe = pipeline(tiny_qwen21)
    models = tmp_path / "ComfyUI" / "models"
    for sub in ("diffusion_models", "text_encoders", "vae"):
        (models / sub).mkdir(parents=True)
    comfy = pipeline_to_comfy(pipe)
    assert from_comfy(comfy).keys() == pipe.transformer.state_dict().keys()
    transformer = models / "diffusion_models" / "qwen_image_2.1_bf16.safetensors"
    save_file({f"model.diffusion_model.{k}": v.contiguous() for k, v in comfy.items()}, transformer)
    save_file({k: v.contiguous() for k, v in pipe.text_encoder.state_dict().items()},
              models / "text_encoders" / "qwen3vl_8b.safetensors")
    save_file({k: v.contiguous() for k, v in pipe.vae.state_dict().items()},
              models / "vae" / "qwen_image_2.1_vae.safetensors")
    config_dir = write_tiny_config_dir(tiny_qwen21, tmp_path / "config")
    loaded = load_model(transformer, config_dir=config_dir, expected_architecture="qwenimage21").pipeline
    for name in ("transformer", "text_encoder", "vae"):
        mine, theirs = getattr(loaded, name).state_dict(), getattr(pipe, name).state_dict()
        assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in theirs), name
    assert np.array_equal(draw(loaded, "a red circle", 3), draw(pipe, "a red circle", 3))

    odd = models / "vae" / "qwen_image_2.1_vae.safetensors"
    save_file({"decoder.conv1.weight": torch.zeros(1)}, odd)
    with pytest.raises(InputError, match=r"model\.vae_file: .*qwen_image_2\.1_vae\.safetensors does not hold a "
                                         r"Qwen-Image 2\.1 VAE in diffusers' keys"):
        load_model(transformer, config_dir=config_dir)


def test_a_folder_naming_the_real_qwen3vl_processor_loads_offline_as_text(tmp_path, tiny_qwen21):
    """A Qwen-Image 2.1 folder as published names ``transformers.Qwen3VLProcessor``, which transformers builds only
    with torchvision: Kamaal's loader reads its ``processor/`` as text and encodes prompts as the tiny model does."""
    from trainer.models.loading import load_model

    folder = shutil.copytree(tiny_qwen21, tmp_path / "published")
    index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    index["processor"] = ["transformers", "Qwen3VLProcessor"]
    (folder / "model_index.json").write_text(json.dumps(index), encoding="utf-8")
    loaded = load_model(folder, expected_architecture="qwenimage21", dtype=torch.float32)
    assert loaded.info.architecture == "qwenimage21"
    with torch.no_grad():
        hidden, _, _ = loaded.pipeline.encode_prompt("a red circle", device=torch.device("cpu"))
        reference, _, _ = pipeline(tiny_qwen21).encode_prompt("a red circle", device=torch.device("cpu"))
    assert torch.equal(hidden, reference)
    with pytest.raises(ValueError, match="torchvision"):
        loaded.pipeline.processor(text=["a"], images=[Image.new("RGB", (8, 8))])


def test_what_qwenimage21_cannot_do_is_refused_by_name(tmp_path, tiny_qwen21):
    from trainer.config import ConfigError, config_from_dict
    from trainer.errors import InputError
    from trainer.merge.fuse import fuse_lora

    with pytest.raises(ConfigError, match=r"lora\.train_text_encoder: Qwen-Image 2\.1's Qwen3-VL text encoder takes"):
        config_from_dict({"mode": "lora", "model": {"architecture": "qwenimage21"},
                          "lora": {"train_text_encoder": True}})
    # Merges of this family are available (tests/merge/test_family_models_*): fusing gets as far as the LoRA.
    with pytest.raises(InputError, match=r"LoRA: .*missing\.safetensors does not exist"):
        fuse_lora(tiny_qwen21, [(tmp_path / "missing.safetensors", 1.0)], output_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_shipped_qwen3_vocabulary_has_qwen3_vls_vision_tokens_at_its_ids():
    """Single files are read with the shipped Qwen3 tokenizer: Qwen3-VL's special tokens are at the ids its config
    (``resources/model_configs/qwen-image-2.1``) gives them, and the system turn whose tokens the pipeline drops is
    rendered as Qwen-VL's template renders it."""
    import transformers

    from trainer.models.clip_vocab import qwen3_tokenizer
    from trainer.models.info import MODEL_CONFIGS
    from trainer.models.qwen_vl_text import text_processor

    config = transformers.Qwen3VLConfig.from_pretrained(MODEL_CONFIGS / "qwen-image-2.1" / "text_encoder")
    processor = text_processor(qwen3_tokenizer())
    tokens = ["<|vision_start|>", "<|image_pad|>", "<|vision_end|>", "<|video_pad|>"]
    assert processor.tokenizer.convert_tokens_to_ids(tokens) == [
        config.vision_start_token_id, config.image_token_id, config.vision_end_token_id, config.video_token_id]
    assert len(processor.tokenizer) <= config.text_config.vocab_size
    system = [{"role": "system", "content": [{"type": "text", "text": "Comprehend and analyze the provided prompt."}]}]
    (ids,) = processor.apply_chat_template(system, tokenize=True)
    expected = "<|im_start|>system\nComprehend and analyze the provided prompt.<|im_end|>\n"
    assert processor.tokenizer.decode(ids) == expected


def test_guided_previews_from_prompts_encoded_once_are_the_pipelines_image(tiny_qwen21, tmp_path):
    """2.1 samples unguided by default; asked to guide, the previews from prompts encoded once (the negative prompt
    encoded apart, as ``encode_prompt`` does one side) are the image the pipeline draws from the text, and guided."""
    from trainer.diffusion.sampling import draw as draw_samples
    from trainer.diffusion.sampling import encode_sample_prompts

    pipe = pipeline(tiny_qwen21)
    encoded = encode_sample_prompts(pipe, "qwenimage21", ["a red circle"], 3.0, "cpu")
    assert "negative_prompt_embeds" in encoded["a red circle"]
    from_text, _, _ = draw_samples(pipe, ["a red circle"], [3], 64, 64, 2, 3.0, tmp_path / "text")
    from_embeds, _, _ = draw_samples(pipe, ["a red circle"], [3], 64, 64, 2, 3.0, tmp_path / "embeds",
                                     conditioning=encoded)
    image = np.asarray(Image.open(from_text[0]))
    assert np.array_equal(image, np.asarray(Image.open(from_embeds[0])))
    plain = pipe("a red circle", width=64, height=64, num_inference_steps=2,
                 generator=torch.Generator("cpu").manual_seed(3)).images[0]
    assert not np.array_equal(image, np.asarray(plain))


@pytest.mark.parametrize("kind", ["fp8", "nf4"])
def test_a_quantized_qwen3vl_stores_its_layers_in_fewer_bytes_and_encodes_nearly_what_it_did(kind):
    """``model.text_encoder_quantization`` (the 16 and 12 GB presets) reaches Qwen3-VL's language model and vision
    tower through the paths the family declares, and the hidden states the pipeline reads stay close."""
    from trainer.families import family
    from trainer.models.clip_vocab import qwen3_tokenizer
    from trainer.models.quantize import quantize_denoiser, quantized_linears, weight_bytes
    from trainer.models.tiny import _qwen_encoder

    tokenizer = qwen3_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        encoder = _qwen_encoder("Qwen3VLForConditionalGeneration", 64, "silu", len(tokenizer), tokenizer.pad_token_id)
    (spec,) = family("qwenimage21").text_encoders
    layers = sum(linear.weight.numel() for _, linear in quantized_linears(encoder.eval(), spec.blocks))
    language = sum(linear.weight.numel() for _, linear in quantized_linears(encoder, spec.blocks[:1]))
    assert 0 < language < layers  # both containers are found
    ids = tokenizer(["a red circle on a white page"], return_tensors="pt").input_ids
    with torch.no_grad():
        reference = encoder(input_ids=ids, output_hidden_states=True).hidden_states[-1]
    before = weight_bytes(encoder)
    assert quantize_denoiser(encoder, spec.blocks, kind, "cpu", torch.float32) == layers
    assert before - weight_bytes(encoder) > 0.5 * layers * 2  # fp32 → at most 1 byte per weight
    with torch.no_grad():
        hidden = encoder(input_ids=ids, output_hidden_states=True).hidden_states[-1]
    error = ((hidden - reference).norm() / reference.norm()).item()
    assert error < {"nf4": 0.2, "fp8": 0.1}[kind], error


def test_a_folder_kamaal_writes_names_the_real_processor_and_keeps_its_image_half(tmp_path, tiny_qwen21):
    """A full run's folder is for diffusers too: ``model_index.json`` names ``transformers.Qwen3VLProcessor`` (not
    Kamaal's text stand-in), the source's image and video processor configs come along, and Kamaal reads it back."""
    from trainer.models.folder_dtypes import save_diffusers_folder
    from trainer.models.loading import load_model

    source = shutil.copytree(tiny_qwen21, tmp_path / "published")
    vision = {"image_processor_type": "Qwen2VLImageProcessor", "patch_size": 16, "merge_size": 2}
    (source / "processor" / "preprocessor_config.json").write_text(json.dumps(vision), encoding="utf-8")
    loaded = load_model(source, expected_architecture="qwenimage21", dtype=torch.float32)
    save_diffusers_folder(loaded.pipeline, tmp_path / "written")
    index = json.loads((tmp_path / "written" / "model_index.json").read_text(encoding="utf-8"))
    assert index["processor"] == ["transformers", "Qwen3VLProcessor"]
    assert json.loads((tmp_path / "written" / "processor" / "preprocessor_config.json").read_text()) == vision
    again = load_model(tmp_path / "written", expected_architecture="qwenimage21", dtype=torch.float32).pipeline
    with torch.no_grad():
        hidden, _, _ = again.encode_prompt("a red circle", device=torch.device("cpu"))
        reference, _, _ = loaded.pipeline.encode_prompt("a red circle", device=torch.device("cpu"))
    assert torch.equal(hidden, reference)
