"""Flux.1 from the single files people keep for ComfyUI and Forge, offline.

* the transformer in Black Forest Labs' layout (``flux1-dev.safetensors``, ``flux1-schnell.safetensors``;
  ``model.diffusion_model.`` prefixed or not), converted by ``flux_layout`` — any width, so tiny test
  models load the same way;
* CLIP-L and T5-XXL as files of their own (``clip_l.safetensors``, ``t5xxl_fp16.safetensors``: Hugging
  Face key layouts, CLIP with or without its ``text_model.`` level), told apart by their keys;
* the VAE (``ae.safetensors``, the original autoencoder's keys), converted by diffusers' own reader.

Which files: ``model.text_encoder_files`` and ``model.vae_file``, or, when those are empty, the ComfyUI
folders beside the transformer's (``models/clip`` or ``models/text_encoders``, ``models/vae``).  dev or
schnell: from the file (schnell has no guidance embedder).  Configs: ``resources/model_configs/flux-dev``
or ``flux-schnell`` (or the ``config_dir`` given, for tiny models); tokenizers from there or the shipped ones.
Every file is read as safetensors (``checkpoint_io``); nothing is unpickled, nothing downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from trainer.errors import InputError
from trainer.models.checkpoint_io import CheckpointFile, open_checkpoint
from trainer.models.component_files import (
    COMFY_TEXT_FOLDERS,
    FILE_SUFFIXES,
    clip_layout,
    clip_state,
    comfy_models_folder,
    is_t5,
    load_exact,
    prefer_wide,
    t5_state,
    tokenizer_from,
    vae_from_state,
)
from trainer.models.info import MODEL_CONFIGS

PREFIX = "model.diffusion_model."
VAE_STEMS = ("ae", "flux_vae", "flux-vae", "flux1_vae", "flux1-vae")  # what the VAE file is called


def companions(model_path: Path, text_encoder_files: list[str], vae_file: str) -> tuple[list[Path], Path | None]:
    """The text encoder files and the VAE file: as configured, else found in ComfyUI's folders beside the
    transformer's (``models/unet/flux1-dev.safetensors`` → ``models/clip/*``, ``models/vae/*``)."""
    encoders = [Path(p) for p in text_encoder_files]
    vae = Path(vae_file) if vae_file else None
    models = comfy_models_folder(model_path)
    if not encoders:
        for folder in COMFY_TEXT_FOLDERS:
            found = sorted(p for p in (models / folder).glob("*") if p.suffix in FILE_SUFFIXES)
            clip = [p for p in found if "clip_l" in p.name.lower()]
            t5 = [p for p in found if "t5" in p.name.lower()]
            if clip and t5:
                encoders = [clip[0], prefer_wide(t5)]
                break
    if vae is None:
        found = sorted(p for p in (models / "vae").glob("*") if p.suffix in FILE_SUFFIXES)
        named = [p for p in found if p.stem.lower() in VAE_STEMS]
        vae = (named or [None])[0]
    return encoders, vae


def transformer_variant(checkpoint: CheckpointFile) -> str:
    """``flux-dev`` (guidance-distilled) or ``flux-schnell``, from the transformer file's keys."""
    return "flux-dev" if any("guidance_in." in key for key in checkpoint.shapes) else "flux-schnell"


def load_flux_single_file(checkpoint: CheckpointFile, config_dir: Path | None, dtype: torch.dtype,
                          text_encoder_files: list[str], vae_file: str) -> Any:
    import diffusers
    import transformers

    from trainer.models.flux_layout import to_diffusers
    from trainer.models.loading import _tokenizer

    path = checkpoint.path
    folder = config_dir if config_dir is not None else MODEL_CONFIGS / transformer_variant(checkpoint)
    encoders, vae_path = companions(path, text_encoder_files, vae_file)
    clip_file, t5_file = _sort_encoders(encoders)
    if vae_path is None:
        raise InputError(f"model.vae_file: {path} holds the Flux transformer only; choose its VAE file "
                         "(ae.safetensors), or keep it in models/vae beside the transformer's folder as ComfyUI does")

    state = {key.removeprefix(PREFIX): value for key, value in checkpoint.state_dict().items()}
    config = diffusers.FluxTransformer2DModel.load_config(folder / "transformer")
    with torch.device("meta"):
        transformer = diffusers.FluxTransformer2DModel.from_config(config)
    load_exact(transformer, to_diffusers(state, dict(transformer.config)), path, "Flux transformer")

    clip = transformers.CLIPTextModel(transformers.CLIPTextConfig.from_pretrained(folder / "text_encoder"))
    load_exact(clip, clip_state(open_checkpoint(clip_file).state_dict(), clip), clip_file, "CLIP-L text encoder")
    t5 = transformers.T5EncoderModel(transformers.T5Config.from_pretrained(folder / "text_encoder_2"))
    load_exact(t5, t5_state(open_checkpoint(t5_file).state_dict()), t5_file, "T5-XXL text encoder")
    vae = vae_from_state(open_checkpoint(vae_path).state_dict(), folder, vae_path, "model.vae_file",
                         "is not a Flux VAE")

    tokenizer_2 = tokenizer_from(folder / "tokenizer_2", "t5")
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler.from_pretrained(folder, subfolder="scheduler",
                                                                          local_files_only=True)
    pipeline = diffusers.FluxPipeline(transformer=transformer.to(dtype), vae=vae.to(dtype),
                                      text_encoder=clip.to(dtype), text_encoder_2=t5.to(dtype),
                                      tokenizer=_tokenizer(folder / "tokenizer", False), tokenizer_2=tokenizer_2,
                                      scheduler=scheduler)
    return pipeline


def load_kontext_single_file(checkpoint: CheckpointFile, config_dir: Path | None, dtype: torch.dtype,
                             text_encoder_files: list[str], vae_file: str) -> Any:
    """Flux.1 Kontext dev from BFL's ``flux1-kontext-dev.safetensors`` (Flux.1 dev's keys and shapes) and the same
    companions: read as Flux.1 and handed to ``FluxKontextPipeline``, which takes the same components."""
    import diffusers

    folder = config_dir if config_dir is not None else MODEL_CONFIGS / "flux-kontext-dev"
    pipeline = load_flux_single_file(checkpoint, folder, dtype, text_encoder_files, vae_file)
    return diffusers.FluxKontextPipeline(**pipeline.components)


def _sort_encoders(files: list[Path]) -> tuple[Path, Path]:
    """(CLIP-L file, T5 file) from the configured or found files, told apart by their keys."""
    clip = t5 = None
    for file in files:
        keys = open_checkpoint(file).shapes
        if is_t5(keys):
            t5 = file
        elif clip_layout(keys) is not None:
            clip = file
        else:
            raise InputError(f"model.text_encoder_files: {file} is neither a CLIP nor a T5 text encoder")
    missing = [name for name, found in (("clip_l", clip), ("t5xxl", t5)) if found is None]
    if missing:
        raise InputError(f"model.text_encoder_files: Flux needs its {' and '.join(missing)} text encoder file"
                         f"{'s' if len(missing) > 1 else ''} (.safetensors); choose them, or keep them in "
                         "models/clip or models/text_encoders beside the transformer's folder as ComfyUI does")
    return clip, t5  # type: ignore[return-value]
