"""A transformer's weights between diffusers' layout and an original one that fuses layers (Flux's BFL layout,
SD 3.5's MMDiT): both directions, for any width, from a family's layout table.

A layout maps each diffusers module to (original module, first output row, rows, the original layer's rows,
halves swapped); rows 0 means the whole layer.  A fused original layer is its diffusers parts concatenated
along the output rows (q, k, v in one ``qkv``); a swapped one holds its two halves the other way round
(diffusers' final norms are (scale, shift), the originals' (shift, scale)).  ``renames`` are single parameters
renamed as they are (norm scales, a positional table).  Both directions are exact: concatenation and slicing.
"""

from __future__ import annotations

import torch

Layout = dict[str, tuple[str, int, int, int, bool]]


def swapped(tensor: torch.Tensor) -> torch.Tensor:
    first, second = tensor.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


def to_original(state: dict[str, torch.Tensor], layout: Layout, renames: dict[str, str],
                what: str = "original-layout") -> dict[str, torch.Tensor]:
    """A diffusers state dict → original keys; ``ValueError`` naming a key it cannot place."""
    out: dict[str, torch.Tensor] = {}
    fused: dict[str, list[tuple[int, torch.Tensor]]] = {}
    used: set[str] = set()
    for module, (original, offset, rows, _, swap) in layout.items():
        for kind in ("weight", "bias"):
            key = f"{module}.{kind}"
            if key not in state:
                continue  # a layer this model does not have (schnell's guidance embedder)
            used.add(key)
            if rows == 0:
                out[f"{original}.{kind}"] = swapped(state[key]) if swap else state[key]
            else:
                fused.setdefault(f"{original}.{kind}", []).append((offset, state[key]))
    for key, parts in fused.items():
        out[key] = torch.cat([tensor for _, tensor in sorted(parts, key=lambda part: part[0])], dim=0)
    for key, original in renames.items():
        if key in state:
            out[original] = state[key]
            used.add(key)
    unplaced = sorted(set(state) - used)
    if unplaced:
        raise ValueError(f"no {what} name for {', '.join(unplaced[:5])}")
    return out


def to_diffusers(original: dict[str, torch.Tensor], layout: Layout,
                 renames: dict[str, str]) -> dict[str, torch.Tensor]:
    """Original keys → a diffusers state dict (the inverse of :func:`to_original`); keys it does not know are
    left out (the loader names what is missing or extra against the model)."""
    out: dict[str, torch.Tensor] = {}
    for module, (name, offset, rows, _, swap) in layout.items():
        for kind in ("weight", "bias"):
            key = f"{name}.{kind}"
            if key not in original:
                continue
            tensor = original[key]
            # A part of a fused layer is copied out: a view would share the fused tensor's storage, which
            # safetensors refuses to save (a model trained from the file is saved later).
            out[f"{module}.{kind}"] = (swapped(tensor) if swap else tensor) if rows == 0 \
                else tensor[offset: offset + rows].clone()
    for key, name in renames.items():
        if name in original:
            out[key] = original[name]
    return out


def unknown_keys(original: dict[str, torch.Tensor], layout: Layout, renames: dict[str, str]) -> list[str]:
    """The original keys neither the layout nor the renames place (a file of another shape or model)."""
    known = {f"{name}.{kind}" for name, *_ in layout.values() for kind in ("weight", "bias")} | set(renames.values())
    return sorted(set(original) - known)
