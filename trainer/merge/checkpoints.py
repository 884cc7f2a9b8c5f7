"""Checkpoint with checkpoint: weighted sum A·(1−α) + B·α, and add-difference A + (B − C)·α.

Inputs are opened lazily (``sources``) and the output is streamed (``stream``): one tensor of each
input is in memory at a time, so three SDXL checkpoints merge in a few hundred megabytes.  The
arithmetic is done in float32 and stored in A's dtype (or the one asked for), except that a merged
diffusers folder keeps its text encoders in fp32 (``trainer.models.folder_dtypes``: so that a plain
``from_pretrained`` loads matching parts).  Per-block weights
(``blocks``) replace α for the blocks they name: SD UNet blocks, or a transformer's own repeated blocks.

Every family merges: SD 1.x/2.x/SDXL as diffusers folders or original-layout files, the transformer families
(Flux.1, Z-Image, Qwen-Image, SD 3.5, …) as diffusers folders or their own single files (the transformer file in
the family's layout, e.g. BFL's for Flux: the arithmetic is key by key, so any layout merges with itself).  What
merges is a choice (``components``): every component (the default; what a fine-tune changed anywhere is blended),
or the denoiser only ("denoiser": the UNet or transformer, the rest copied from A — fine-tunes of the 2026
families usually share their text encoders and VAE).  Either way a tensor equal in every input is A's, untouched
(a blend of equal weights is that weight, without a rounding step), and a folder component whose files are
byte-identical in every input is copied whole, never recomputed.

Compatibility is checked before anything is written, each refusal naming its reason: the same family,
the same form (both single files or both diffusers folders), every denoiser tensor of
A present in the others, and equal shapes everywhere.  Tensors only A has (an EMA copy, say) are kept
from A; tensors only the others have are dropped; both are reported.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from trainer.errors import InputError
from trainer.merge.blocks import block_of, model_blocks, parse_block_weights, transformer_block_of, transformer_blocks
from trainer.merge.outputs import (
    MERGE_INFO_FILE,
    MERGE_METADATA_KEY,
    NullReporter,
    Reporter,
    discard_folder,
    guard_output,
    provenance,
    publish_folder,
    require_input,
    staging_folder,
)
from trainer.merge.sources import ModelTensors, open_model
from trainer.merge.stream import TensorSpec, write_streaming
from trainer.models.folder_dtypes import component_libraries, record_stored_dtype, stored_dtype
from trainer.models.info import DISPLAY_NAME

Method = Literal["weighted_sum", "add_difference"]
Components = Literal["all", "denoiser"]
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class MergeSummary:
    output: Path
    tensors: int
    kept_from_a: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    block_weights: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def layers_per_block(model: ModelTensors) -> int:
    if not model.is_folder or not (model.path / "unet" / "config.json").is_file():
        return 2  # only used for diffusers UNet keys
    config = json.loads((model.path / "unet" / "config.json").read_text(encoding="utf-8"))
    return int(config.get("layers_per_block", 2))


def check_compatible(models: dict[str, ModelTensors]) -> list[str]:
    """Refuse models that cannot be merged (``InputError`` with the reason); return warnings."""
    (first_role, first), *others = models.items()
    warnings: list[str] = []
    for role, other in others:
        if other.info.architecture != first.info.architecture:
            raise InputError(f"model {role}: {other.path} is {DISPLAY_NAME[other.info.architecture]} but model "
                             f"{first_role} is {DISPLAY_NAME[first.info.architecture]}; only models of the same "
                             "family can be merged")
        if other.is_folder != first.is_folder:
            raise InputError(f"model {role}: {other.path} is a {_form(other)} but model {first_role} is a "
                             f"{_form(first)}; convert one with 'kamaal-train merge convert-model' first")
        if other.info.prediction_type != first.info.prediction_type:
            warnings.append(f"model {role} predicts {other.info.prediction_type} but model {first_role} predicts "
                            f"{first.info.prediction_type}; the merge keeps {first_role}'s scheduler")
        missing = [k for k in first.specs if k not in other.specs and _is_denoiser(k, first)]
        if missing:
            raise InputError(f"model {role}: {other.path} lacks {len(missing)} {_denoiser_label(first)} tensor(s) "
                             f"that model "
                             f"{first_role} has (first: {missing[0]}); they are different architectures")
        for key, (_, shape) in first.specs.items():
            other_spec = other.specs.get(key)
            if other_spec is not None and other_spec[1] != shape:
                raise InputError(f"model {role}: {key} has shape {list(other_spec[1])} but {list(shape)} in model "
                                 f"{first_role}; the models have different layer sizes and cannot be merged")
    return warnings


def _form(model: ModelTensors) -> str:
    return "diffusers folder" if model.is_folder else "single-file checkpoint"


def _is_denoiser(key: str, model: ModelTensors) -> bool:
    """A tensor of the UNet or transformer: what must be in every input.  A transformer family's single file is
    all denoiser (Flux's BFL file), or names it ``model.diffusion_model.`` as SD's do (SD 3.5's whole file)."""
    from trainer.families import family

    denoiser = family(model.info.architecture).denoiser
    if model.is_folder:
        return key.startswith(f"{denoiser}/")
    if any(k.startswith("model.diffusion_model.") for k in model.specs):
        return key.startswith("model.diffusion_model.")
    return True


COMFY_PREFIX = "model.diffusion_model."


def align_comfy_prefix(models: dict[str, ModelTensors]) -> list[str]:
    """A transformer family's single file with ComfyUI's ``model.diffusion_model.`` before every key and one without
    (BFL's own Flux file) hold the same weights: the others are read under model A's names.  Returns warnings."""
    from trainer.families import family

    first = models["A"]
    if first.is_folder or family(first.info.architecture).kind != "transformer":
        return []
    warnings = []

    def prefixed(model: ModelTensors) -> bool:
        return bool(model.specs) and all(key.startswith(COMFY_PREFIX) for key in model.specs)

    for role, model in models.items():
        if model.is_folder or model.info.architecture != first.info.architecture or prefixed(model) == prefixed(first):
            continue
        if prefixed(model):
            model.rename_prefix(COMFY_PREFIX, "")
        else:
            model.rename_prefix("", COMFY_PREFIX)
        warnings.append(f"model {role}: {model.path} differs from model A only in ComfyUI's {COMFY_PREFIX} key "
                        "prefix; it is read under A's names")
    return warnings


def _denoiser_label(model: ModelTensors) -> str:
    from trainer.families import family

    return "UNet" if family(model.info.architecture).denoiser == "unet" else "transformer"


def block_naming(model: ModelTensors) -> tuple[Callable[[str], str], list[str]]:
    """How the model's tensors are named for per-block weights, and its blocks: SD UNet names (IN00…, M00, OUT00…),
    or a transformer's own repeated blocks (``transformer_blocks.3``, BFL's ``double_blocks.3``; ``blocks``)."""
    from trainer.families import family

    facts = family(model.info.architecture)
    if facts.kind == "transformer":
        return transformer_block_of, transformer_blocks(model.specs, facts.blocks)
    lpb = layers_per_block(model)
    return (lambda key: block_of(key, lpb)), model_blocks(model.specs, lpb)


def merge_checkpoints(a: Path | str, b: Path | str, output: Path | str, *, alpha: float = 0.5,
                      c: Path | str | None = None, method: Method = "weighted_sum", block_weights: str = "",
                      dtype: str | None = None, components: Components = "all",
                      reporter: Reporter | None = None) -> MergeSummary:
    """Merge models into ``output`` (a ``.safetensors`` file for single files, a folder for diffusers);
    ``components`` "denoiser" merges the UNet/transformer only and keeps the rest of model A as it is."""
    reporter = reporter or NullReporter()
    if components not in ("all", "denoiser"):
        raise InputError(f"components must be all or denoiser, got {components!r}")
    if method not in ("weighted_sum", "add_difference"):
        raise InputError(f"method must be weighted_sum or add_difference, got {method!r}")
    if method == "add_difference" and c is None:
        raise InputError("model C: add-difference needs a third model C (A + (B − C)·α)")
    if dtype is not None and dtype not in DTYPES:
        raise InputError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if not math.isfinite(float(alpha)):  # NaN would make every merged weight NaN, and exit 0
        raise InputError(f"alpha must be a finite number, got {alpha}")
    paths = {"A": require_input(a, "model A"), "B": require_input(b, "model B")}
    if method == "add_difference":
        paths["C"] = require_input(c, "model C")  # type: ignore[arg-type]
    out = guard_output(output, paths.values())
    reporter.progress(0, 1, "Reading the models' headers…")
    models = {role: open_model(path, f"model {role}") for role, path in paths.items()}
    try:
        warnings = align_comfy_prefix(models) + check_compatible(models)
        first = models["A"]
        if not first.is_folder and out.suffix.lower() != ".safetensors":
            raise InputError(f"output: {out} must end in .safetensors (merged checkpoints are always safetensors)")
        block, blocks = block_naming(first)
        weights = parse_block_weights(block_weights, blocks, alpha)
        summary = MergeSummary(out, len(first.specs), block_weights=weights, warnings=warnings)
        summary.kept_from_a = [k for k in first.specs if any(k not in m.specs for m in models.values())]
        summary.dropped = sorted({k for m in models.values() for k in m.specs if k not in first.specs})
        for message in warnings:
            reporter.log(message, "warning")
        if summary.kept_from_a:
            reporter.log(f"{len(summary.kept_from_a)} tensor(s) only in model A kept as they are "
                         f"(first: {summary.kept_from_a[0]})", "warning")
        target = DTYPES[dtype] if dtype else None

        def merged_part(key: str) -> bool:
            return components == "all" or _is_denoiser(key, first)

        def combine(spec: TensorSpec) -> torch.Tensor:
            # Every tensor is checked before it is written: a NaN or infinity in an input (or one the merge
            # makes, overflowing fp16) stops the merge, naming it, and the output is never created.
            values = {role: m.get(spec.name) for role, m in models.items() if spec.name in m.specs}
            for role, value in values.items():
                refuse_non_finite(value, f"model {role}: {models[role].path}", spec.name)
            if len(values) < len(models) or not values["A"].is_floating_point() or not merged_part(spec.name):
                return values["A"].to(spec.dtype)
            if all(torch.equal(values["A"], value) for value in values.values()):
                return values["A"].to(spec.dtype)  # the same in every input: A's, without a rounding step
            weight = weights[block(spec.name)]
            x = values["A"].float()
            if method == "weighted_sum":
                merged = x * (1 - weight) + values["B"].float() * weight
            else:
                merged = x + (values["B"].float() - values["C"].float()) * weight
            stored = merged.to(spec.dtype)
            if not bool(torch.isfinite(stored).all()):
                raise InputError(f"output: merged tensor {spec.name} overflows {spec.dtype} to infinity; check alpha "
                                 "and the block weights, or store the merge in fp32 (--dtype fp32)")
            return stored

        metadata = provenance(method, {r: p.resolve() for r, p in paths.items()},
                              {"alpha": alpha, "blocks": weights, "dtype": dtype or "as model A",
                               "components": components},
                              {"modelspec.title": out.stem,
                               # so an SD 2.x v-prediction merge is recognised as one when loaded
                               "modelspec.prediction_type": first.info.prediction_type})
        libraries = component_libraries(first.path) if first.is_folder else {}
        specs = [TensorSpec(k, _out_dtype(d, target, libraries.get(k.split("/", 1)[0])), s)
                 for k, (d, s) in first.specs.items()]
        copied = _copied_components(models, specs, components)
        if copied:
            reporter.log(f"Copied from model A unchanged: {', '.join(copied)}", "info")
        _write(first, out, specs, combine, metadata, reporter, copied)
        reporter.progress(1, 1, "Done")
        return summary
    finally:
        for model in models.values():
            model.close()


def refuse_non_finite(tensor: torch.Tensor, source: str, name: str) -> None:
    """``InputError`` naming ``source`` and tensor ``name`` when a floating-point tensor holds NaN or infinity."""
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        bad = int((~torch.isfinite(tensor)).sum())
        raise InputError(f"{source}: tensor {name} holds {bad} NaN or infinite value(s) of {tensor.numel()}; "
                         "a merge with it would be broken, so nothing was written")


def _out_dtype(dtype: torch.dtype, target: torch.dtype | None, library: str | None) -> torch.dtype:
    """A tensor's stored dtype: integers as they are; floats in the asked dtype (else A's), by the
    folder rule when the output is a folder (``library`` is the component's: diffusers, transformers)."""
    if not dtype.is_floating_point:
        return dtype
    wanted = target if target is not None else dtype
    return stored_dtype(library, wanted) if library is not None else wanted


def _copied_components(models: dict[str, ModelTensors], specs: list[TensorSpec], components: Components) -> list[str]:
    """The folder components written as model A's files, byte for byte: those not merged ("denoiser" keeps A's
    text encoders and VAE), and those whose files are identical in every input and keep their dtype."""
    first = models["A"]
    if not first.is_folder:
        return []
    from trainer.families import family

    denoiser = family(first.info.architecture).denoiser
    stored = {name: dtype for name, (dtype, _) in first.specs.items()}
    copied = []
    for component in sorted({spec.name.split("/", 1)[0] for spec in specs}):
        if components == "denoiser" and component != denoiser:
            copied.append(component)
            continue
        same_dtype = all(spec.dtype == stored[spec.name] for spec in specs if spec.name.startswith(f"{component}/"))
        files = [sorted(set(_component_files(model, component))) for model in models.values()]
        if same_dtype and all(len(f) == len(files[0]) for f in files) and all(
                _same_bytes([model_files[i] for model_files in files]) for i in range(len(files[0]))):
            copied.append(component)
    return copied


def _component_files(model: ModelTensors, component: str) -> list[Path]:
    return [model.path / relative for key, relative in model.file_of.items() if key.startswith(f"{component}/")]


def _same_bytes(paths: list[Path], chunk: int = 1 << 24) -> bool:
    """Whether the files hold the same bytes (sizes first, then chunk by chunk, stopping at the first difference)."""
    if len({p.stat().st_size for p in paths}) != 1:
        return False
    handles = [p.open("rb") for p in paths]
    try:
        while True:
            blocks = [h.read(chunk) for h in handles]
            if any(b != blocks[0] for b in blocks):
                return False
            if not blocks[0]:
                return True
    finally:
        for handle in handles:
            handle.close()


def _write(first: ModelTensors, out: Path, specs: list[TensorSpec], produce: Callable[[TensorSpec], torch.Tensor],
           metadata: dict[str, str], reporter: Reporter, copied: list[str]) -> None:
    """One streamed file, or a folder laid out like model A's (configs and tokenizers copied from A; the
    ``copied`` components' weight files too)."""
    done = 0

    def tick(_i: int, _n: int) -> None:
        nonlocal done
        done += 1
        if done % 16 == 0 or done == len(specs):
            reporter.progress(done, len(specs), f"Merged {done} of {len(specs)} tensors")
        reporter.check_cancelled()

    if not first.is_folder:
        write_streaming(out, specs, produce, metadata, tick)
        return
    staging = staging_folder(out)
    try:
        shutil.copytree(first.path, staging, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("*.safetensors", "*.safetensors.index.json", "*.bin",
                                                      MERGE_INFO_FILE))
        libraries = component_libraries(first.path)
        by_component: dict[str, list[TensorSpec]] = {}
        first_file: dict[str, str] = {}
        for spec in specs:
            component = spec.name.split("/", 1)[0]
            by_component.setdefault(component, []).append(spec)
            first_file.setdefault(component, Path(first.file_of[spec.name]).name)
        for component in copied:
            for source in sorted(set(_component_files(first, component))):
                shutil.copyfile(source, staging / component / source.name)
            for index in (first.path / component).glob("*.safetensors.index.json"):
                shutil.copyfile(index, staging / component / index.name)
            done += len(by_component.pop(component))
            reporter.progress(done, len(specs), f"Copied {component} from model A")
        for component, component_specs in by_component.items():
            # One file per component, named as diffusers expects (shards and variant suffixes joined).
            name = re.sub(r"-\d+-of-\d+$", "", first_file[component].split(".")[0]) + ".safetensors"
            renamed = [TensorSpec(s.name.split("/", 1)[1], s.dtype, s.shape) for s in component_specs]
            write_streaming(staging / component / name, renamed,
                            lambda spec, component=component: produce(
                                TensorSpec(f"{component}/{spec.name}", spec.dtype, spec.shape)),
                            {"format": "pt", **metadata}, tick)
            floating = {s.dtype for s in component_specs if s.dtype.is_floating_point}
            if libraries.get(component) == "transformers" and len(floating) == 1:
                # A's config.json names A's dtype, which transformers would load these weights in.
                record_stored_dtype(staging / component, floating.pop())
        (staging / MERGE_INFO_FILE).write_text(json.dumps(json.loads(metadata[MERGE_METADATA_KEY]), indent=2),
                                               encoding="utf-8")
        publish_folder(staging, out)
    except BaseException:
        discard_folder(staging)
        raise
