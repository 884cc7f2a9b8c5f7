"""A LoRA baked into a base model: W ← W + strength · ΔW for every module the LoRA changes.

SD 1.x/2.x/SDXL: the base model (diffusers folder or single file) is loaded once; the LoRA's modules (kohya or diffusers
format, read by ``lora_files``) are matched against the model's own module names, so nothing depends on
guessing where the dots went.  Each ΔW is computed in float32 and added to the weight in its stored
dtype.  The result is written as a diffusers folder, a single-file checkpoint, or both.

The transformer families (Flux.1, Z-Image, Qwen-Image, SD 3.5, …) are fused tensor by tensor into their diffusers
folder by ``fuse_transformer``, from the diffusers LoRA file or the kohya/ComfyUI one in the family's original layout.

Refusals name their reason: a LoRA for another family (SDXL vs SD 1.x/2.x), a module the model does
not have, or a weight of another size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from trainer import families
from trainer.errors import InputError
from trainer.lora_names import kohya_name
from trainer.merge.convert import pick_dtype, require_safetensors_name, save_pipeline_file, save_pipeline_folder
from trainer.merge.lora_files import LoraSet, read_lora
from trainer.merge.outputs import NullReporter, Reporter, guard_output, provenance, require_input
from trainer.models.info import DISPLAY_NAME


@dataclass
class FuseSummary:
    outputs: list[Path]
    modules: int
    architecture: str
    notes: list[str] = field(default_factory=list)


def lora_targets(pipeline: Any, architecture: str) -> dict[str, torch.nn.Module]:
    """Kohya module name → the model's module with that name (every module that has a weight)."""
    targets: dict[str, torch.nn.Module] = {}
    two_encoders = len(families.family(architecture).text_encoders) > 1
    for component in families.family(architecture).component_names:
        model = getattr(pipeline, component, None)
        if model is None:
            continue
        for name, module in model.named_modules():
            if name and isinstance(getattr(module, "weight", None), torch.Tensor):
                targets[kohya_name(component, name, two_encoders)] = module
    return targets


def check_lora_fits(lora: LoraSet, label: str, architecture: str, targets: dict[str, torch.nn.Module]) -> None:
    family = lora.family()
    if family is not None and family != families.kohya_facts(architecture).lora_family:
        which = families.lora_family_facts(family).lora_family_label
        raise InputError(f"{label} is a LoRA for {which}, but the base model is {DISPLAY_NAME[architecture]}")
    for name, module in lora.modules.items():
        target = targets.get(name)
        if target is None:
            raise InputError(f"{label}: module {name} is not in the base model ({DISPLAY_NAME[architecture]}); "
                             "the LoRA was trained on a different model")
        if tuple(target.weight.shape) != module.weight_shape():
            raise InputError(f"{label}: module {name} changes a {list(module.weight_shape())} weight, but the base "
                             f"model's is {list(target.weight.shape)}; the LoRA was trained on a different model")


@torch.no_grad()
def apply_lora(targets: dict[str, torch.nn.Module], lora: LoraSet, strength: float) -> None:
    for name, module in lora.modules.items():
        weight = targets[name].weight
        weight.copy_((weight.float() + module.delta().to(weight.device) * strength).to(weight.dtype))


def refuse_non_finite_fused(pipeline: Any, lora_modules: set[str], base: Path) -> None:
    """Refuse (before anything is written) a fused model holding NaN or infinity: the base model's own weights
    were broken, or a LoRA's sum overflowed the dtype.  The LoRAs' own tensors were checked when read."""
    for component in ("unet", "text_encoder", "text_encoder_2", "vae"):
        model = getattr(pipeline, component, None)
        if not isinstance(model, torch.nn.Module):
            continue
        for name, weight in model.named_parameters():
            if weight.is_floating_point() and not bool(torch.isfinite(weight).all()):
                bad = int((~torch.isfinite(weight)).sum())
                module = kohya_name(component, name.rsplit(".", 1)[0], component == "text_encoder_2" or
                                    getattr(pipeline, "text_encoder_2", None) is not None)
                why = (f"the LoRA's change overflows {weight.dtype}, or the base weight was already broken"
                       if module in lora_modules else "the base model's weight is broken")
                raise InputError(f"base model: {base}: {component} tensor {name} holds {bad} NaN or infinite "
                                 f"value(s) after fusing ({why}); nothing was written")


