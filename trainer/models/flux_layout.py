"""Flux's transformer between diffusers' layout and Black Forest Labs' (the ``flux1-dev.safetensors`` that
ComfyUI, Forge and kohya load), for any width: the layout facts are ``trainer.families.flux``'s, the conversion
``fused_layout``'s.

Fused BFL layers are the diffusers parts concatenated along the output rows (a double block's ``qkv`` is
q, k, v; a single block's ``linear1`` is q, k, v and the MLP input); the final norm's linear holds its
halves the other way round.  Both directions are exact (concatenation and slicing only).
"""

from __future__ import annotations

import torch

from trainer.families.flux import bfl_layout, bfl_norms
from trainer.models import fused_layout


def to_original(state: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    """A diffusers ``FluxTransformer2DModel`` state dict → BFL keys; ``ValueError`` for a key it cannot place."""
    return fused_layout.to_original(state, bfl_layout(config), bfl_norms(config), "original-layout (BFL)")


def to_diffusers(original: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    """BFL keys → a diffusers ``FluxTransformer2DModel`` state dict (the inverse of :func:`to_original`)."""
    return fused_layout.to_diffusers(original, bfl_layout(config), bfl_norms(config))


def pipeline_to_original(pipeline: object) -> dict[str, torch.Tensor]:
    """A Flux pipeline's transformer as the single file ComfyUI's "Load Diffusion Model", Forge and kohya load
    (BFL keys, the transformer only: the text encoders and the VAE are files of their own for Flux)."""
    transformer = pipeline.transformer  # type: ignore[attr-defined]
    return to_original(transformer.state_dict(), dict(transformer.config))
