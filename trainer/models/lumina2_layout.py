"""Lumina 2's transformer between diffusers' layout and the original one (Alpha-VLLM's NextDiT: fused
``attention.qkv``, ``attention.out``, ``feed_forward.w1``…, what ComfyUI's Load Diffusion Model and kohya's Lumina
scripts read), both ways, for any width, from ``families.lumina2``'s tables.  diffusers' own
``convert_lumina2_to_diffusers`` reads what :func:`to_original` writes (tested at the real shape; it hard-codes the
real widths, so the tiny model goes back through :func:`to_diffusers`)."""

from __future__ import annotations

from typing import Any

import torch

from trainer.families.lumina2 import original_layout, original_parameters
from trainer.models import fused_layout


def to_original(state: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    """A diffusers state dict → original keys; ``ValueError`` naming a key it cannot place."""
    return fused_layout.to_original(state, original_layout(config), original_parameters(config), "Lumina 2")


def to_diffusers(original: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    """Original keys (no prefix) → a diffusers state dict (the inverse of :func:`to_original`)."""
    return fused_layout.to_diffusers(original, original_layout(config), original_parameters(config))


def pipeline_to_original(pipeline: Any) -> dict[str, torch.Tensor]:
    """A full or frozen run's transformer as the file ComfyUI's Load Diffusion Model takes for Lumina 2."""
    transformer = pipeline.transformer
    return to_original(transformer.state_dict(), dict(transformer.config))
