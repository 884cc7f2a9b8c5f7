"""A LoRA baked into a transformer family's diffusers folder (Flux.1, Z-Image, Qwen-Image, SD 3.5, …), tensor by tensor.

The LoRA file may be the diffusers one (``transformer.<module>.lora_A/lora_B``, ``text_encoder.…``; an ``.alpha``
key, where a tool writes one, scales as diffusers reads it) or the kohya/ComfyUI one in the family's original layout
(``lora_unet_double_blocks_0_img_attn_qkv`` for Flux, musubi-tuner's names for Qwen-Image, ``diffusion_model.…`` for
Ideogram 4; ``lora_te1_…`` for the text encoders, in the pipeline's order).  The original layout's names are looked up
in the family's own layout table (``KohyaFacts.transformer_layout``: diffusers module → original layer, rows, halves
swapped), the same table Kamaal's LoRA export writes with: a fused layer's ΔW (BFL's ``qkv``, a single block's
``linear1``) is cut into the rows of diffusers' separate q, k, v (and MLP input), a swapped final norm swapped back.
Every name is matched exactly against the model's own tensors; one that fits nowhere, or a ΔW of another shape, is
refused naming the file and the module.

Memory stays small: the folder is copied, and only the components the LoRA changes are rewritten, each weight file
streamed (``stream.write_streaming``) with W ← W + strength·ΔW computed in float32 and stored in W's dtype.  The
family's single file (BFL's transformer file for Flux, …) is written from the fused folder by the family's own
writer, where it has one.

The family's own single file (BFL's Flux transformer, ComfyUI's Qwen-Image file, …) is fused as it is, streamed key by
key into a file of the same layout (``fuse_into_file``): the kohya/ComfyUI LoRA names its layers directly (ΔW whole,
nothing to split); a diffusers LoRA only where the file keeps diffusers' names.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from trainer.errors import InputError
from trainer.families import Family, family, kohya_facts
from trainer.merge.outputs import (
    MERGE_INFO_FILE,
    MERGE_METADATA_KEY,
    Reporter,
    discard_folder,
    publish_folder,
    staging_folder,
)
from trainer.merge.sources import weight_files
from trainer.merge.stream import TensorSpec, write_streaming
from trainer.models.safetensors_header import read_header, refuse_dtypes

_PARTS = {".lora_A.weight": "down", ".lora_B.weight": "up", ".lora_down.weight": "down", ".lora_up.weight": "up",
          ".lora.down.weight": "down", ".lora.up.weight": "up", ".alpha": "alpha"}
_KOHYA_TEXT = re.compile(r"lora_te(\d*)_(.+)")

# (component, tensor name in its files) → the LoRA factors that change it, (up · scale, down) in float32: ΔW is their
# products' sum, made only when that tensor is written (all ΔW at once would be a float32 copy of every layer).
Deltas = dict[tuple[str, str], list[tuple[torch.Tensor, torch.Tensor]]]


@dataclass
class _Component:
    """One component of the base folder: its weight files and each weight's (file, dtype, shape)."""

    name: str
    files: list[Path]
    weights: dict[str, tuple[Path, torch.dtype, tuple[int, ...]]]


def _components(base: Path, model: Family) -> dict[str, _Component]:
    from trainer.merge.sources import _DTYPES_BY_NAME

    found = {}
    for name in model.component_names:
        folder = base / name
        if not folder.is_dir():
            continue
        files = weight_files(folder, "base model")
        weights = {}
        for file in files:
            header = read_header(file, "base model")
            refuse_dtypes(header, "base model")
            weights |= {key: (file, _DTYPES_BY_NAME[entry.dtype], entry.shape) for key, entry in header.tensors.items()}
        found[name] = _Component(name, files, weights)
    return found


