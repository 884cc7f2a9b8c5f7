"""Model form conversions, diffusers folder ↔ single-file checkpoint, and the two pipeline writers
that ``fuse`` shares.

A single file is written in the original (CompVis/SGM) key layout that Automatic1111 and ComfyUI load
(``trainer.models.pipeline_to_original``), with ``modelspec.prediction_type`` in its metadata so a
v-prediction model is recognised when loaded again.  Both directions load the whole model once (a
diffusers pipeline); the file is then streamed out tensor by tensor without a second copy.

A transformer family's file is the family's own (``Family.single_file_writer``, the tensors a full run writes: BFL's
transformer file for Flux, Stability's whole file for SD 3.5, ComfyUI's Qwen-Image file, …); one is read back by the
family's reader (``Family.single_file_reader``) with the companions it needs where the file holds only the
transformer (text encoders and VAE named, or found in ComfyUI's folders beside it, as a training run's loader finds
them): a file alone is refused naming what is missing, as the loader does.  A family without a writer (the edit
families) converts only to a folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from trainer.errors import InputError
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
from trainer.merge.stream import TensorSpec, write_streaming
from trainer.models.folder_dtypes import save_diffusers_folder

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def source_dtype(path: Path) -> torch.dtype:
    """The dtype a model's UNet or transformer is stored in (so outputs keep it unless asked otherwise)."""
    from trainer.families import family
    from trainer.merge.sources import open_model

    with open_model(path, "model") as model:
        floating = [(key, dtype) for key, (dtype, _) in model.specs.items() if dtype.is_floating_point]
        denoiser = (f"{family(model.info.architecture).denoiser}/", "unet/", "model.diffusion_model.")
        for key, dtype in floating:
            if key.startswith(denoiser):
                return dtype
        if model.info.source_kind != "diffusers" and floating:  # a transformer family's file without the prefix
            return floating[0][1]
    return torch.float32


def pick_dtype(name: str, path: Path) -> torch.dtype:
    if name == "auto":
        return source_dtype(path)
    if name not in DTYPES:
        raise InputError(f"dtype must be auto or one of {', '.join(DTYPES)}, got {name!r}")
    return DTYPES[name]


def save_pipeline_folder(pipeline: Any, target: Path, metadata: dict[str, str]) -> Path:
    """A diffusers folder, written aside and renamed into place; provenance in ``kamaal_merge.json``.
    Stored as ``trainer.models.folder_dtypes`` says: UNet and VAE in the pipeline's dtype, text encoders
    in fp32, so that a plain ``from_pretrained`` loads matching parts."""
    staging = staging_folder(target)
    try:
        save_diffusers_folder(pipeline, staging)
        if MERGE_METADATA_KEY in metadata:
            record = json.loads(metadata[MERGE_METADATA_KEY])
            (staging / MERGE_INFO_FILE).write_text(json.dumps(record, indent=2), encoding="utf-8")
        return publish_folder(staging, target)
    except BaseException:
        discard_folder(staging)
        raise


def save_pipeline_file(pipeline: Any, architecture: str, prediction_type: str, target: Path,
                       metadata: dict[str, str], reporter: Reporter | None = None) -> Path:
    """One ``.safetensors`` file in the original layout (a transformer family's: its own writer's), streamed."""
    import importlib

    from trainer.families import family
    from trainer.models import pipeline_to_original

    reporter = reporter or NullReporter()
    writer = family(architecture).single_file_writer
    if writer is not None:
        module_name, function_name = writer.split(":")
        written = getattr(importlib.import_module(module_name), function_name)(pipeline)
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in written.items()}
    else:
        tensors = pipeline_to_original(pipeline, architecture)  # type: ignore[arg-type]
    specs = [TensorSpec(k, v.dtype, tuple(v.shape)) for k, v in sorted(tensors.items())]
    full = {"modelspec.prediction_type": prediction_type, "modelspec.title": target.stem, **metadata}

    def tick(done: int, total: int) -> None:
        if done % 32 == 0 or done == total:
            reporter.progress(done, total, f"Writing {target.name}: {done} of {total} tensors")
        reporter.check_cancelled()

    return write_streaming(target, specs, lambda spec: tensors[spec.name], full, tick)


def require_safetensors_name(path: Path) -> None:
    if path.suffix.lower() != ".safetensors":
        raise InputError(f"output: {path} must end in .safetensors (single files are always written as safetensors)")


