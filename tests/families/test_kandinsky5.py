"""Kandinsky 5 Image through the registry, on a tiny model built from its real classes
(``Kandinsky5Transformer3DModel``, Flux's ``AutoencoderKL``, Qwen2.5-VL and CLIP): the engine's latents, prompts and
prediction are the pipeline's; LoRA learns, its diffusers file loads with ``Kandinsky5T2IPipeline.load_lora_weights``
and gives the image the trained adapter gave, and its kohya file names every module as ComfyUI's model does; a stopped
and resumed run ends where an uninterrupted one does; frozen-layer training moves only the chosen block; a folder whose
tokenizer is a ``Qwen2VLProcessor`` (which needs torchvision) loads with the tokenizer files alone; ComfyUI's single
files load offline into the model they came from."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from tests.diffusion.conftest import diffusion_config
from tests.families.harness import TrainedRun, assert_resume_equals_uninterrupted, lora_config, train
from tests.trainer.helpers import run_in_process
from trainer.protocol import EXIT_OK, Failed, Finished, Sample
from trainer.runfolder import RunFolder


@pytest.fixture(scope="module")
def tiny_kandinsky(tiny_models) -> Path:
    return tiny_models["kandinsky5"]


def pipeline(model_dir: Path):
    import diffusers

    from trainer.diffusion.sampling import set_up_pipeline

    pipe = diffusers.Kandinsky5T2IPipeline.from_pretrained(model_dir, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    set_up_pipeline(pipe, "kandinsky5")  # draws at 64 px, not at the nearest of its trained resolutions
    return pipe


def draw(pipe, prompt: str, seed: int, guidance: float = 7.5) -> np.ndarray:
    image = pipe(prompt, width=64, height=64, num_inference_steps=3, guidance_scale=guidance,
                 generator=torch.Generator("cpu").manual_seed(seed), return_dict=False)[0][0]
    assert image.size == (64, 64)
    return np.asarray(image, dtype=np.int16)


def test_the_engine_reads_images_prompts_and_predictions_as_the_pipeline_does(tiny_kandinsky):
    """Latents scaled and not shifted (the pipeline decodes ``latents / scaling_factor``); each prompt's real tokens
    and CLIP's pooled output, as ``encode_prompt`` gives them; the prediction is the transformer's on channels-last
    latents with the pipeline's RoPE positions, at the scheduler's timestep σ·1000 — for a batch of prompts of
    different lengths, each row what the pipeline computes for that prompt alone."""
    from trainer.diffusion.components import Components
    from trainer.diffusion.engines import engine_for

    pipe = pipeline(tiny_kandinsky)
    parts = Components("kandinsky5", "flow_matching", [pipe.tokenizer, pipe.tokenizer_2],
                       [pipe.text_encoder, pipe.text_encoder_2], pipe.vae, pipe.transformer, pipe.scheduler)
    engine = engine_for(parts)
    pixels = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        latents = engine.image_latents(pixels)
        torch.testing.assert_close(latents / pipe.vae.config.scaling_factor, pipe.vae.encode(pixels).latent_dist.mean)
    assert pipe.vae.config.shift_factor and latents.shape == (1, 4, 8, 8)

    prompts = ["a red circle", "a small blue square on a green field"]
    with torch.no_grad():
        text = engine.encode_prompts([pipe.text_encoder, pipe.text_encoder_2], prompts, "cpu")
        alone = [pipe.encode_prompt(prompt, device=torch.device("cpu")) for prompt in prompts]
    assert text.mask is not None and text.mask.sum(1).tolist() == [len(q[0]) for q, _, _ in alone]
    for row, (qwen, _, _) in zip(text.sequences(), alone, strict=True):
        torch.testing.assert_close(row, qwen[0])
    torch.testing.assert_close(text.pooled, torch.cat([clip for _, clip, _ in alone]))

    noisy = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    sigma = torch.tensor([0.25, 0.8])
    with torch.no_grad():
        predicted = engine.predict(pipe.transformer, noisy, sigma, text)
        for i, (qwen, clip, cu_seqlens) in enumerate(alone):
            latents = noisy[i:i + 1].permute(0, 2, 3, 1).unsqueeze(1)  # as prepare_latents: (batch, 1, h, w, c)
            out = pipe.transformer(hidden_states=latents, encoder_hidden_states=qwen, pooled_projections=clip,
                                   timestep=sigma[i:i + 1] * 1000, text_rope_pos=torch.arange(int(cu_seqlens[-1])),
                                   visual_rope_pos=[torch.arange(1), torch.arange(4), torch.arange(4)],
                                   scale_factor=[1.0, 1.0, 1.0]).sample
            torch.testing.assert_close(predicted[i:i + 1], out[:, 0].permute(0, 3, 1, 2))


def comfy_deltas(kohya_file: Path, transformer: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Each weight delta the kohya file makes, found as ComfyUI finds it (``comfy/lora.py``: every ``.weight`` of the
    diffusion model is ``lora_unet_`` + its path with "_" for "."), scaled by alpha / rank."""
    tensors = load_file(kohya_file)
    names = {"lora_unet_" + name[:-len(".weight")].replace(".", "_"): name[:-len(".weight")]
             for name, _ in transformer.named_parameters() if name.endswith(".weight")}
    deltas = {}
    for key in {key.split(".")[0] for key in tensors}:
        assert key in names, key  # ComfyUI would skip (and warn about) a name its model does not have
        down, up = tensors[f"{key}.lora_down.weight"].float(), tensors[f"{key}.lora_up.weight"].float()
        alpha = float(tensors[f"{key}.alpha"]) if f"{key}.alpha" in tensors else down.shape[0]
        deltas[names[key]] = up @ down * (alpha / down.shape[0])
    return deltas


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_kandinsky, varied_captions) -> TrainedRun:
    """The LoRA run the tests below read: captions of different lengths in one batch (padded, masked), their Qwen2.5-VL
    and CLIP embeddings cached on disk each at its own length."""
    config = lora_config(tiny_kandinsky, varied_captions, "kandinsky5", sampling={"guidance_scale": 7.5},
                         dataset={"cache_text": "disk"})
    return train(config, tmp_path_factory.mktemp("lora") / "run")