def lora_modules(path: Path, label: str, model: Family) -> Iterator[tuple[str, torch.Tensor, torch.Tensor]]:
    """A LoRA file's modules as (name, up · alpha/rank, down), float32; anything but plain LoRA refused by name."""
    from safetensors import safe_open

    header = read_header(path, label)
    refuse_dtypes(header, label)
    modules: dict[str, dict[str, str]] = {}
    for key in header.tensors:
        suffix = next((s for s in _PARTS if key.endswith(s)), None)
        if suffix is None:
            what = ("DoRA" if "magnitude" in key or "dora_scale" in key else
                    "LyCORIS (LoHa/LoKr)" if re.search(r"hada_|lokr_", key) else "an unknown part")
            raise InputError(f"{label}: {path} holds {key}, {what}; only plain LoRA (down/up, alpha) fuses into a "
                             f"{model.display_name} model")
        modules.setdefault(key[: -len(suffix)], {})[_PARTS[suffix]] = key
    with safe_open(str(path), framework="pt") as handle:
        for module, parts in sorted(modules.items()):
            if "down" not in parts or "up" not in parts:
                raise InputError(f"{label}: module {module} in {path} lacks its "
                                 f"{'lora_up/lora_B' if 'down' in parts else 'lora_down/lora_A'} weight")
            down, up = handle.get_tensor(parts["down"]).float(), handle.get_tensor(parts["up"]).float()
            if down.dim() != 2 or up.dim() != 2 or up.shape[1] != down.shape[0]:
                raise InputError(f"{label}: module {module} in {path} has down {list(down.shape)} and up "
                                 f"{list(up.shape)}, which are not the two factors of one linear LoRA")
            scale = float(handle.get_tensor(parts["alpha"])) / down.shape[0] if "alpha" in parts else 1.0
            yield module, up * scale, down


def _refuse_shape(label: str, module: str, rows: int, down: torch.Tensor, where: str, shape: tuple[int, ...]) -> None:
    if rows * down.shape[1] != _numel(shape):
        raise InputError(f"{label}: module {module} changes a {[rows, down.shape[1]]} weight, but the base model's "
                         f"{where} is {list(shape)}; the LoRA was trained on a different model")


def lora_deltas(path: Path, label: str, base: Path, model: Family, components: dict[str, _Component]) -> Deltas:
    """Every ΔW a LoRA file makes, as factors (alpha/rank folded into up), keyed by the base folder's tensor."""
    layout = _original_layout(base, model)
    modules = list(lora_modules(path, label, model))
    original = sorted(m for m, _, _ in modules if m.startswith(("lora_unet_", "diffusion_model.")))
    if original and not layout:
        raise InputError(f"{label}: {path} names the transformer in an original (kohya/ComfyUI) layout (first: "
                         f"{original[0]}), but {model.display_name} LoRAs are read in diffusers' layout only "
                         f"({model.denoiser}.<module>.lora_A/lora_B)")
    deltas: Deltas = {}
    for module, up, down in modules:
        for (component, tensor), piece in _place(module, up, model, components, layout, label).items():
            _refuse_shape(label, module, piece.shape[0], down, f"{component} {tensor}",
                          components[component].weights[tensor][2])
            deltas.setdefault((component, tensor), []).append((piece, down))
    return deltas


def _numel(shape: tuple[int, ...]) -> int:
    count = 1
    for side in shape:
        count *= side
    return count


def _original_layout(base: Path, model: Family) -> dict[str, list[tuple[str, int, int, bool]]]:
    """kohya/ComfyUI module name (both spellings) → the diffusers modules it holds: (module, first row, rows,
    halves swapped); empty where the family has no original layout for LoRA files (Z-Image: diffusers' file only)."""
    facts = kohya_facts(model.name)
    if facts.transformer_layout is None:
        return {}
    module_name, function_name = facts.transformer_layout.split(":")
    config = json.loads((base / model.denoiser / "config.json").read_text(encoding="utf-8"))
    table = getattr(importlib.import_module(module_name), function_name)(config)
    names: dict[str, list[tuple[str, int, int, bool]]] = {}
    for diffusers, (original, offset, rows, _total, swapped) in table.items():
        for name in ("lora_unet_" + original.replace(".", "_"), "diffusion_model." + original):
            names.setdefault(name, []).append((diffusers, offset, rows, swapped))
    return names


