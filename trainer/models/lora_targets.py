"""Does ``lora.target_modules`` name layers of this model's UNet?  Answered before the model loads.

peft matches a target ``t`` to every module whose path is ``t`` or ends in ``.t`` (``to_q`` matches
``down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q``), and adapts Linear and convolution
layers only.  A target that matches nothing used to be silently skipped (a typo trained less than asked)
or, when no target matched, stopped the run after loading the model with peft's error; a target that
matches only normalisation layers stopped it with a traceback.  The check builds the UNet from its
config on the ``meta`` device (no weights, well under a second even for SDXL) and lists its layers.

Where the config comes from: a diffusers folder's ``unet/config.json``; for a single file, the shipped
config its detected family loads with (``default_config_dir``).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from trainer.config import ConfigError
from trainer.errors import InputError

# The layer types peft's LoRA adapts (transformers' GPT-2 Conv1D is not in a UNet).
ADAPTABLE = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.Embedding)


def unet_layers(model_path: Path) -> dict[str, str] | None:
    """The UNet's module paths → their class names, from its config; ``None`` when they cannot be known
    cheaply (no config, an odd one): then loading the model reports what is wrong."""
    import diffusers

    from trainer.families import family
    from trainer.models import inspect_model
    from trainer.models.info import default_config_dir

    try:
        info = inspect_model(model_path)
        denoiser = family(info.architecture).denoiser
        folder = model_path if model_path.is_dir() else default_config_dir(info)
        config = json.loads((folder / denoiser / "config.json").read_text(encoding="utf-8"))
        model_class = getattr(diffusers, config.get("_class_name", "UNet2DConditionModel"))
        with torch.device("meta"):
            unet = model_class.from_config(config)
    except (InputError, OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return None
    return {name: type(module).__name__ for name, module in unet.named_modules() if name}


def matches(target: str, module: str) -> bool:
    """peft's rule for a list of target names."""
    return module == target or module.endswith("." + target)


def check_lora_targets(model_path: Path, targets: list[str]) -> None:
    """``ConfigError`` naming ``lora.target_modules`` when a target matches no layer LoRA can adapt."""
    layers = unet_layers(model_path)
    if layers is None:
        return
    adaptable = {name for name, kind in layers.items() if kind in {t.__name__ for t in ADAPTABLE}}
    missing, unadaptable = [], []
    for target in targets:
        matched = [name for name in layers if matches(target, name)]
        if not matched:
            missing.append(f"'{target}'")
        elif not any(name in adaptable for name in matched):
            kinds = "/".join(sorted({layers[name] for name in matched}))
            unadaptable.append(f"'{target}' names only {kinds} layers, which LoRA cannot adapt")
    if missing or unadaptable:
        found = f"{', '.join(missing)} {'matches' if len(missing) == 1 else 'match'} no layer" if missing else ""
        said = "; ".join(([found] if found else []) + unadaptable)
        # One line (one problem): the names that do exist are what the person needs to fix it.
        raise ConfigError([f"lora.target_modules: in the UNet of {model_path}, {said}. Its Linear and Conv "
                           f"layers end in: {', '.join(suffixes(adaptable))}"])


def suffixes(names: set[str]) -> list[str]:
    """The short names people write as targets: the last part of each path, with its parent when that part
    is a number (``to_out.0``)."""
    found = set()
    for name in names:
        parts = name.split(".")
        found.add(".".join(parts[-2:]) if parts[-1].isdigit() and len(parts) > 1 else parts[-1])
    return sorted(found)
