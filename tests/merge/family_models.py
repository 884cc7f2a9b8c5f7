"""Tiny models of the transformer families for the merge tests: each family's tiny model (seed 0) and fine-tunes of
it that differ where a fine-tune does (the transformer; one also in its VAE), written once per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

MAIN_FAMILIES = ("flux", "zimage", "qwenimage", "sd3", "flux2klein", "chroma")


def transformer_families() -> list[str]:
    from trainer.families import MODEL_FAMILIES, family

    return [name for name in MODEL_FAMILIES if family(name).kind == "transformer"]


def perturbed(model: Path, into: Path, seed: int, components: tuple[str, ...] = ("transformer",)) -> Path:
    """A copy of ``model`` whose ``components``' floating weights moved by small seeded noise (a "fine-tune")."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(model, into)
    generator = torch.Generator().manual_seed(seed)
    for component in components:
        for file in sorted((into / component).glob("*.safetensors")):
            tensors = load_file(file)
            for key, value in tensors.items():
                if value.is_floating_point():
                    noise = torch.randn(value.shape, generator=generator) * 0.02
                    tensors[key] = (value.float() + noise).to(value.dtype)
            save_file(tensors, str(file), metadata={"format": "pt"})
    return into


def folder_tensors(folder: Path, text_encoders: bool = True) -> dict[str, torch.Tensor]:
    """Every component's tensors as ``component/name`` (without the text encoders': the largest files, which a test
    that only needs them unchanged compares byte for byte instead)."""
    from safetensors.torch import load_file

    found: dict[str, torch.Tensor] = {}
    for file in sorted(folder.glob("*/*.safetensors")):
        if text_encoders or not file.parent.name.startswith("text_encoder"):
            found |= {f"{file.parent.name}/{k}": v for k, v in load_file(file).items()}
    return found


def write_single_file(model: Path, path: Path) -> Path:
    """The family's own single file of ``model`` (Flux: BFL's transformer file), as a full run writes it."""
    from trainer.jobs.diffusion_outputs import _save_single_file
    from trainer.models import load_model

    loaded = load_model(model)
    _save_single_file(loaded.pipeline, loaded.info.architecture, path, {})
    return path


def sharded(model: Path, into: Path, component: str = "transformer") -> Path:
    """A copy of ``model`` whose ``component`` is stored in two shards with an index, as the real Flux, Qwen-Image …
    folders store their transformer and T5 (``diffusion_pytorch_model-00001-of-00002.safetensors`` …)."""
    import json

    from safetensors.torch import load_file, save_file

    shutil.copytree(model, into)
    (file,) = sorted((into / component).glob("*.safetensors"))
    tensors = load_file(file)
    file.unlink()
    stem = file.name.split(".")[0]
    names = sorted(tensors)
    weight_map = {}
    for index, part in enumerate((names[: len(names) // 2], names[len(names) // 2:]), start=1):
        shard = f"{stem}-{index:05d}-of-00002.safetensors"
        save_file({k: tensors[k] for k in part}, str(into / component / shard), metadata={"format": "pt"})
        weight_map |= dict.fromkeys(part, shard)
    (into / component / f"{stem}.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map}), encoding="utf-8")
    return into