def _place(module: str, up: torch.Tensor, model: Family, components: dict[str, _Component],
           layout: dict[str, list[tuple[str, int, int, bool]]], label: str) -> dict[tuple[str, str], torch.Tensor]:
    """Where one LoRA module's ΔW goes: (component, tensor) → the rows of its up factor that make that tensor's ΔW."""
    denoiser = components.get(model.denoiser)
    if module.startswith(f"{model.denoiser}."):  # diffusers' file: the module's own path
        tensor = module.removeprefix(f"{model.denoiser}.") + ".weight"
        if denoiser is not None and tensor in denoiser.weights:
            return {(model.denoiser, tensor): up}
    elif module in layout:  # kohya/ComfyUI: an original layer, maybe fused from several diffusers modules
        placed = {}
        for diffusers, offset, rows, swapped in layout[module]:
            piece = up if rows == 0 else up[offset: offset + rows]
            if swapped:  # (shift, scale) in the original, (scale, shift) in diffusers
                piece = torch.cat(piece.chunk(2, dim=0)[::-1])
            placed[(model.denoiser, diffusers + ".weight")] = piece
        return placed
    else:
        found = _text_encoder_tensor(module, model, components)
        if found is not None:
            return {found: up}
    raise InputError(f"{label}: module {module} is not in the base model ({model.display_name}); the LoRA was "
                     "trained on a different model")


def _text_encoder_tensor(module: str, model: Family, components: dict[str, _Component]) -> tuple[str, str] | None:
    """A text encoder's weight for ``text_encoder.<path>`` (diffusers) or ``lora_te1_<path>`` (kohya, encoders
    numbered in the pipeline's order; ``lora_te_`` the first), or None."""
    encoders = [spec.component for spec in model.text_encoders]
    component, path = module.split(".", 1) if "." in module else ("", "")
    if component in encoders and component in components:
        weights = components[component].weights
        bare = path.removeprefix("text_model.")
        for tensor in (f"{path}.weight", f"text_model.{bare}.weight", f"{bare}.weight"):
            if tensor in weights:
                return component, tensor
        return None
    match = _KOHYA_TEXT.fullmatch(module)
    if match is None or int(match[1] or 1) > len(encoders) or encoders[int(match[1] or 1) - 1] not in components:
        return None
    component = encoders[int(match[1] or 1) - 1]
    for tensor in components[component].weights:
        if tensor.endswith(".weight"):
            path = tensor.removesuffix(".weight")
            if match[2] == ("text_model." + path.removeprefix("text_model.")).replace(".", "_"):
                return component, tensor
    return None


def fuse_into_folder(base: Path, architecture: str, loras: list[tuple[Path, float, str]], folder: Path | None,
                     single: Path | None, metadata: dict[str, str], reporter: Reporter) -> tuple[list[Path], int]:
    """Fuse ``loras`` (path, strength, label) into the diffusers folder ``base``; write ``folder`` and/or the family's
    single file ``single``.  Returns the outputs and how many weights changed."""
    model = family(architecture)
    if not base.is_dir():
        return fuse_into_file(base, architecture, loras, folder, single, metadata, reporter)
    if single is not None and model.single_file_writer is None:
        raise InputError(f"output file: Kamaal writes no single file for {model.display_name} models; write the "
                         "fused model as a diffusers folder (--out-dir)")
    components = _components(base, model)
    total = 2 + len(loras) + (single is not None)
    deltas: Deltas = {}
    for step, (path, strength, label) in enumerate(loras, start=1):
        reporter.progress(step, total, f"Reading {label} ({path.name}, strength {strength:g})…")
        for key, factors in lora_deltas(path, label, base, model, components).items():
            deltas.setdefault(key, []).extend((up * strength, down) for up, down in factors)
        reporter.check_cancelled()
    if not deltas:
        raise InputError(f"{loras[0][2]}: {loras[0][0]} changes no weight of the base model")
    staging = staging_folder(folder if folder is not None else single.with_suffix(""))  # type: ignore[union-attr]
    outputs: list[Path] = []
    try:
        reporter.progress(len(loras) + 1, total, "Writing the fused model…")
        _write_folder(base, staging, components, deltas, metadata, reporter)
        if single is not None:
            reporter.progress(len(loras) + 2, total, f"Writing {single.name}…")
            write_family_single_file(staging, architecture, single, metadata)
        if folder is not None:
            outputs.append(publish_folder(staging, folder))
        else:
            discard_folder(staging)
    except BaseException:
        discard_folder(staging)
        raise
    if single is not None:
        outputs.append(single)
    reporter.progress(total, total, "Done")
    return outputs, len(deltas)


