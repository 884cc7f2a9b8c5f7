"""Preview images: the current model (with its adapters) draws fixed prompts with fixed seeds.

Written as PNGs to ``samples/step-NNNNNN/`` (atomically) and announced with a ``Sample`` event.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import torch

from trainer.diffusion.components import Components
from trainer.families import family
from trainer.fsutil import atomic_write_bytes


def build_pipeline(components: Components, unet: torch.nn.Module):
    """A diffusers pipeline sharing the training modules (no copies); ``unet`` is the unwrapped UNet."""
    import diffusers

    model = family(components.architecture)
    if model.sample_scheduler is not None:
        scheduler = getattr(diffusers, model.sample_scheduler).from_config(components.sample_scheduler_config)
        scheduler.register_to_config(prediction_type=components.prediction_type)
    else:  # the model's own scheduler (flow matching: its shift, its dynamic shifting)
        scheduler = getattr(diffusers, components.sample_scheduler_class).from_config(
            components.sample_scheduler_config)
    parts: dict = {"vae": components.vae, model.denoiser: unet, "scheduler": scheduler}
    for encoder, module, tokenizer in zip(model.text_encoders, components.text_encoders, components.tokenizers,
                                          strict=True):
        parts[encoder.component], parts[encoder.tokenizer] = module, tokenizer
    pipe = getattr(diffusers, model.pipeline_class)(**parts, **model.pipeline_args)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@torch.no_grad()
def encode_sample_prompts(pipe, architecture: str, prompts: list[str], guidance: float,
                          device: str | torch.device) -> dict[str, dict[str, torch.Tensor]]:
    """Each prompt as the pipeline's own ``encode_prompt`` conditions on it (the negative side too, where the
    pipeline guides), on the CPU: previews can then run while the text encoders wait off the GPU.  The same
    call the pipeline makes for a prompt string, so an image drawn from these is the image drawn from the text."""
    import inspect

    accepted = inspect.signature(pipe.encode_prompt).parameters
    model = family(architecture)
    options = {"prompt_2": None, "prompt_3": None,  # None: the same prompt for every encoder, as the call does
               "device": device, "num_images_per_prompt": 1,
               "do_classifier_free_guidance": guidance > model.guided_above}
    options = {k: v for k, v in options.items() if k in accepted}

    def encoded(prompt: str, names: tuple[str | None, ...]) -> dict[str, torch.Tensor]:
        outputs = pipe.encode_prompt(prompt, **options)
        return {name: _moved(value, "cpu") for name, value in zip(names, outputs, strict=True)
                if name is not None and value is not None}

    negative = {}
    if model.negative_outputs and guidance > model.guided_above:  # the pipeline encodes its negative prompt alone
        negative = encoded(model.negative_prompt or "", model.negative_outputs)
    return {prompt: encoded(prompt, model.prompt_outputs) | negative for prompt in dict.fromkeys(prompts)}


def _moved(value, device):
    """A tensor, or a pipeline's list of them (Z-Image: one embedding per prompt, each its own length), on
    ``device``."""
    if isinstance(value, list | tuple):
        return [item.to(device) for item in value]
    return value.to(device)


def guidance_arguments(pipe, guidance: float, encoded: bool = False) -> dict:
    """The pipeline call's guidance: ``guidance_scale``, or the argument its family names (Qwen-Image:
    ``true_cfg_scale``, with the negative prompt it needs to guide at all, unless the prompts come encoded)."""
    from trainer.families import by_pipeline_class

    found = by_pipeline_class(type(pipe).__name__)
    if not found:
        return {"guidance_scale": guidance}
    model = found[0]
    arguments: dict = {model.guidance_argument: guidance}
    if model.negative_prompt is not None and guidance > model.guided_above and not encoded:
        arguments["negative_prompt"] = model.negative_prompt
    return arguments


@torch.no_grad()
def draw(pipe, prompts: list[str], seeds: list[int], width: int, height: int, steps: int, guidance: float,
         out_dir: Path, progress: Callable[[int, int], None] | None = None,
         conditioning: dict[str, dict[str, torch.Tensor]] | None = None) -> tuple[list[str], list[str], list[int]]:
    """One image per (prompt, seed); returns (paths, prompts, seeds) in file order.

    ``progress(done, total)`` is called before the first image and after each one (SDXL samples take
    tens of seconds each on a GPU, minutes on a CPU: the GUI shows how far it is and keeps waiting).
    ``conditioning``: the prompts already encoded (:func:`encode_sample_prompts`), for text encoders that are
    off the GPU."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths, used_prompts, used_seeds = [], [], []
    total = len(prompts) * len(seeds)
    if progress is not None:
        progress(0, total)
    guiding = guidance_arguments(pipe, guidance, conditioning is not None)
    for p_index, prompt in enumerate(prompts):
        for seed in seeds:
            generator = torch.Generator("cpu").manual_seed(seed)
            text: dict = {"prompt": prompt}
            if conditioning is not None:
                device = pipe._execution_device
                text = {name: _moved(value, device) for name, value in conditioning[prompt].items()}
            image = pipe(**text, **guiding, width=width, height=height, num_inference_steps=steps,
                         generator=generator, output_type="pil").images[0]
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            path = out_dir / f"p{p_index:02d}-seed{seed}.png"
            atomic_write_bytes(path, buffer.getvalue())
            paths.append(str(path))
            used_prompts.append(prompt)
            used_seeds.append(seed)
            if progress is not None:
                progress(len(paths), total)
    return paths, used_prompts, used_seeds
