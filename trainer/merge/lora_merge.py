"""LoRA with LoRA: several LoRAs, each with a weight, into one.

* **Exact** (stacked ranks): the modules' down matrices are stacked, and their up matrices side by side,
  each up scaled by ``weight · alpha / rank``; alpha is set to the stacked rank so the file's own scale
  is 1.  Then ``up @ down = Σ wᵢ·ΔWᵢ`` exactly: the result equals applying all the LoRAs.  The rank is
  the sum of the inputs' ranks.
* **Compact** (SVD): the same sum, truncated to a target rank by its singular value decomposition
  (the best rank-k approximation in the Frobenius norm).  ΔW is never formed: with U (out×R) and
  D (R×in) stacked as above, QR of U and of Dᵀ leaves an R×R core whose SVD gives ΔW's, so an SDXL
  LoRA resizes in seconds.  The error reported is ‖ΔW − ΔWₖ‖ / ‖ΔW‖ over all modules (and the
  worst module), straight from the discarded singular values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from trainer import families
from trainer.errors import InputError
from trainer.merge.family_loras import family_metadata, kamaal_architecture
from trainer.merge.lora_files import LoraModule, LoraSet, kohya_metadata, read_lora, save_lora
from trainer.merge.outputs import NullReporter, Reporter, guard_output, provenance, require_input

Mode = Literal["exact", "svd"]


@dataclass
class LoraMergeSummary:
    output: Path
    modules: int
    rank: int  # largest module rank in the result
    relative_error: float = 0.0  # ‖ΔW − ΔWₖ‖ / ‖ΔW‖ over all modules; 0 for the exact merge
    worst_module: str = ""
    worst_error: float = 0.0
    module_errors: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # for people: the family and layout, inputs converted


def match_layouts(loras: list[LoraSet], labels: list[str], fmt: str | None) -> list[LoraSet]:
    """Transformer-family LoRAs (``family_loras``) of one family, all in one layout: ``fmt``'s ('kohya': the original
    layout, 'diffusers'), else the first input's.  Each file of another layout is converted exactly, where Kamaal
    knows the family's mapping; refused by name otherwise, as are an SD LoRA among them and LoRAs of two families."""
    from dataclasses import replace

    from trainer.merge import family_loras

    first = next(label for label, lora in zip(labels, loras, strict=True) if lora.layout)
    for label, lora in zip(labels, loras, strict=True):
        if not lora.layout:
            raise InputError(f"{label} is a LoRA for a Stable Diffusion UNet but {first} is for a transformer model "
                             f"({family_loras.describe(loras[labels.index(first)])}); they cannot be merged")
    common: set[str] | None = None
    named = ""
    for label, lora in zip(labels, loras, strict=True):
        if not lora.lora_families:
            continue
        if common is not None and not common & set(lora.lora_families):
            raise InputError(f"{label} is a LoRA for {family_loras.describe(lora)} but {named} is for "
                             f"{' or '.join(family_loras.label(f) for f in sorted(common))}; "
                             "LoRAs for different base models cannot be merged")
        common = set(lora.lora_families) if common is None else common & set(lora.lora_families)
        named = named or label
    possible = tuple(f for f in family_loras.transformer_lora_families() if common is None or f in common)
    target = {"kohya": family_loras.ORIGINAL, "diffusers": family_loras.DIFFUSERS}.get(fmt or "", loras[0].layout)
    matched = []
    for label, lora in zip(labels, loras, strict=True):
        lora = replace(lora, lora_families=possible if common is not None else lora.lora_families)
        matched.append(family_loras.convert_layout(lora, target, label))
    prefix = family_loras.denoiser_prefix(loras[0] if loras[0].layout == target else matched[0])
    return [family_loras.with_denoiser_prefix(lora, prefix) for lora in matched]


def check_loras_compatible(loras: list[LoraSet], labels: list[str]) -> str | None:
    """Refuse LoRAs made for different models (``InputError`` naming the reason); return the family."""
    found = {label: lora.family() for label, lora in zip(labels, loras, strict=True)}
    known = {label: f for label, f in found.items() if f is not None}
    if len(set(known.values())) > 1 and not loras[0].layout:  # transformer families: ``match_layouts`` refused them
        (l1, f1), (l2, f2) = list(known.items())[:2]
        if f1 == f2:
            l2, f2 = next((label, f) for label, f in known.items() if f != f1)
        label1, label2 = (families.lora_family_facts(f).lora_family_label for f in (f1, f2))
        raise InputError(f"{l2} is a LoRA for {label2} but {l1} is for {label1}; "
                         "LoRAs for different base models cannot be merged")
    shapes: dict[str, tuple[str, tuple[int, ...]]] = {}
    for label, lora in zip(labels, loras, strict=True):
        for name, module in lora.modules.items():
            shape = module.weight_shape()
            if name in shapes and shapes[name][1] != shape:
                first_label, first_shape = shapes[name]
                raise InputError(f"{label}: module {name} changes a {list(shape)} weight but in {first_label} a "
                                 f"{list(first_shape)} one; the LoRAs were trained on different base models")
            shapes.setdefault(name, (label, shape))
    return next(iter(known.values()), None)


