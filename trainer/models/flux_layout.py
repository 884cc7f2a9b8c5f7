"""Flux's transformer between diffusers' layout and Black Forest Labs' (the ``flux1-dev.safetensors`` that
ComfyUI, Forge and kohya load), for any width: the layout facts are ``trainer.families.flux``'s.

Fused BFL layers are the diffusers parts concatenated along the output rows (a double block's ``qkv`` is
q, k, v; a single block's ``linear1`` is q, k, v and the MLP input); the final norm's linear holds its
halves the other way round.  Both directions are exact (concatenation and slicing only).
"""

from __future__ import annotations

import torch

from trainer.families.flux import bfl_layout, bfl_norms


def _swapped(tensor: torch.Tensor) -> torch.Tensor:
    first, second = tensor.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


def to_original(state: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    """A diffusers ``FluxTransformer2DModel`` state dict → BFL keys; ``ValueError`` for a key it cannot place."""
    layout, norms = bfl_layout(config), bfl_norms(config)
    out: dict[str, torch.Tensor] = {}
    fused: dict[str, list[tuple[int, torch.Tensor]]] = {}
    used: set[str] = set()
    for module, (original, offset, rows, _, swap) in layout.items():
        for kind in ("weight", "bias"):
            key = f"{module}.{kind}"
            if key not in state:
                continue  # schnell has no guidance embedder
            used.add(key)
            if rows == 0:
                out[f"{original}.{kind}"] = _swapped(state[key]) if swap else state[key]
            else:
                fused.setdefault(f"{original}.{kind}", []).append((offset, state[key]))
    for key, parts in fused.items():
        out[key] = torch.cat([tensor for _, tensor in sorted(parts, key=lambda part: part[0])], dim=0)
    for key, original in norms.items():
        if key in state:
            out[original] = state[key]
            used.add(key)
    unplaced = sorted(set(state) - used)
    if unplaced:
        raise ValueError(f"no original-layout (BFL) name for {', '.join(unplaced[:5])}")
    return out


def to_diffusers(original: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    """BFL keys → a diffusers ``FluxTransformer2DModel`` state dict (the inverse of :func:`to_original`)."""
    layout, norms = bfl_layout(config), bfl_norms(config)
    out: dict[str, torch.Tensor] = {}
    for module, (name, offset, rows, _, swap) in layout.items():
        for kind in ("weight", "bias"):
            key = f"{name}.{kind}"
            if key not in original:
                continue
            tensor = original[key]
            out[f"{module}.{kind}"] = (_swapped(tensor) if swap else tensor) if rows == 0 \
                else tensor[offset: offset + rows]
    for key, name in norms.items():
        if name in original:
            out[key] = original[name]
    return out


def pipeline_to_original(pipeline: object) -> dict[str, torch.Tensor]:
    """A Flux pipeline's transformer as the single file ComfyUI's "Load Diffusion Model", Forge and kohya load
    (BFL keys, the transformer only: the text encoders and the VAE are files of their own for Flux)."""
    transformer = pipeline.transformer  # type: ignore[attr-defined]
    return to_original(transformer.state_dict(), dict(transformer.config))
