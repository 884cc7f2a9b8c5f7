"""DreamBooth prior preservation: make sure the class folder holds enough class images.

When a concept's class folder (``dreambooth.class_dir`` for the first concept,
``concepts[n].class_dir`` for the others) has fewer than ``num_class_images`` images, the missing
ones are generated with the base model (before any adapter is attached) from its class prompt,
each with its own seed, and written as PNGs beside the user's own.  Existing files are never touched.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from pathlib import Path

import torch

from trainer.concepts import concepts_of
from trainer.config import Config
from trainer.dataset import list_images
from trainer.diffusion.components import Components
from trainer.diffusion.sampling import build_pipeline, guidance_arguments, prompt_arguments, sample_scheduler
from trainer.errors import InputError
from trainer.fsutil import atomic_write_bytes


def count_class_images(folder: Path) -> int:
    return len(list_images(folder).items) if folder.is_dir() else 0


@torch.no_grad()
def ensure_class_images(config: Config, parts: Components, device: str, logger: logging.Logger,
                        on_image: Callable[[int, int], None] | None = None, concept: int = 0) -> int:
    """Generate the missing class images of one concept (0 = the first); returns how many were generated.

    ``on_image(done, missing)`` is called after each image is written (the class-images task
    reports progress there, and may raise to cancel: the images written so far stay).  Images are
    drawn at the concept's resolution.
    """
    concepts = concepts_of(config)
    if not 0 <= concept < len(concepts):
        raise InputError(f"concepts: there is no concept {concept + 1} (this config has {len(concepts)})")
    chosen = concepts[concept]
    field = chosen.field("class_dir")
    if not chosen.class_dir:
        raise InputError(f"{field}: prior preservation needs a folder for class images")
    folder = Path(chosen.class_dir)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{field}: {folder} is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    missing = chosen.num_class_images - count_class_images(folder)
    if missing <= 0:
        return 0
    logger.info("Generating %d class image(s) for '%s' with the base model", missing, chosen.class_prompt)
    for module in (parts.vae, parts.unet, *parts.text_encoders, *parts.frozen.values()):
        module.to(device)
    pipe = build_pipeline(parts, parts.unet)
    pipe.scheduler = sample_scheduler(pipe, pipe.scheduler, config.sampling.sampler)  # drawn as the samples are
    guiding = guidance_arguments(pipe, config.sampling.guidance_scale, negative=config.sampling.negative_prompt)
    guiding |= prompt_arguments(pipe, chosen.class_prompt)
    size = chosen.resolution
    start = _next_index(folder)
    for n in range(missing):
        generator = torch.Generator("cpu").manual_seed(config.training.seed * 100_003 + start + n)
        # By name: Flux.2's pipelines take a reference image first.
        image = pipe(prompt=chosen.class_prompt, width=size, height=size,
                     num_inference_steps=config.sampling.inference_steps,
                     **guiding, generator=generator, return_dict=False)[0][0]  # as sampling.draw
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        atomic_write_bytes(folder / f"class-{start + n:05d}.png", buffer.getvalue())
        logger.info("Class image %d of %d", n + 1, missing)
        if on_image is not None:
            on_image(n + 1, missing)
    return missing


def _next_index(folder: Path) -> int:
    taken = [int(p.stem.split("-")[1]) for p in folder.glob("class-*.png") if p.stem.split("-")[1].isdigit()]
    return max(taken, default=-1) + 1