def refuse_unconvertible(info: Any, path: Path, target_form: str) -> None:
    """Refuse, by name, what Kamaal cannot convert: a family it merges nothing of, a transformer family's folder
    where it writes no single file for the family, a single file it cannot read."""
    from trainer.families import family
    from trainer.merge.sources import refuse_unmergeable

    refuse_unmergeable(info, path, "model", transformers=True)
    model = family(info.architecture)
    if model.single_file:
        return
    if target_form == "single-file" and model.single_file_writer is None:
        raise InputError(f"model: {path} is {model.a_name} model, and Kamaal writes no single file for "
                         f"{model.display_name} models; it stays a diffusers folder")
    if info.source_kind != "diffusers" and model.single_file_reader is None:
        raise InputError(f"model: {path} is {model.a_name} single file, which Kamaal cannot read")


def _companion_fields(error: InputError) -> InputError:
    """The loader's message with its config fields named as convert-model's (``--text-encoder-file``,
    ``--vae-file``; the Merge page's Encoders and VAE file)."""
    text = str(error).replace("model.text_encoder_files", "text encoder files")
    return InputError(text.replace("model.vae_file", "VAE file"))


def convert_model(source: Path | str, output: Path | str, *, to: str | None = None, dtype: str = "auto",
                  config_dir: Path | str | None = None, text_encoder_files: list[str] | None = None,
                  vae_file: str = "", reporter: Reporter | None = None) -> Path:
    """Diffusers folder → single file, or single file → diffusers folder (``to``: 'single-file' or
    'diffusers'; by default the other form).  ``config_dir`` describes a non-standard single file;
    ``text_encoder_files`` and ``vae_file`` are the companions of a transformer family's file that holds the
    transformer only (else found in ComfyUI's folders beside it)."""
    from trainer.models import inspect_model, load_model

    reporter = reporter or NullReporter()
    path = require_input(source, "model")
    out = guard_output(output, [path])
    target_form = to or ("single-file" if path.is_dir() else "diffusers")
    if target_form not in ("single-file", "diffusers"):
        raise InputError(f"to must be single-file or diffusers, got {target_form!r}")
    if target_form == "single-file":
        require_safetensors_name(out)
    elif out.suffix.lower() in (".safetensors", ".ckpt"):
        raise InputError(f"output: {out} looks like a file name; a diffusers model is a folder")
    reporter.progress(0, 2, f"Loading {path.name}…")
    if config_dir is None:  # a non-standard file is told once loaded with its configs (below)
        refuse_unconvertible(inspect_model(path), path, target_form)
    try:
        loaded = load_model(path, dtype=pick_dtype(dtype, path), config_dir=config_dir,
                            text_encoder_files=text_encoder_files, vae_file=vae_file)
    except InputError as error:
        raise _companion_fields(error) from None
    refuse_unconvertible(loaded.info, path, target_form)
    reporter.check_cancelled()
    metadata = provenance("convert", {"model": path.resolve()}, {"to": target_form, "dtype": dtype})
    reporter.progress(1, 2, f"Writing {out.name}…")
    if target_form == "single-file":
        save_pipeline_file(loaded.pipeline, loaded.info.architecture, loaded.info.prediction_type, out, metadata,
                           reporter)
    else:
        save_pipeline_folder(loaded.pipeline, out, metadata)
    reporter.progress(2, 2, "Done")
    return out


def convert_lora(source: Path | str, output: Path | str, *, to: str | None = None) -> Path:
    """Kohya LoRA → diffusers LoRA or back (``to``: 'kohya' or 'diffusers'; by default the other one).

    Kohya's alphas become diffusers' scale-1 convention by folding ``alpha / rank`` into the up
    weights, so the converted file changes the model exactly as much as the original.  A transformer family's LoRA
    goes between its diffusers layout and its original (kohya/ComfyUI) one, as ``family_loras`` maps them exactly."""
    from trainer.merge import family_loras
    from trainer.merge.lora_files import kohya_metadata, read_lora, save_lora

    path = require_input(source, "LoRA")
    out = guard_output(output, [path])
    require_safetensors_name(out)
    lora = read_lora(path)
    target = to or ("diffusers" if lora.source_format == "kohya" else "kohya")
    if to not in (None, "kohya", "diffusers"):
        raise InputError(f"to must be kohya or diffusers, got {to!r}")
    if lora.layout:
        layout = family_loras.ORIGINAL if target == "kohya" else family_loras.DIFFUSERS
        converted = family_loras.convert_layout(lora, layout, f"LoRA: {path}")
        metadata = family_loras.family_metadata(converted, out.stem)
        metadata |= provenance("convert_lora", {"lora": path.resolve()}, {"from": lora.source_format, "to": target})
        return save_lora(converted, out, target, metadata)
    kept = {k: v for k, v in lora.metadata.items() if k.startswith(("ss_", "modelspec.")) and target == "kohya"}
    metadata = kohya_metadata(lora, None, out.stem) | kept if target == "kohya" else {"format": "pt"}
    metadata |= provenance("convert_lora", {"lora": path.resolve()}, {"from": lora.source_format, "to": target})
    return save_lora(lora, out, target, metadata)
