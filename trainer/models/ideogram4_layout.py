"""Ideogram 4's transformer between diffusers' layout and Ideogram's own (fused ``attention.qkv``, ``attention.o``;
every other weight under the same name: what ComfyUI's Load Diffusion Model reads from ``ideogram4*.safetensors``,
bare keys), both ways, for any width, from ``families.ideogram4``'s table."""

from __future__ import annotations

from typing import Any

import torch

from trainer.families.ideogram4 import original_layout
from trainer.models import fused_layout


def same_names(config: dict) -> dict[str, str]:
    """The parameters outside the layout's Linear layers, named alike on both sides (norm scales, the indicator)."""
    names = ["llm_cond_norm.weight", "embed_image_indicator.weight"]
    for i in range(int(config["num_layers"])):
        names += [f"layers.{i}.attention.norm_q.weight", f"layers.{i}.attention.norm_k.weight"]
        names += [f"layers.{i}.{norm}.weight" for norm in ("attention_norm1", "attention_norm2", "ffn_norm1",
                                                            "ffn_norm2")]
    return {name: name for name in names}


def to_original(state: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    """A diffusers state dict → Ideogram's keys; ``ValueError`` naming a key it cannot place."""
    return fused_layout.to_original(state, original_layout(config), same_names(config), "Ideogram 4")


def to_diffusers(original: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    """Ideogram's keys → a diffusers state dict (the inverse of :func:`to_original`)."""
    return fused_layout.to_diffusers(original, original_layout(config), same_names(config))


def pipeline_to_original(pipeline: Any) -> dict[str, torch.Tensor]:
    """A full or frozen run's (conditional) transformer as the file ComfyUI's Load Diffusion Model takes for Ideogram 4;
    the unconditional one is unchanged by training (the run's diffusers folder holds it too)."""
    transformer = pipeline.transformer
    return to_original(transformer.state_dict(), dict(transformer.config))