def merge_lora_sets(loras: list[LoraSet], weights: list[float], mode: Mode = "exact",
                    rank: int | None = None) -> tuple[LoraSet, dict[str, tuple[float, float]]]:
    """The merged LoRA, and for SVD each module's (discarded energy, total energy)."""
    names = sorted({name for lora in loras for name in lora.modules})
    merged: dict[str, LoraModule] = {}
    energies: dict[str, tuple[float, float]] = {}
    for name in names:
        present = [(lora.modules[name], w) for lora, w in zip(loras, weights, strict=True) if name in lora.modules]
        dtype = present[0][0].down.dtype
        for module, _ in present[1:]:
            dtype = torch.promote_types(dtype, module.down.dtype)
        downs = torch.cat([m.down.double() for m, _ in present], dim=0)
        ups = torch.cat([m.up.double() * (w * m.scale) for m, w in present], dim=1)
        if mode == "exact":
            merged[name] = LoraModule(downs.to(dtype), ups.to(dtype), float(downs.shape[0]))
            continue
        module, energy = _truncate(downs, ups, int(rank or 0))
        merged[name] = LoraModule(module.down.to(dtype), module.up.to(dtype), module.alpha)
        energies[name] = energy
    first = loras[0]
    architecture = kamaal_architecture(first.metadata)  # what the merge says it is for: the first input's family
    return LoraSet(merged, {"kamaal.family": architecture} if architecture else {}, first.source_format,
                   first.layout, first.lora_families), energies


def _truncate(downs: torch.Tensor, ups: torch.Tensor, rank: int) -> tuple[LoraModule, tuple[float, float]]:
    """Best rank-``rank`` factors of ups @ downs (float64), via QR of each factor and an R×R SVD."""
    q_up, r_up = torch.linalg.qr(ups.flatten(1))
    q_down, r_down = torch.linalg.qr(downs.flatten(1).T)
    u, s, vh = torch.linalg.svd(r_up @ r_down.T)
    k = max(1, min(rank, int(s.shape[0])))
    root = s[:k].sqrt()
    up = (q_up @ u[:, :k]) * root
    down = ((q_down @ vh.T[:, :k]) * root).T
    up = up.reshape(ups.shape[0], k, *ups.shape[2:])
    down = down.reshape(k, *downs.shape[1:])
    discarded, total = float((s[k:] ** 2).sum()), float((s ** 2).sum())
    return LoraModule(down, up, float(k)), (discarded, total)


def merge_loras(inputs: list[tuple[Path | str, float]], output: Path | str, *, mode: Mode = "exact",
                rank: int | None = None, fmt: str | None = None, reporter: Reporter | None = None) -> LoraMergeSummary:
    """Merge LoRA files (path, weight) into ``output`` in ``fmt`` (default: an SD LoRA in kohya's format, a
    transformer family's in its inputs' layout); SVD mode needs ``rank``."""
    reporter = reporter or NullReporter()
    if len(inputs) < 1:
        raise InputError("LoRAs: give at least one LoRA to merge")
    if mode not in ("exact", "svd"):
        raise InputError(f"mode must be exact or svd, got {mode!r}")
    if mode == "svd" and (rank is None or rank < 1):
        raise InputError(f"rank: the SVD merge needs a target rank ≥ 1, got {rank}")
    labels = [f"LoRA {i + 1}" for i in range(len(inputs))]
    paths = [require_input(path, label) for (path, _), label in zip(inputs, labels, strict=True)]
    out = guard_output(output, paths)
    if out.suffix.lower() != ".safetensors":
        raise InputError(f"output: {out} must end in .safetensors")
    weights = [_finite(w, label) for (_, w), label in zip(inputs, labels, strict=True)]
    loras = []
    for i, (path, label) in enumerate(zip(paths, labels, strict=True)):
        reporter.progress(i, len(paths) + 1, f"Reading {path.name}…")
        loras.append(read_lora(path, label))
        reporter.check_cancelled()
    notes: list[str] = []
    if any(lora.layout for lora in loras):
        matched = match_layouts(loras, labels, fmt)
        notes = _layout_notes(loras, matched, labels)
        loras = matched
    family = check_loras_compatible(loras, labels)
    reporter.progress(len(paths), len(paths) + 1, "Merging…")
    merged, energies = merge_lora_sets(loras, weights, mode, rank)
    reporter.check_cancelled()
    summary = LoraMergeSummary(out, len(merged.modules), max((m.rank for m in merged.modules.values()), default=0),
                               notes=notes)
    if energies:
        discarded = sum(d for d, _ in energies.values())
        total = sum(t for _, t in energies.values())
        summary.relative_error = math.sqrt(discarded / total) if total > 0 else 0.0
        summary.module_errors = {n: math.sqrt(d / t) if t > 0 else 0.0 for n, (d, t) in energies.items()}
        summary.worst_module, summary.worst_error = max(summary.module_errors.items(), key=lambda item: item[1])
    # The base model a merged LoRA records: known when its LoRA family is one family (SDXL), not for "sd1/2".
    members = families.by_lora_family(family) if family else []
    architecture = members[0].name if len(members) == 1 else None
    fmt = fmt or "kohya"
    if merged.layout:
        metadata = family_metadata(merged, out.stem)
    else:
        metadata = kohya_metadata(merged, architecture, out.stem) if fmt == "kohya" else {"format": "pt"}
    metadata |= provenance(f"lora_{mode}", {label: p.resolve() for label, p in zip(labels, paths, strict=True)},
                           {"weights": weights, "rank": rank, "relative_error": summary.relative_error})
    save_lora(merged, out, fmt, metadata)
    reporter.progress(len(paths) + 1, len(paths) + 1, "Done")
    return summary


def _layout_notes(read: list[LoraSet], matched: list[LoraSet], labels: list[str]) -> list[str]:
    from trainer.merge.family_loras import LAYOUT_LABELS, describe

    notes = [f"A {describe(matched[0])} LoRA in the {LAYOUT_LABELS[matched[0].layout]}."]
    notes += [f"{label} was converted exactly from the {LAYOUT_LABELS[before.layout]}."
              for label, before, after in zip(labels, read, matched, strict=True) if before.layout != after.layout]
    return notes


def _finite(value: float, label: str) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise InputError(f"{label}: weight must be a finite number, got {value}")
    return value
