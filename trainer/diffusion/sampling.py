"""Preview images: the current model (with its adapters) draws fixed prompts with fixed seeds.

Written as PNGs to ``samples/step-NNNNNN/`` (atomically) and announced with a ``Sample`` event.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from trainer.diffusion.components import Components
from trainer.families import family
from trainer.fsutil import atomic_write_bytes
from trainer.sample_prompt import SAMPLERS, SamplePrompt, parse_sample_prompt


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
    parts: dict = {"vae": components.vae, model.denoiser: unet, "scheduler": scheduler, **components.frozen}
    for encoder, module, tokenizer in zip(model.text_encoders, components.text_encoders, components.tokenizers,
                                          strict=True):
        parts[encoder.component], parts[encoder.tokenizer] = module, tokenizer
    return prepared(getattr(diffusers, model.pipeline_class)(**parts, **model.pipeline_args), components.architecture)


def prepared(pipe, architecture: str):
    """``pipe`` ready to draw previews: quiet, and set up as its family says (``Family.pipeline_setup``)."""
    pipe.set_progress_bar_config(disable=True)
    set_up_pipeline(pipe, architecture)
    return pipe


def set_up_pipeline(pipe, architecture: str) -> None:
    """What the family sets on a pipeline beyond its constructor's arguments (``Family.pipeline_setup``)."""
    import importlib

    setup = family(architecture).pipeline_setup
    if setup is not None:
        module_name, function_name = setup.split(":")
        getattr(importlib.import_module(module_name), function_name)(pipe)


def plan_prompts(lines: list[str], seeds: list[int], width: int, height: int, steps: int, guidance: float,
                 negative: str = "", sampler: str = "default") -> list[SamplePrompt]:
    """Each prompt line with every option filled: the line's own (``--n``, ``--l``, ``--s`` … as in kohya's
    sample-prompt files), else the Sampling section's."""
    return [parse_sample_prompt(line).resolved(negative=negative, guidance=guidance, steps=steps, seeds=tuple(seeds),
                                               width=width, height=height, sampler=sampler) for line in lines]


@torch.no_grad()
def encode_sample_prompts(pipe, architecture: str, prompts: list[str], guidance: float,
                          device: str | torch.device, negative: str = "",
                          image: Any = None) -> dict[str, dict[str, torch.Tensor]]:
    """Each prompt line as the pipeline's own ``encode_prompt`` conditions on it (its negative prompt too, where
    the pipeline guides), on the CPU: previews can then run while the text encoders wait off the GPU.  The same
    call the pipeline makes for a prompt string, so an image drawn from these is the image drawn from the text.
    ``guidance`` and ``negative``: the Sampling section's, for the lines that do not set their own.  ``image``: the
    condition images an edit pipeline's ``encode_prompt`` shows its text encoder (Qwen-Image-Edit's), as its call
    passes them."""
    import inspect

    model = family(architecture)
    if not model.prompt_outputs:  # its call takes prompts as text only: it encodes each preview's itself
        return {}
    accepted = inspect.signature(pipe.encode_prompt).parameters

    def encoded(text: str, names: tuple[str | None, ...], guided: bool, negative_text: str | None) -> dict:
        options = {"prompt_2": None, "prompt_3": None,  # None: the same prompt for every encoder, as the call does
                   "device": device, "num_images_per_prompt": 1, "do_classifier_free_guidance": guided,
                   "negative_prompt": negative_text or None, "image": image}
        outputs = pipe.encode_prompt(text, **{k: v for k, v in options.items() if k in accepted})
        if isinstance(outputs, list):  # one output, a list of embeddings (ERNIE-Image's), not a tuple of them
            outputs = (outputs,)
        return {name: _moved(value, "cpu") for name, value in zip(names, outputs, strict=True)
                if name is not None and value is not None}

    result = {}
    for prompt in plan_prompts(list(dict.fromkeys(prompts)), [0], 64, 64, 1, guidance, negative):
        guided = prompt.guidance > model.guided_above
        entry = encoded(prompt.text, model.prompt_outputs, guided, prompt.negative)
        if model.negative_outputs and guided:  # the pipeline encodes its negative prompt alone
            entry |= encoded(prompt.negative or model.negative_prompt or "", model.negative_outputs, False, None)
        result[prompt.line] = entry
    return result


def _moved(value, device):
    """A tensor, or a pipeline's list of them (Z-Image: one embedding per prompt, each its own length), on
    ``device``."""
    if isinstance(value, list | tuple):
        return [item.to(device) for item in value]
    return value.to(device)


