"""A model's parameter counts by component, read from its safetensors headers (nothing is loaded).

What the memory estimate and planner take as the model's size (``trainer/memory_estimate.py``): the Memory box's
device line, ``kamaal-train plan --model-sizes`` and the plan after an out-of-memory (``trainer/oom.py``).
"""

from __future__ import annotations

import math
from pathlib import Path

# Key prefixes of the original (single-file) checkpoint layout, by component.
SINGLE_FILE_PREFIXES = (("model.diffusion_model.", "unet"), ("first_stage_model.", "vae"),
                        ("cond_stage_model.", "text_encoder"), ("conditioner.embedders.0.", "text_encoder"),
                        ("conditioner.embedders.1.", "text_encoder_2"),
                        # SD 3.5 (Stability's files): its three encoders under text_encoders.
                        ("text_encoders.clip_l.", "text_encoder"), ("text_encoders.clip_g.", "text_encoder_2"),
                        ("text_encoders.t5xxl.", "text_encoder_3"))


def count_parameters(model: Path) -> dict[str, int]:
    """Parameters per component, read from safetensors headers only (nothing is loaded); {} when unknown."""
    from safetensors import safe_open

    def count(path: Path, split: bool) -> dict[str, int]:
        totals: dict[str, int] = {}
        with safe_open(str(path), framework="pt") as handle:
            for key in handle.keys():
                numel = math.prod(handle.get_slice(key).get_shape())
                component = next((name for prefix, name in SINGLE_FILE_PREFIXES if key.startswith(prefix)),
                                 "") if split else path.parent.name
                totals[component] = totals.get(component, 0) + numel
        return totals

    try:
        if model.is_file() and model.suffix == ".safetensors":
            return _single_file_components(model, count(model, split=True))
        totals: dict[str, int] = {}
        # Every component folder (unet or transformer, text_encoder … text_encoder_3, vae), whatever the family.
        for folder in sorted(p for p in model.iterdir() if p.is_dir()):
            for path in sorted(folder.glob("*.safetensors")):
                for name, numel in count(path, split=False).items():
                    totals[name] = totals.get(name, 0) + numel
        return totals
    except (OSError, ValueError):
        return {}


def _single_file_components(model: Path, totals: dict[str, int]) -> dict[str, int]:
    """A single file's counts under its family's names: the denoiser's weights (``model.diffusion_model.``, or
    every key of a transformer-only file such as Flux's) under ``transformer`` where the family says so."""
    from trainer.errors import InputError
    from trainer.families import family
    from trainer.models import inspect_model

    other = totals.pop("", 0)
    try:
        denoiser = family(inspect_model(model).architecture).denoiser
    except InputError:
        return totals
    if denoiser != "unet":
        totals[denoiser] = totals.pop("unet", 0) + other
    return totals