def _write_folder(base: Path, staging: Path, components: dict[str, _Component], deltas: Deltas,
                  metadata: dict[str, str], reporter: Reporter) -> None:
    """``base`` copied into ``staging``, the changed components' weight files rewritten with their ΔW added."""
    changed = {component for component, _ in deltas}

    def rewritten(folder: str, names: list[str]) -> list[str]:  # the changed components' weights, and A's record
        ours = Path(folder).parent == base and Path(folder).name in changed
        return [n for n in names if (ours and n.endswith(".safetensors")) or n == MERGE_INFO_FILE]

    shutil.copytree(base, staging, dirs_exist_ok=True, ignore=rewritten)
    for name in sorted(changed):
        component = components[name]
        for file in component.files:
            specs = [TensorSpec(key, dtype, shape) for key, (f, dtype, shape) in component.weights.items() if f == file]
            write_streaming(staging / name / file.name, specs, _fused(file, name, deltas),
                            {"format": "pt", **metadata}, lambda _d, _n: reporter.check_cancelled())
    (staging / MERGE_INFO_FILE).write_text(json.dumps(json.loads(metadata[MERGE_METADATA_KEY]), indent=2),
                                           encoding="utf-8")


def _fused(file: Path, component: str, deltas: Deltas) -> Callable[[TensorSpec], torch.Tensor]:
    from safetensors import safe_open

    handle = safe_open(str(file), framework="pt")

    def produce(spec: TensorSpec) -> torch.Tensor:
        weight = handle.get_tensor(spec.name)
        factors = deltas.get((component, spec.name))
        if factors is None:
            return weight
        delta = sum((up @ down for up, down in factors), torch.zeros(()))
        fused = (weight.float() + delta.reshape(weight.shape)).to(weight.dtype)
        if not bool(torch.isfinite(fused).all()):
            where = f"{component} tensor" if component else "tensor"
            raise InputError(f"base model: {file}: {where} {spec.name} holds NaN or infinite values after fusing "
                             f"(the LoRA's change overflows {weight.dtype}, or the base weight was already broken); "
                             "nothing was written")
        return fused

    return produce


def write_family_single_file(folder: Path, architecture: str, path: Path, metadata: dict[str, str]) -> Path:
    """The family's own single file (``Family.single_file_writer``: BFL's transformer file for Flux, Stability's
    whole file for SD 3.5, …) of the diffusers folder ``folder``, written atomically."""
    from trainer.models import load_model

    writer = family(architecture).single_file_writer
    if writer is None:
        raise InputError(f"output file: Kamaal writes no single file for {family(architecture).display_name} models")
    module_name, function_name = writer.split(":")
    pipeline = load_model(folder).pipeline
    tensors = {k: v.detach().to("cpu").contiguous()
               for k, v in getattr(importlib.import_module(module_name), function_name)(pipeline).items()}
    del pipeline
    specs = [TensorSpec(k, v.dtype, tuple(v.shape)) for k, v in tensors.items()]
    return write_streaming(path, specs, lambda spec: tensors[spec.name], metadata)