def guidance_arguments(pipe, guidance: float, encoded: bool = False, negative: str = "") -> dict:
    """The pipeline call's guidance: ``guidance_scale``, or the argument its family names (Qwen-Image:
    ``true_cfg_scale``), with the negative prompt (a person's, else the one the family needs to guide at all)
    unless the prompts come encoded."""
    from trainer.families import by_pipeline_class

    found = by_pipeline_class(type(pipe).__name__)
    model = found[0] if found else None
    arguments: dict = {model.guidance_argument if model else "guidance_scale": guidance,
                       **(model.call_arguments if model else {})}
    if encoded or model is None or guidance <= model.guided_above:
        return arguments
    if negative and model.negative_prompts:
        arguments["negative_prompt"] = negative
    elif model.negative_prompt is not None:
        arguments["negative_prompt"] = model.negative_prompt
    return arguments


def prompt_arguments(pipe, prompt: str) -> dict:
    """The call's arguments for ``prompt`` where the pipeline's family has its own (``Family.prompt_arguments``)."""
    import importlib

    from trainer.families import by_pipeline_class

    found = by_pipeline_class(type(pipe).__name__)
    if not found or found[0].prompt_arguments is None:
        return {}
    module_name, function_name = found[0].prompt_arguments.split(":")
    return getattr(importlib.import_module(module_name), function_name)(pipe, prompt)


def sample_scheduler(pipe, default, sampler: str):
    """The scheduler a preview is drawn with: the family's own (``default``), or the named one built from its
    configuration (same betas, prediction type and timestep spacing)."""
    if sampler == "default":
        return default
    import diffusers

    class_name, options = SAMPLERS[sampler]
    return getattr(diffusers, class_name).from_config(default.config, **options)


@torch.no_grad()
def draw(pipe, prompts: list[str], seeds: list[int], width: int, height: int, steps: int, guidance: float,
         out_dir: Path, progress: Callable[[int, int], None] | None = None,
         conditioning: dict[str, dict[str, torch.Tensor]] | None = None, negative: str = "",
         sampler: str = "default", call_arguments: dict[str, Any] | None = None,
         first_index: int = 0) -> tuple[list[str], list[str], list[int]]:
    """One image per (prompt line, seed); returns (paths, prompt lines, seeds) in file order.

    ``seeds`` … ``guidance``, ``negative`` and ``sampler`` are the Sampling section's, for the lines that do not set
    their own (``--d``, ``--w``, ``--h``, ``--s``, ``--l``, ``--n``, ``--ss``).
    ``progress(done, total)`` is called before the first image and after each one (SDXL samples take
    tens of seconds each on a GPU, minutes on a CPU: the GUI shows how far it is and keeps waiting).
    ``conditioning``: the prompts already encoded (:func:`encode_sample_prompts`, with the same ``guidance`` and
    ``negative``), for text encoders that are off the GPU; a line it lacks is drawn from its text.
    ``call_arguments``: more arguments for every call (an edit family's control image); ``first_index``: the number of
    the first prompt's files (``pII-seedS.png``), where several calls write into one folder."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plan = plan_prompts(prompts, seeds, width, height, steps, guidance, negative, sampler)
    paths, used_prompts, used_seeds = [], [], []
    total = sum(len(prompt.seeds) for prompt in plan)
    if progress is not None:
        progress(0, total)
    own_scheduler = pipe.scheduler
    try:
        for p_index, prompt in enumerate(plan):
            pipe.scheduler = sample_scheduler(pipe, own_scheduler, prompt.sampler)
            encoded = conditioning is not None and prompt.line in conditioning
            guiding = guidance_arguments(pipe, prompt.guidance, encoded, prompt.negative)
            for seed in prompt.seeds:
                generator = torch.Generator("cpu").manual_seed(seed)
                text: dict = {"prompt": prompt.text, **prompt_arguments(pipe, prompt.text)}
                if encoded:
                    device = pipe._execution_device
                    text = {name: _moved(value, device) for name, value in conditioning[prompt.line].items()}
                # The output as a tuple, images first: every pipeline's (Kandinsky 5 names its field ``image``).
                image = pipe(**text, **guiding, **(call_arguments or {}), width=prompt.width, height=prompt.height,
                             num_inference_steps=prompt.steps, generator=generator, output_type="pil",
                             return_dict=False)[0][0]
                buffer = io.BytesIO()
                image.save(buffer, format="PNG")
                path = out_dir / f"p{first_index + p_index:02d}-seed{seed}.png"
                atomic_write_bytes(path, buffer.getvalue())
                paths.append(str(path))
                used_prompts.append(prompt.line)
                used_seeds.append(seed)
                if progress is not None:
                    progress(len(paths), total)
    finally:
        pipe.scheduler = own_scheduler
    return paths, used_prompts, used_seeds
