"""Masked loss (``dataset.masked_loss``): the mask follows its image to the pixel, weights the loss per latent cell in
every family (packed-token ones too), so masked cells give the denoiser no gradient at all; training learns the
white region; the disk latent cache follows the mask file."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from tests.diffusion.conftest import diffusion_config, draw_shapes
from tests.trainer.helpers import run_in_process
from trainer.dataset import CropRecord, DatasetCache
from trainer.diffusion import data as ds
from trainer.diffusion.loss import NoiseOptions
from trainer.diffusion.loss_weights import LOSS_WEIGHT, floored, latent_weights, per_image_loss
from trainer.protocol import EXIT_OK, Failed
from trainer.runfolder import RunFolder


def test_the_mask_stays_on_its_pixels_through_user_crop_bucket_random_crop_and_flip(tmp_path):
    # A gray picture whose every pixel differs from its neighbours, and a mask with the very same values: after
    # every transform, the mask must still equal the picture's gray value, pixel for pixel.
    values = np.random.default_rng(0).integers(0, 256, (75, 130), dtype=np.uint8)
    Image.fromarray(values).convert("RGB").save(tmp_path / "noise.png")
    Image.fromarray(values).save(tmp_path / "noise.mask.png")
    DatasetCache.for_folder(tmp_path).write_crop(tmp_path / "noise.png", CropRecord((6, 3, 126, 70), (130, 75)))
    (example,) = ds.collect_examples(str(tmp_path), "dataset.path", ds.caption_maker("{token}", "sks"),
                                     ds.training_buckets(64, 64, 128, True), False, ".txt", logging.getLogger("t"),
                                     masks=True)
    # The 120×67 crop is resized (×0.955) to cover the 64×64 bucket, leaving 51 columns to crop at random.
    assert example.mask is not None and example.bucket == (64, 64)
    offsets, flips = set(), set()
    for seed in range(12):
        pixels, mask, offset = ds.load_pixels_and_mask(example, "random", True, torch.Generator().manual_seed(seed))
        assert mask is not None and mask.shape == (1, 64, 64)
        gray = ((pixels[0] + 1.0) * 127.5).round()
        assert torch.equal(gray, (mask[0] * 255.0).round()), seed
        offsets.add(offset)
        flips.add(bool(torch.equal(pixels, ds.load_pixels_and_mask(
            example, "random", False, torch.Generator().manual_seed(seed))[0].flip(-1))))
    assert len(offsets) > 1 and flips == {True, False}  # the test did see random crops and both flips


def test_per_image_loss_is_the_weighted_mean_over_the_mask():
    elementwise = torch.rand(3, 4, 6, 6)
    assert torch.equal(per_image_loss(elementwise, None), elementwise.mean(dim=(1, 2, 3)))
    half = torch.zeros(3, 1, 6, 6)
    half[..., 3:] = 1.0
    expected = elementwise[..., 3:].mean(dim=(1, 2, 3))  # normalised by the mask's area, not the image's
    assert torch.allclose(per_image_loss(elementwise, half), expected)
    assert torch.allclose(per_image_loss(elementwise, torch.ones(3, 1, 6, 6)), elementwise.mean(dim=(1, 2, 3)))
    assert torch.equal(per_image_loss(elementwise, torch.zeros(3, 1, 6, 6)), torch.zeros(3))  # all black: nothing
    assert floored(half, 0.25).min() == 0.25 and floored(half, 0.25).max() == 1.0
    pixels = torch.zeros(1, 1, 16, 16)
    pixels[..., :, 6:] = 1.0  # an edge inside a 4×4 cell: that cell gets half a weight
    assert latent_weights(pixels, (4, 4))[0, 0, 0].tolist() == [0.0, 0.5, 1.0, 1.0]


def _parts(arch: str):
    from diffusers import DDPMScheduler

    from trainer.diffusion.components import Components
    from trainer.families import family
    from trainer.models.tiny import tiny_pipeline

    pipe = tiny_pipeline(arch, seed=0)
    specs = family(arch).text_encoders
    denoiser = getattr(pipe, "transformer", None) or pipe.unet
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config) if family(arch).flow is None else pipe.scheduler
    return Components(arch, "epsilon", [getattr(pipe, s.tokenizer) for s in specs],
                      [getattr(pipe, s.component) for s in specs], pipe.vae, denoiser, scheduler)


def _raw_outputs(output) -> list[torch.Tensor]:
    """The tensors a denoiser returned, as it returned them (packed tokens stay packed)."""
    first = output.sample if hasattr(output, "sample") else output[0]
    return list(first) if isinstance(first, list | tuple) else [first]


@pytest.mark.parametrize("arch", ["sd15", "sd3", "flux", "qwenimage", "zimage"])
def test_masked_cells_give_the_denoiser_no_gradient(arch):
    """Left half of every image masked: the gradient reaching the denoiser's own output there is exactly zero (for
    Flux and Qwen-Image, on exactly the 2×2-packed tokens of the left half), and not zero without the mask."""
    from trainer.diffusion.engines import engine_for

    torch.manual_seed(0)
    parts = _parts(arch)
    engine = engine_for(parts)
    with torch.no_grad():
        latents = engine.image_latents(torch.rand(2, 3, 64, 64) * 2 - 1)
        text = engine.encode_prompts(parts.text_encoders, ["a red circle", "a blue square"], "cpu")
    height, width = latents.shape[-2:]
    noise, timesteps = engine.draw_noise(tuple(latents.shape), torch.Generator().manual_seed(1), NoiseOptions())
    pixel_mask = torch.ones(2, 1, 64, 64)
    pixel_mask[..., : 32] = 0.0
    weights = latent_weights(pixel_mask, (height, width))
    parts.unet.requires_grad_(False)

    def gradients(extras: dict) -> list[torch.Tensor]:
        captured: list[torch.Tensor] = []

        def keep(_module, _inputs, output):
            for tensor in _raw_outputs(output):
                tensor.requires_grad_(True) if tensor.is_leaf else tensor.retain_grad()
                captured.append(tensor)

        hook = parts.unet.register_forward_hook(keep)
        try:
            engine.loss(parts.unet, latents, noise, timesteps, text, {**engine.extras(
                [((64, 64), (0, 0), (64, 64))] * 2, "cpu", torch.float32), **extras}).backward()
        finally:
            hook.remove()
        return [tensor.grad for tensor in captured]

    def left_half(grads: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(gradient on the masked half, on the rest), wherever the denoiser put them."""
        if len(grads) == 1 and grads[0].dim() == 3:  # packed tokens: row-major over the (h/2, w/2) grid of patches
            tokens = grads[0].view(2, height // 2, width // 2, -1)
            return tokens[:, :, : width // 4], tokens[:, :, width // 4:]
        stacked = torch.stack([g.reshape(-1, height, width) for g in grads]) if len(grads) > 1 else grads[0]
        return stacked[..., : width // 2], stacked[..., width // 2:]

    masked, rest = left_half(gradients({LOSS_WEIGHT: weights}))
    assert torch.count_nonzero(masked) == 0 and torch.count_nonzero(rest) > 0.9 * rest.numel()
    unmasked, _ = left_half(gradients({}))
    assert torch.count_nonzero(unmasked) > 0.9 * unmasked.numel()


def _masked_dataset(folder: Path) -> Path:
    """Shapes on the right half, noise on the left; masks that train only the right half."""
    draw_shapes(folder, 4, size=(64, 64))
    rng = np.random.default_rng(3)
    for i, image_path in enumerate(sorted(folder.glob("*.png"))):
        image = np.asarray(Image.open(image_path).convert("RGB")).copy()
        image[:, :32] = rng.integers(0, 256, (64, 32, 3), dtype=np.uint8)
        Image.fromarray(image).save(image_path)
        if i < 3:  # the last image has no mask: it trains everywhere
            mask = Image.new("L", (64, 64), 0)
            mask.paste(255, (32, 0, 64, 64))
            mask.save(folder / f"{image_path.stem}.mask.png")
    return folder


@pytest.mark.slow
def test_masked_training_lowers_the_loss_on_the_white_region(tiny_sd15, tmp_path):
    folder = _masked_dataset(tmp_path / "masked")
    originals = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    config = diffusion_config(tiny_sd15, folder, dataset={"path": str(folder), "resolution": 64, "masked_loss": True,
                                                          "min_bucket_side": 64, "max_bucket_side": 128},
                              training={"steps": 12, "batch_size": 2, "learning_rate": 1e-2, "eval_every": 4,
                                        "log_every": 1, "seed": 1},
                              sampling={"prompts": ["a red circle"], "seeds": [7], "inference_steps": 1,
                                        "at_start": False})
    code, rec = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK, rec.of(Failed)
    # The held-out loss is masked too: the loss on the white region.
    curve = [row["heldout_loss"] for row in RunFolder(tmp_path / "run").read_metrics() if "heldout_loss" in row]
    assert len(curve) == 4 and curve[-1] < 0.92 * curve[0], curve  # measured: 1.21 → 1.02 (0.84×)
    log = (tmp_path / "run" / "log.txt").read_text(encoding="utf-8")
    assert "Masked loss: 3 of 4 training images have a mask" in log
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == originals


def test_the_disk_latent_cache_entry_changes_with_the_mask(tmp_path):
    from trainer.jobs.diffusion import DiffusionJob

    Image.new("RGB", (64, 64), "white").save(tmp_path / "a.png")
    example = ds.Example(tmp_path / "a.png", "sks", (64, 64), (64, 64))
    job = SimpleNamespace(run=SimpleNamespace(root=tmp_path / "run"))
    unmasked = DiffusionJob._disk_latent_path(job, example)
    mask_file = tmp_path / "a.mask.png"
    Image.new("L", (64, 64), 255).save(mask_file)
    masked = ds.Example(tmp_path / "a.png", "sks", (64, 64), (64, 64), mask=mask_file)
    first = DiffusionJob._disk_latent_path(job, masked)
    repainted = Image.new("L", (64, 64), 0)
    repainted.paste(255, (0, 0, 32, 64))
    repainted.save(mask_file)
    stat = mask_file.stat()
    os.utime(mask_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # a new version of the file
    assert len({unmasked, first, DiffusionJob._disk_latent_path(job, masked)}) == 3


@pytest.mark.slow
def test_masked_runs_end_alike_with_the_latent_cache_off_and_on_disk(tiny_sd15, tmp_path):
    """The weights travel with the cached latents: the disk cache gives the uncached run's LoRA, bit for bit."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from trainer.protocol import Finished

    folder = _masked_dataset(tmp_path / "masked")
    results = {}
    for where in ("off", "disk"):
        config = diffusion_config(tiny_sd15, folder, dataset={"path": str(folder), "resolution": 64,
                                                              "masked_loss": True, "unmasked_weight": 0.1,
                                                              "cache_latents": where},
                                  training={"steps": 3, "eval_every": 3, "seed": 1, "learning_rate": 1e-2},
                                  sampling={"prompts": ["a red circle"], "seeds": [7], "inference_steps": 1,
                                            "at_start": False})
        code, rec = run_in_process(config, tmp_path / where)
        assert code == EXIT_OK, rec.of(Failed)
        results[where] = load_file(rec.of(Finished)[0].outputs[0])
    cached = sorted((tmp_path / "disk" / "cache" / "latents").glob("*.safetensors"))
    with_weights = [path for path in cached if "weight" in safe_open(path, "pt").keys()]
    assert len(cached) == 4 and len(with_weights) == 3  # the image without a mask stores no weights
    assert all(torch.equal(results["off"][k], results["disk"][k]) for k in results["off"])


def test_class_images_are_never_masked_and_the_log_says_what_is_used(tiny_sd15, tmp_path, caplog):
    from trainer.jobs.diffusion import DiffusionJob

    folder = _masked_dataset(tmp_path / "masked")
    class_dir = draw_shapes(tmp_path / "class", 2, with_captions=False)
    for image in class_dir.glob("*.png"):
        Image.new("L", (64, 64), 0).save(class_dir / f"{image.stem}.mask.png")  # would silence them entirely
    dreambooth = {"class_dir": str(class_dir), "class_prompt": "a circle", "num_class_images": 2}
    logger = logging.getLogger("masked-job")
    for masked_loss in (True, False):
        config = diffusion_config(tiny_sd15, folder, mode="dreambooth", dreambooth=dreambooth,
                                  dataset={"path": str(folder), "resolution": 64, "masked_loss": masked_loss})
        job = DiffusionJob(config, SimpleNamespace(root=tmp_path / "run"), None, logger)  # type: ignore[arg-type]
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="masked-job"):
            job._prepare_data()  # the data alone: no model is loaded
        assert len(job.class_examples) == 2 and all(e.mask is None for e in job.class_examples)
        assert sum(e.mask is not None for e in job.examples) == (3 if masked_loss else 0)
        expected = ("Masked loss: 3 of 4 training images have a mask" if masked_loss
                    else "3 training image(s) have a loss mask (NAME.mask.png) that is not used")
        assert expected in caplog.text