def fuse_into_file(base: Path, architecture: str, loras: list[tuple[Path, float, str]], folder: Path | None,
                   single: Path | None, metadata: dict[str, str], reporter: Reporter) -> tuple[list[Path], int]:
    """Fuse ``loras`` into the family's own single file ``base`` (BFL's Flux transformer, ComfyUI's Qwen-Image file,
    …) and write ``single`` in the same layout, tensor by tensor.  A LoRA module must name one of the file's weights:
    the kohya/ComfyUI file does (its names are the original layout's, ``lora_unet_`` + the path with underscores or
    ``diffusion_model.`` + the path), and so does a diffusers file where the family's file keeps diffusers' names
    (Qwen-Image); a module of another layout (a diffusers Flux LoRA's ``to_q``, BFL's ``qkv`` being fused) or of a
    text encoder is left out with a warning (as ComfyUI's model-only LoRA loader does: the file has no place for it)."""
    from trainer.merge.sources import _DTYPES_BY_NAME

    model = family(architecture)
    if folder is not None or single is None:
        raise InputError(f"output: {base} is a single {model.display_name} file, fused into a single file of the "
                         "same layout (--out-file); for a diffusers folder, fuse into the model's folder")
    header = read_header(base, "base model")
    refuse_dtypes(header, "base model")
    specs = {key: (_DTYPES_BY_NAME[entry.dtype], entry.shape) for key, entry in header.tensors.items()}
    prefix = "model.diffusion_model." if any(k.startswith("model.diffusion_model.") for k in specs) else ""
    names: dict[str, str] = {}  # a LoRA module's name, in each spelling a file may use → the weight it changes
    for key in specs:
        if key.startswith(prefix) and key.endswith(".weight"):
            path = key[len(prefix): -len(".weight")]
            for name in ("lora_unet_" + path.replace(".", "_"), "diffusion_model." + path, f"{model.denoiser}.{path}"):
                names.setdefault(name, key)
    total = 2 + len(loras)
    deltas: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    for step, (path, strength, label) in enumerate(loras, start=1):
        reporter.progress(step, total, f"Reading {label} ({path.name}, strength {strength:g})…")
        left_out = []
        for module, up, down in lora_modules(path, label, model):
            key = names.get(module)
            if key is None and _is_text_encoder(module, model):
                left_out.append(module)
                continue
            if key is None:
                raise InputError(f"{label}: module {module} names no weight of {base.name} ({model.display_name}, "
                                 f"{_why_not(module, model)})")
            _refuse_shape(label, module, up.shape[0], down, key, specs[key][1])
            deltas.setdefault(key, []).append((up * strength, down))
        if left_out:
            reporter.log(f"{label}: {len(left_out)} text-encoder module(s) left out (first: {left_out[0]}): "
                         f"{base.name} holds the transformer; fuse into the diffusers folder to keep them", "warning")
        reporter.check_cancelled()
    if not deltas:
        raise InputError(f"{loras[0][2]}: {loras[0][0]} changes no weight of {base.name}")
    reporter.progress(len(loras) + 1, total, f"Writing {single.name}…")
    fused = _fused(base, "", {("", key): factors for key, factors in deltas.items()})
    write_streaming(single, [TensorSpec(k, d, s) for k, (d, s) in specs.items()], fused, metadata,
                    lambda _d, _n: reporter.check_cancelled())
    reporter.progress(total, total, "Done")
    return [single], len(deltas)


def _is_text_encoder(module: str, model: Family) -> bool:
    return bool(_KOHYA_TEXT.fullmatch(module)) or any(module.startswith(f"{spec.component}.")
                                                      for spec in model.text_encoders)


def _why_not(module: str, model: Family) -> str:
    if module.startswith(f"{model.denoiser}."):
        return ("whose file is in its original layout: fuse the kohya/ComfyUI LoRA file, or fuse into the diffusers "
                "folder")
    return "the LoRA was trained on a different model"
