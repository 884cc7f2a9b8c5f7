"""Krea 2's transformer between diffusers' layout and the original one (krea-ai's ``SingleStreamDiT``: ``first``,
``blocks.N.attn.wq``, ``txtfusion.…``, ``last.…`` — the released ``raw.safetensors``/``turbo.safetensors``, what
ComfyUI's Load Diffusion Model reads), both ways, for any width, from ``families.krea2``'s tables.  The one change
of shape: a main block's modulation table is (6, width) in diffusers and flat (6·width) in the original.  diffusers'
own ``convert_krea2_transformer_checkpoint_to_diffusers`` reads what :func:`to_original` writes (tested)."""

from __future__ import annotations

from typing import Any

import torch

from trainer.families.krea2 import original_layout, original_parameters
from trainer.models import fused_layout

MODULATION = ".mod.lin"  # a main block's flat table in the original layout


def to_original(state: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    """A diffusers state dict → original keys; ``ValueError`` naming a key it cannot place."""
    out = fused_layout.to_original(state, original_layout(config), original_parameters(config), "Krea 2")
    return {key: value.reshape(-1) if key.endswith(MODULATION) else value for key, value in out.items()}


def to_diffusers(original: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    """Original keys (no prefix) → a diffusers state dict (the inverse of :func:`to_original`)."""
    tables = {key: value.reshape(6, -1) if key.endswith(MODULATION) else value for key, value in original.items()}
    return fused_layout.to_diffusers(tables, original_layout(config), original_parameters(config))


def unknown_keys(original: dict[str, torch.Tensor], config: dict) -> list[str]:
    """The original keys the layout places nowhere (a file of another model or shape)."""
    return fused_layout.unknown_keys(original, original_layout(config), original_parameters(config))


def pipeline_to_original(pipeline: Any) -> dict[str, torch.Tensor]:
    """A full or frozen run's transformer as the file ComfyUI's Load Diffusion Model takes for Krea 2."""
    transformer = pipeline.transformer
    return to_original(transformer.state_dict(), dict(transformer.config))