def fuse_lora(model: Path | str, loras: list[tuple[Path | str, float]], *, output_dir: Path | str | None = None,
              output_file: Path | str | None = None, dtype: str = "auto", config_dir: Path | str | None = None,
              reporter: Reporter | None = None) -> FuseSummary:
    """Fuse LoRAs (path, strength) into ``model``; write ``output_dir`` (diffusers) and/or ``output_file``."""
    from trainer.merge.sources import refuse_unmergeable
    from trainer.models import inspect_model, load_model

    reporter = reporter or NullReporter()
    if not loras:
        raise InputError("LoRA: choose at least one LoRA to fuse")
    if not (output_dir or output_file):
        raise InputError("output: give a diffusers folder, a single-file path, or both")
    base = require_input(model, "base model")
    info = inspect_model(base) if config_dir is None else None
    if info is not None:
        refuse_unmergeable(info, base, "base", transformers=True)
    labels = [f"LoRA {i + 1}" if len(loras) > 1 else "LoRA" for i in range(len(loras))]
    lora_paths = [require_input(path, label) for (path, _), label in zip(loras, labels, strict=True)]
    inputs = [base, *lora_paths]
    folder = guard_output(output_dir, inputs, "output folder") if output_dir else None
    single = guard_output(output_file, inputs, "output file") if output_file else None
    if single is not None:
        require_safetensors_name(single)
    if folder is not None and single is not None and single.resolve().is_relative_to(folder.resolve()):
        raise InputError(f"output file: {single} is inside the output folder {folder}; put it beside the folder")
    strengths = []
    for (_, strength), label in zip(loras, labels, strict=True):
        if not math.isfinite(float(strength)):
            raise InputError(f"{label}: strength must be a finite number, got {strength}")
        strengths.append(float(strength))
    if info is not None and families.family(info.architecture).kind == "transformer":
        return _fuse_transformer(base, info.architecture, list(zip(lora_paths, strengths, labels, strict=True)),
                                 folder, single, dtype, reporter)
    sets = [read_lora(path, label) for path, label in zip(lora_paths, labels, strict=True)]
    total = 2 + len(sets) + (folder is not None) + (single is not None)
    reporter.progress(0, total, f"Loading {base.name}…")
    loaded = load_model(base, dtype=pick_dtype(dtype, base), config_dir=config_dir)
    architecture = loaded.info.architecture
    targets = lora_targets(loaded.pipeline, architecture)
    for lora, label in zip(sets, labels, strict=True):
        check_lora_fits(lora, label, architecture, targets)
    reporter.check_cancelled()
    for step, (lora, strength, label) in enumerate(zip(sets, strengths, labels, strict=True), start=1):
        reporter.progress(step, total, f"Fusing {label} ({len(lora.modules)} modules, strength {strength:g})…")
        apply_lora(targets, lora, strength)
        reporter.check_cancelled()
    refuse_non_finite_fused(loaded.pipeline, {name for lora in sets for name in lora.modules}, base)
    metadata = provenance("fuse_lora", {"base": base.resolve(), **{lb: p.resolve() for lb, p in
                                                                    zip(labels, lora_paths, strict=True)}},
                          {"strengths": strengths, "dtype": dtype})
    outputs: list[Path] = []
    done = 1 + len(sets)
    if folder is not None:
        reporter.progress(done, total, f"Writing the diffusers folder {folder.name}…")
        outputs.append(save_pipeline_folder(loaded.pipeline, folder, metadata))
        done += 1
        reporter.check_cancelled()
    if single is not None:
        reporter.progress(done, total, f"Writing {single.name}…")
        outputs.append(save_pipeline_file(loaded.pipeline, architecture, loaded.info.prediction_type, single,
                                          metadata, reporter))
    reporter.progress(total, total, "Done")
    return FuseSummary(outputs, sum(len(s.modules) for s in sets), architecture)


def _fuse_transformer(base: Path, architecture: str, loras: list[tuple[Path, float, str]], folder: Path | None,
                      single: Path | None, dtype: str, reporter: Reporter) -> FuseSummary:
    """A transformer family's folder, fused tensor by tensor (``fuse_transformer``), in the base's own precision."""
    from trainer.merge.fuse_transformer import fuse_into_folder

    if dtype != "auto":
        raise InputError(f"dtype: a {DISPLAY_NAME[architecture]} model is fused in the precision it is stored in "
                         f"(--dtype auto), got {dtype!r}")
    metadata = provenance("fuse_lora", {"base": base.resolve(), **{label: path.resolve() for path, _, label in loras}},
                          {"strengths": [strength for _, strength, _ in loras], "dtype": dtype})
    outputs, modules = fuse_into_folder(base, architecture, loras, folder, single, metadata, reporter)
    return FuseSummary(outputs, modules, architecture)
