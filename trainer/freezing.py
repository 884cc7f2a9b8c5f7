"""Freeze a model, then unfreeze the blocks a user named (frozen-layer fine-tuning).

Works on any ``torch.nn.Module``: the guide's toy network now, the UNet and text encoders
later.  Patterns are block names or globs: ``output_layer`` (that block and everything in
it), ``up_blocks.3``, ``*attn2*``.
"""

from __future__ import annotations

from collections import OrderedDict
from fnmatch import fnmatchcase
from pathlib import Path

import torch

from trainer.errors import InputError


def pattern_matches(parameter_name: str, pattern: str) -> bool:
    return fnmatchcase(parameter_name, pattern) or fnmatchcase(parameter_name, pattern + ".*")


def apply_trainable_patterns(model: torch.nn.Module, patterns: list[str], field: str = "frozen.trainable") -> int:
    """Freeze every parameter, then unfreeze those matching a pattern.  Returns the trainable count.

    A pattern that matches nothing is an input error naming the field and listing the blocks,
    so a typo never silently trains nothing.
    """
    names = [name for name, _ in model.named_parameters()]
    for pattern in patterns:
        if not any(pattern_matches(name, pattern) for name in names):
            blocks = ", ".join(block_tree(model, depth=1))
            raise InputError(f"{field}: '{pattern}' matches no block of the model (top-level blocks: {blocks})")
    trainable = 0
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(any(pattern_matches(name, pattern) for pattern in patterns))
        trainable += parameter.numel() if parameter.requires_grad else 0
    return trainable


def block_tree(model: torch.nn.Module, depth: int = 2) -> OrderedDict[str, tuple[int, int]]:
    """``{block name: (parameters, trainable parameters)}`` for blocks up to ``depth`` dots deep."""
    tree: OrderedDict[str, tuple[int, int]] = OrderedDict()
    for name, parameter in model.named_parameters():
        parts = name.split(".")[:-1] or [name]
        for level in range(1, min(depth, len(parts)) + 1):
            block = ".".join(parts[:level])
            total, trainable = tree.get(block, (0, 0))
            tree[block] = (total + parameter.numel(), trainable + (parameter.numel() if parameter.requires_grad else 0))
    return tree


def model_blocks(model_path: Path, depth: int = 2, trainable: list[str] | tuple[str, ...] = (),
                 text_encoder_files: list[str] | None = None, vae_file: str = "",
                 tokenizer_folder: str = "") -> dict[str, list]:
    """The block tree of a model's UNet and text encoder(s) with parameter counts, as plain data.

    ``trainable`` patterns (as in ``frozen.trainable``) apply to the UNet and mark what a frozen-layer run would
    train.  Shared by ``kamaal-train blocks`` and the GUI's block tree (through the ``inspect-blocks`` task).
    """
    from trainer.families import family
    from trainer.models import load_model

    loaded = load_model(Path(model_path), text_encoder_files=text_encoder_files, vae_file=vae_file,
                        tokenizer_folder=tokenizer_folder)
    denoiser = family(loaded.info.architecture).denoiser
    modules = {name: getattr(loaded.pipeline, name) for name in family(loaded.info.architecture).component_names}
    report: dict[str, list[dict]] = {}
    for name, module in modules.items():
        if module is None:  # an optional encoder the model is loaded without (SD 3.5's T5)
            continue
        if name == denoiser and trainable:
            apply_trainable_patterns(module, list(trainable))
        else:
            module.requires_grad_(False)
        report[name] = [{"block": block, "parameters": total, "trainable": trained}
                        for block, (total, trained) in block_tree(module, depth).items()]
    return report
