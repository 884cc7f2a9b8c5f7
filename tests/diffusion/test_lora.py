"""LoRA on tiny SD 1.x and SDXL: it learns, and the files it writes load in diffusers and give
the very image the trained adapter gave."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from tests.diffusion.conftest import diffusion_config, straight_and_resumed
from tests.trainer.helpers import run_in_process
from trainer.protocol import EXIT_OK, Failed, Finished, Sample
from trainer.runfolder import RunFolder


def eval_curve(run_dir) -> list[float]:
    return [row["heldout_loss"] for row in RunFolder(run_dir).read_metrics() if "heldout_loss" in row]


def fresh_image(model_dir, arch: str, lora_file, prompt: str, seed: int, size: int, steps: int) -> np.ndarray:
    """Draw with a freshly loaded pipeline plus the LoRA file, the way a user of diffusers would."""
    import diffusers

    pipeline_class = diffusers.StableDiffusionXLPipeline if arch == "sdxl" else diffusers.StableDiffusionPipeline
    extra = {} if arch == "sdxl" else {"safety_checker": None, "requires_safety_checker": False}
    pipe = pipeline_class.from_pretrained(model_dir, local_files_only=True, **extra)
    pipe.scheduler = diffusers.DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_lora_weights(str(lora_file.parent), weight_name=lora_file.name)
    image = pipe(prompt, width=size, height=size, num_inference_steps=steps, guidance_scale=7.5,
                 generator=torch.Generator("cpu").manual_seed(seed)).images[0]
    return np.asarray(image, dtype=np.int16)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_lora_learns_and_both_files_reproduce_the_trained_adapter(tmp_path, request, shapes_dataset, arch):
    model = request.getfixturevalue(f"tiny_{arch}")
    # The tiny SDXL's attention layers are narrower, so it needs a bolder step to move as visibly.
    config = diffusion_config(model, shapes_dataset, arch, lora={"rank": 4, "alpha": 8.0, "train_text_encoder": True},
                              training={"learning_rate": 3e-3 if arch == "sd15" else 2e-2})
    code, rec = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK, rec.of(Failed)

    curve = eval_curve(tmp_path / "run")
    # Step 0 is the base model.  Measured after 30 steps (seed 1): sd15 0.77×, sdxl 0.92× the
    # starting loss; the bounds leave room for platform noise but not for "nothing learned".
    assert len(curve) == 4 and curve[-1] < {"sd15": 0.9, "sdxl": 0.96}[arch] * curve[0], curve

    kohya_file, diffusers_file = (Path(p) for p in rec.of(Finished)[0].outputs)
    with safe_open(kohya_file, "pt") as handle:
        keys = set(handle.keys())
        metadata = handle.metadata()
        alphas = {float(handle.get_tensor(k)) for k in keys if k.endswith(".alpha")}
    prefixes = {key.split("_")[0] + "_" + key.split("_")[1] for key in keys}
    expected_te = {"lora_te"} if arch == "sd15" else {"lora_te1", "lora_te2"}
    assert prefixes == {"lora_unet"} | expected_te
    # kohya's names: diffusers-style for SD 1.x, the original (SAI) layout for SDXL.
    block = r"(down|up)_blocks_\d_attentions_\d" if arch == "sd15" else r"(input|output)_blocks_\d+_1"
    assert any(re.fullmatch(rf"lora_unet_{block}_transformer_blocks_\d_attn1_to_q\.lora_down\.weight", k)
               for k in keys)
    # Text-encoder keys in the layout Automatic1111 and ComfyUI look up (text_model_…), whatever
    # layout the installed transformers uses internally.
    te_keys = [k for k in keys if k.startswith("lora_te")]
    assert te_keys and all(re.match(r"lora_te[12]?_text_model_encoder_layers_\d+_self_attn_", k) for k in te_keys)
    assert alphas == {8.0}  # the alpha we trained with, not the rank
    assert metadata["ss_network_dim"] == "4" and json.loads(metadata["kamaal.config"])["mode"] == "lora"

    final = rec.of(Sample)[-1]
    assert final.step == 30
    trained = np.asarray(Image.open(final.paths[0]).convert("RGB"), dtype=np.int16)
    for lora_file in (kohya_file, diffusers_file):
        loaded = fresh_image(model, arch, lora_file, final.prompts[0], final.seeds[0], 64, 3)
        assert np.abs(loaded - trained).max() <= 2, lora_file.name
    # And the adapter really changed the picture: the base model alone draws something else.
    import diffusers

    pipe_class = diffusers.StableDiffusionXLPipeline if arch == "sdxl" else diffusers.StableDiffusionPipeline
    base = pipe_class.from_pretrained(model, local_files_only=True)
    base.scheduler = diffusers.DDIMScheduler.from_config(base.scheduler.config)
    base.set_progress_bar_config(disable=True)
    plain = np.asarray(base(final.prompts[0], width=64, height=64, num_inference_steps=3,
                            generator=torch.Generator("cpu").manual_seed(final.seeds[0])).images[0], dtype=np.int16)
    assert np.abs(plain - trained).max() > 10


def test_resume_equals_uninterrupted(tmp_path, tiny_sd15, shapes_dataset):

    config = diffusion_config(tiny_sd15, shapes_dataset, training={"steps": 12, "eval_every": 4})
    _, _, (a, b) = straight_and_resumed(config, tmp_path, stop_at=5)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    split = [r["loss"] for r in RunFolder(tmp_path / "split").read_metrics()]
    assert split == [r["loss"] for r in RunFolder(tmp_path / "straight").read_metrics()]


@pytest.mark.slow
def test_conv_lora_writes_resnet_layers_that_diffusers_loads(tmp_path, tiny_sd15, shapes_dataset):
    """LoRA on the ResNet convolutions too (what kohya calls LoCon; the shapes demo uses it): the 3×3
    kernels are written in the kohya layout Automatic1111 and ComfyUI read, and diffusers draws the
    trained picture from either file."""
    targets = ["to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2"]
    config = diffusion_config(tiny_sd15, shapes_dataset, lora={"rank": 4, "alpha": 4.0, "target_modules": targets},
                              training={"steps": 8, "eval_every": 8})
    code, rec = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK, rec.of(Failed)
    kohya_file, diffusers_file = (Path(p) for p in rec.of(Finished)[0].outputs)
    with safe_open(kohya_file, "pt") as handle:
        shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    down = "lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight"
    up = "lora_unet_down_blocks_0_resnets_0_conv1.lora_up.weight"
    assert len(shapes[down]) == 4 and shapes[down][0] == 4 and shapes[down][2:] == (3, 3), shapes.get(down)
    assert shapes[up][1:] == (4, 1, 1), shapes[up]
    assert any(re.fullmatch(r"lora_unet_up_blocks_\d_resnets_\d_conv2\.lora_down\.weight", k) for k in shapes)

    final = rec.of(Sample)[-1]
    trained = np.asarray(Image.open(final.paths[0]).convert("RGB"), dtype=np.int16)
    for lora_file in (kohya_file, diffusers_file):
        loaded = fresh_image(tiny_sd15, "sd15", lora_file, final.prompts[0], final.seeds[0], 64, 3)
        assert np.abs(loaded - trained).max() <= 2, lora_file.name