@pytest.mark.slow
def test_kandinsky5_lora_learns_and_its_files_reproduce_the_trained_adapter(lora_run, tiny_kandinsky):
    assert lora_run.config.lora.target_modules == ["to_query", "to_key", "to_value", "self_attention.out_layer",
                                                   "cross_attention.out_layer"]  # the family's own
    rec = lora_run.recorder
    curve = [row["heldout_loss"] for row in RunFolder(lora_run.root).read_metrics() if "heldout_loss" in row]
    # Measured (seed 1, 30 steps, captions of three lengths): 1.54 → 1.02 (0.66×).
    assert len(curve) == 4 and curve[-1] < 0.92 * curve[0], curve

    kohya_file, lora_file = (Path(p) for p in rec.of(Finished)[0].outputs)
    keys = set(load_file(lora_file))
    assert {key.split(".")[0] for key in keys} == {"transformer"}
    assert any(".self_attention.to_query." in key for key in keys)
    assert any(".cross_attention.to_value." in key for key in keys)

    final = rec.of(Sample)[-1]
    trained = np.asarray(Image.open(final.paths[0]).convert("RGB"), dtype=np.int16)
    pipe = pipeline(tiny_kandinsky)
    plain = draw(pipe, final.prompts[0], final.seeds[0])
    pipe.load_lora_weights(str(lora_file.parent), weight_name=lora_file.name)
    loaded = draw(pipe, final.prompts[0], final.seeds[0])
    assert np.abs(loaded - trained).max() <= 2
    assert np.abs(plain - trained).max() > 10  # the adapter really changed the picture

    # RUN_NAME.safetensors: module by module, the delta ComfyUI applies is the diffusers file's, which diffusers
    # applied above (B·A: alpha / rank is baked into B, DESIGN.md §8)
    assert kohya_file.name == "tiny.safetensors"
    diffusers_file = load_file(lora_file)
    pipe.unload_lora_weights()  # the model's own module names again
    deltas = comfy_deltas(kohya_file, pipe.transformer)
    assert len(deltas) == len(keys) // 2
    for module, delta in deltas.items():
        a = diffusers_file[f"transformer.{module}.lora_A.weight"].float()
        b = diffusers_file[f"transformer.{module}.lora_B.weight"].float()
        torch.testing.assert_close(delta, b @ a, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_kandinsky5_resume_equals_uninterrupted_and_frozen_moves_one_block(lora_run, tmp_path, tiny_kandinsky,
                                                                          shapes_dataset):
    """Captions of different lengths cached on disk (so batches run prompt by prompt); then a frozen-layer run moves
    only the block it names, and its folder draws the run's final sample with the family's own pipeline."""
    assert_resume_equals_uninterrupted(lora_run, tmp_path / "resumed")

    block = "visual_transformer_blocks.1"
    config = diffusion_config(tiny_kandinsky, shapes_dataset, "kandinsky5", mode="frozen",
                              frozen={"trainable": [block]},
                              training={"steps": 4, "learning_rate": 1e-3, "eval_every": 2},
                              sampling={"inference_steps": 3, "guidance_scale": 7.5})
    code, rec = run_in_process(config, tmp_path / "frozen")
    assert code == EXIT_OK, rec.of(Failed)
    folder, single = (Path(p) for p in rec.of(Finished)[0].outputs)
    part = Path("transformer") / "diffusion_pytorch_model.safetensors"
    before, after = load_file(tiny_kandinsky / part), load_file(folder / part)
    moved = {name for name in before if not torch.equal(before[name], after[name])}
    assert moved and all(name.startswith(f"{block}.") for name in moved)
    # RUN_NAME.safetensors: the transformer under its original (= diffusers') names, every weight as trained
    written = load_file(single)
    assert single.name == "tiny.safetensors" and written.keys() == after.keys()
    assert all(torch.equal(written[k], after[k]) for k in after)
    final = rec.of(Sample)[-1]
    trained = np.asarray(Image.open(final.paths[0]).convert("RGB"), dtype=np.int16)
    assert np.abs(draw(pipeline(folder), final.prompts[0], final.seeds[0]) - trained).max() <= 2


def test_a_bf16_run_draws_its_previews(tmp_path, tiny_kandinsky, shapes_dataset):
    """The frozen base in bf16, as on a GPU: the transformer computes the time's sinusoids in fp32 and feeds them to
    its time layers, which a plain bf16 cast leaves bf16 (diffusers keeps them in fp32 only through
    ``from_pretrained``): the pipeline alone then stops with a dtype mismatch.  The job's transformer runs under
    accelerate's autocast, previews included, so they draw."""
    config = diffusion_config(tiny_kandinsky, shapes_dataset, "kandinsky5",
                              model={"architecture": "kandinsky5", "path": str(tiny_kandinsky), "precision": "bf16"},
                              training={"steps": 1, "eval_every": 1}, sampling={"inference_steps": 1})
    code, rec = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK, rec.of(Failed)
    assert rec.of(Sample)


@pytest.mark.slow
def test_kandinsky5_dreambooth_draws_its_class_images_and_trains_the_prior_term(tmp_path, tiny_kandinsky,
                                                                               shapes_dataset):
    """DreamBooth with prior preservation: the missing class image is drawn by the family's own pipeline at the
    size asked for (not snapped to a trained resolution), and the LoRA files come out."""
    class_dir = tmp_path / "class"
    config = diffusion_config(tiny_kandinsky, shapes_dataset, "kandinsky5", mode="dreambooth",
                              dreambooth={"instance_prompt": "a sks circle", "class_prompt": "a circle",
                                          "class_dir": str(class_dir), "num_class_images": 1},
                              training={"steps": 2, "eval_every": 2}, sampling={"inference_steps": 1})
    code, rec = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK, rec.of(Failed)
    drawn = sorted(class_dir.glob("class-*.png"))
    assert len(drawn) == 1 and Image.open(drawn[0]).size == (64, 64)
    outputs = [Path(p) for p in rec.of(Finished)[0].outputs]
    assert outputs[-1].name == "pytorch_lora_weights.safetensors" and all(p.is_file() for p in outputs)


def test_previews_from_prompts_encoded_once_guide_as_the_pipeline_does(tiny_kandinsky, tmp_path):
    """The pipeline encodes the negative prompt ("") by a second ``encode_prompt`` call: guided previews from text
    and from prompts encoded once (the text encoders off the GPU) are the same image."""
    from trainer.diffusion.sampling import draw as draw_samples
    from trainer.diffusion.sampling import encode_sample_prompts

    pipe = pipeline(tiny_kandinsky)
    guidance = 3.5
    encoded = encode_sample_prompts(pipe, "kandinsky5", ["a red circle"], guidance, "cpu")
    assert "negative_prompt_embeds_qwen" in encoded["a red circle"]
    from_text, _, _ = draw_samples(pipe, ["a red circle"], [3], 64, 64, 2, guidance, tmp_path / "text")
    from_embeds, _, _ = draw_samples(pipe, ["a red circle"], [3], 64, 64, 2, guidance, tmp_path / "embeds",
                                     conditioning=encoded)
    image = np.asarray(Image.open(from_text[0]))
    assert image.shape == (64, 64, 3) and np.array_equal(image, np.asarray(Image.open(from_embeds[0])))


def test_a_folder_with_qwens_processor_loads_with_its_tokenizer_files(tmp_path, tiny_kandinsky):
    """Published folders name ``Qwen2VLProcessor`` as the tokenizer, whose video half needs torchvision (not
    installed): Kamaal reads the folder's tokenizer files as a ``Qwen2Tokenizer``, which encodes what the processor
    would for text, and the folder loads and encodes as the tiny one does."""
    import shutil

    from trainer.models.loading import load_model

    folder = shutil.copytree(tiny_kandinsky, tmp_path / "published")
    index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    index["tokenizer"] = ["transformers", "Qwen2VLProcessor"]
    (folder / "model_index.json").write_text(json.dumps(index), encoding="utf-8")
    loaded = load_model(folder).pipeline
    assert type(loaded.tokenizer).__name__ == "Qwen2Tokenizer"
    with torch.no_grad():
        ours = loaded.encode_prompt("a red circle", device=torch.device("cpu"))
        tiny = pipeline(tiny_kandinsky).encode_prompt("a red circle", device=torch.device("cpu"))
    assert all(torch.equal(x, y) for x, y in zip(ours, tiny, strict=True))


def test_what_kandinsky5_cannot_do_is_refused_by_name(tmp_path, tiny_kandinsky):
    from trainer.config import ConfigError, config_from_dict
    from trainer.errors import InputError
    from trainer.merge.fuse import fuse_lora

    with pytest.raises(ConfigError, match=r"lora\.train_text_encoder: Kandinsky 5 Image's Qwen2\.5-VL text encoder "
                                          r"and CLIP text encoder take no LoRA"):
        config_from_dict({"mode": "lora", "model": {"architecture": "kandinsky5"},
                          "lora": {"train_text_encoder": True}})
    chosen = config_from_dict({"mode": "lora", "model": {"architecture": "kandinsky5"},
                               "lora": {"target_modules": ["to_query"]}})
    assert chosen.lora.target_modules == ["to_query"]  # a person's choice stays
    # Merges of this family are available (tests/merge/test_family_models_*): fusing gets as far as the LoRA.
    with pytest.raises(InputError, match=r"LoRA: .*missing\.safetensors does not exist"):
        fuse_lora(tiny_kandinsky, [(tmp_path / "missing.safetensors", 1.0)], output_dir=tmp_path / "out")


@pytest.fixture(scope="module")
def comfy(tmp_path_factory, tiny_kandinsky):
    """The tiny model as ComfyUI keeps it: the transformer under its original names in models/diffusion_models,
    Qwen2.5-VL (Hugging Face's original keys) and CLIP-L in models/text_encoders, Flux's ae.safetensors in
    models/vae."""
    from tests.families.test_qwenimage_single_files import original_text_encoder
    from trainer.families.kandinsky5 import pipeline_to_original
    from trainer.models import load_model
    from trainer.models.original_layout import vae_to_original
    from trainer.models.tiny import write_tiny_config_dir

    root = tmp_path_factory.mktemp("comfy-kandinsky5")
    model = tiny_kandinsky
    pipe = load_model(model).pipeline
    models = root / "models"
    for folder in ("diffusion_models", "text_encoders", "vae"):
        (models / folder).mkdir(parents=True)
    save_file({f"model.diffusion_model.{k}": v.contiguous() for k, v in pipeline_to_original(pipe).items()},
              models / "diffusion_models" / "kandinsky5lite_t2i.safetensors")
    save_file(original_text_encoder(pipe), models / "text_encoders" / "qwen_2.5_vl_7b.safetensors")
    save_file({f"text_model.{k}": v.contiguous() for k, v in pipe.text_encoder_2.state_dict().items()},
              models / "text_encoders" / "clip_l.safetensors")
    vae = vae_to_original(pipe.vae.state_dict(), len(pipe.vae.config.block_out_channels))
    save_file({k.removeprefix("first_stage_model."): v.contiguous() for k, v in vae.items()},
              models / "vae" / "ae.safetensors")
    return {"pipe": pipe, "models": models, "config_dir": write_tiny_config_dir(model, root / "config")}


def test_the_files_in_comfyuis_folders_load_into_the_model_they_came_from(comfy, tmp_path):
    """Loaded offline into the very model they came from; a file with visual conditioning is refused by name."""
    from trainer.errors import InputError
    from trainer.models import load_model

    loaded = load_model(comfy["models"] / "diffusion_models" / "kandinsky5lite_t2i.safetensors",
                        config_dir=comfy["config_dir"], expected_architecture="kandinsky5")
    assert loaded.info.architecture == "kandinsky5" and loaded.info.source_kind == "single_file"
    for name in ("transformer", "text_encoder", "text_encoder_2", "vae"):
        left, right = getattr(comfy["pipe"], name).state_dict(), getattr(loaded.pipeline, name).state_dict()
        assert left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left), name
    with torch.no_grad():  # and it encodes as the folder does (tokenizers, RoPE tables and all)
        ours = loaded.pipeline.encode_prompt("a red circle", device=torch.device("cpu"))
        theirs = comfy["pipe"].encode_prompt("a red circle", device=torch.device("cpu"))
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))

    # The image-editing and video models' transformer (visual conditioning: 2·c + 1 channels in) is refused by name.
    state = dict(comfy["pipe"].transformer.state_dict())
    weight = state["visual_embeddings.in_layer.weight"]
    state["visual_embeddings.in_layer.weight"] = torch.zeros(weight.shape[0], weight.shape[1] // 4 * 9)
    edit = comfy["models"] / "diffusion_models" / "kandinsky5lite_i2i.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, edit)
    try:
        with pytest.raises(InputError, match=r"kandinsky5lite_i2i\.safetensors is a Kandinsky 5 model with visual "
                                             r"conditioning"):
            load_model(edit, config_dir=comfy["config_dir"])
    finally:
        edit.unlink()
    alone = tmp_path / "alone.safetensors"
    alone.write_bytes((comfy["models"] / "diffusion_models" / "kandinsky5lite_t2i.safetensors").read_bytes())
    with pytest.raises(InputError, match=r"model\.text_encoder_files: .*alone\.safetensors holds the Kandinsky 5 "
                                         r"transformer only"):
        load_model(alone, config_dir=comfy["config_dir"])
