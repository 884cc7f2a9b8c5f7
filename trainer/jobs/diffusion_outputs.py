"""What a finished diffusion run leaves in ``RUN_DIR/output/``.

* LoRA runs: ``RUN_NAME.safetensors`` in the kohya format (Automatic1111, ComfyUI, kohya) and
  ``diffusers/pytorch_lora_weights.safetensors`` for ``pipe.load_lora_weights``; both carry the
  resolved config in their metadata.
* Textual inversion (and pivotal tuning beside a LoRA): ``embeddings/WORD.safetensors``, the new word's
  vectors (``emb_params``; SDXL's ``clip_l`` and ``clip_g``).
* Full and frozen-layer runs: a diffusers folder ``diffusers/`` (stored by the rule in
  ``trainer.models.folder_dtypes``: all fp32 here, so a plain ``from_pretrained`` loads it) and, where
  the family has a single-file writer, a ``RUN_NAME.safetensors`` checkpoint: SD 1.x/2.x/SDXL in the
  CompVis/SGM layout, SD 3.5 as Stability's file (MMDiT, VAE and its three text encoders), Flux's
  transformer in Black Forest Labs' layout.

Files and folders are written under a temporary name and renamed into place (an existing
``diffusers/`` is renamed aside until the new one is in: :func:`trainer.fsutil.replace_dir`); a
failed export removes its staging files.  A full disk is refused naming ``output/`` and about how
much the outputs need; the final checkpoint, saved before the export, stays, and a resume writes them.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from trainer.families import family
from trainer.fsutil import replace_dir
from trainer.lora_formats import (
    DIFFUSERS_FILE,
    export_dora_kohya_file,
    export_kohya_transformer_lora,
    export_lora_files,
    export_lycoris_files,
    export_transformer_lora,
)

if TYPE_CHECKING:
    from trainer.config import Config
    from trainer.diffusion.components import Components
    from trainer.runfolder import RunFolder


class DiffusionJob(Protocol):
    """What the exports read of a diffusion job (``trainer.jobs.diffusion.DiffusionJob`` is one); a protocol,
    so this module does not import the job that imports it."""

    config: Config
    run: RunFolder
    parts: Components
    accelerator: Any
    uses_lora: bool
    trains_text: bool
    word: Any  # textual inversion's new word (trainer.diffusion.new_word.NewWord), or None


_FLOAT32_BYTES = 4
_FILE_OVERHEAD = 1_000_000  # configs, tokenizer files, headers


def export_outputs(job: DiffusionJob, output_dir: Path) -> list[Path]:
    with job.run.writing_outputs(output_size(job)):
        output_dir.mkdir(parents=True, exist_ok=True)
        files = [_export_word(job, output_dir)] if job.word is not None else []
        if job.uses_lora:
            return files + _export_lora(job, output_dir)
        if job.config.mode == "embedding":
            return files
        return files + _export_full(job, output_dir)


def _export_word(job: DiffusionJob, output_dir: Path) -> Path:
    """``output/embeddings/WORD.safetensors``: the new word's vectors, for Automatic1111's and ComfyUI's embeddings
    folder and diffusers' ``load_textual_inversion`` (a folder of its own: a LoRA run's file keeps RUN_NAME)."""
    from trainer.diffusion.new_word import embedding_file_name, export_embedding

    cfg = job.config
    folder = output_dir / "embeddings"
    folder.mkdir(exist_ok=True)
    open_clip = [encoder.open_clip for encoder in family(cfg.model.architecture).text_encoders]
    return export_embedding(folder / embedding_file_name(cfg.embedding.token), job.word, open_clip,
                            {"kamaal.architecture": cfg.model.architecture, "kamaal.run": cfg.output.run_name})


def output_size(job: DiffusionJob) -> int:
    """About how many bytes the outputs take: two LoRA files, or a diffusers folder and a single file,
    each with every tensor in fp32 (the larger of the dtypes they are stored in)."""
    parts = job.parts
    if job.uses_lora:
        modules = [parts.unet, *(e for e in (parts.text_encoders if job.trains_text else []) if e is not None)]
        count = sum(p.numel() for m in modules for name, p in m.named_parameters()
                    if any(part in name for part in ("lora_", "hada_", "lokr_")))  # LoRA, LoHa, LoKr
    else:
        modules = [parts.unet, parts.vae, *(e for e in parts.text_encoders if e is not None)]  # T5 may be absent
        count = sum(p.numel() for m in modules for p in m.parameters())
    return 2 * count * _FLOAT32_BYTES + _FILE_OVERHEAD


def _export_lora(job: DiffusionJob, output_dir: Path) -> list[Path]:
    cfg = job.config
    unet = job.accelerator.unwrap_model(job.parts.unet)
    encoders = list(job.parts.text_encoders) if job.trains_text else []
    staging = Path(tempfile.mkdtemp(prefix=".diffusers.", dir=output_dir))
    if cfg.lora.adapter in ("loha", "lokr"):  # the LyCORIS file and peft's folders
        try:
            export_lycoris_files(output_dir / f"{cfg.output.run_name}.safetensors", staging, cfg.model.architecture,
                                 unet, encoders, cfg.lora, cfg.output.run_name, cfg.to_dict())
            replace_dir(staging, output_dir / "peft")
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return [output_dir / f"{cfg.output.run_name}.safetensors", output_dir / "peft"]
    if family(cfg.model.architecture).kind == "transformer":
        # The diffusers/peft file, and the kohya file in the original layout where the family has one (SD 3.5's
        # MMDiT, Flux's BFL layout).
        try:
            kohya = export_kohya_transformer_lora(output_dir / f"{cfg.output.run_name}.safetensors",
                                                  cfg.model.architecture, unet, encoders, cfg.output.run_name,
                                                  cfg.to_dict())
            export_transformer_lora(staging / DIFFUSERS_FILE, cfg.model.architecture, unet, encoders, cfg.to_dict())
            replace_dir(staging, output_dir / "diffusers")
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return [*([kohya] if kohya else []), output_dir / "diffusers" / DIFFUSERS_FILE]
    if cfg.lora.adapter == "dora":  # the kohya file with dora_scale, and peft's spelling for diffusers
        try:
            kohya = export_dora_kohya_file(output_dir / f"{cfg.output.run_name}.safetensors", cfg.model.architecture,
                                           unet, encoders, cfg.output.run_name, cfg.to_dict())
            export_transformer_lora(staging / DIFFUSERS_FILE, cfg.model.architecture, unet, encoders, cfg.to_dict())
            replace_dir(staging, output_dir / "diffusers")
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return [kohya, output_dir / "diffusers" / DIFFUSERS_FILE]
    try:
        kohya, _ = export_lora_files(output_dir / f"{cfg.output.run_name}.safetensors", staging / DIFFUSERS_FILE,
                                     cfg.model.architecture, unet, encoders, cfg.output.run_name, cfg.to_dict())
        replace_dir(staging, output_dir / "diffusers")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return [kohya, output_dir / "diffusers" / DIFFUSERS_FILE]


def _export_full(job: DiffusionJob, output_dir: Path) -> list[Path]:
    from trainer.diffusion.sampling import build_pipeline
    from trainer.models.folder_dtypes import save_diffusers_folder

    cfg = job.config
    pipe = build_pipeline(job.parts, job.accelerator.unwrap_model(job.parts.unet))
    staging = Path(tempfile.mkdtemp(prefix=".diffusers.", dir=output_dir))
    try:
        # In the trained UNet's fp32; the text encoders, held in bf16/fp16 under mixed precision, in fp32 too.
        save_diffusers_folder(pipe, staging)
        replace_dir(staging, output_dir / "diffusers")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    model = family(cfg.model.architecture)
    if not model.single_file and model.single_file_writer is None:
        return [output_dir / "diffusers"]  # no original-layout writer for this family
    single = output_dir / f"{cfg.output.run_name}.safetensors"
    _save_single_file(pipe, cfg.model.architecture, single, {"kamaal.config": cfg.to_toml()})
    return [output_dir / "diffusers", single]


def _save_single_file(pipe, architecture: str, path: Path, metadata: dict[str, str]) -> None:
    """The whole model in the original (CompVis/SGM) key layout that Automatic1111 and ComfyUI load."""
    import importlib

    from safetensors.torch import save_file

    from trainer.models import pipeline_to_original

    writer = family(architecture).single_file_writer
    if writer is not None:
        module_name, function_name = writer.split(":")
        original = getattr(importlib.import_module(module_name), function_name)(pipe)
    else:
        original = pipeline_to_original(pipe, architecture)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in original.items()}
    staging = path.with_name(f".{path.name}.tmp")
    try:
        save_file(tensors, staging, metadata=metadata)
        staging.replace(path)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
