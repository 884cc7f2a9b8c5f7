"""Chroma from the single files people keep for ComfyUI, offline, and back.

* the transformer in lodestones' layout (``Chroma1-HD.safetensors``, ``chroma-unlocked-v50.safetensors`` in
  ``models/diffusion_models`` or ``models/unet``: Flux's BFL names without the modulation layers, with
  ``distilled_guidance_layer.``; ``model.diffusion_model.`` prefixed or not), converted by the layout facts in
  ``trainer.families.chroma`` through ``fused_layout`` — both ways, for any width;
* T5-XXL as a file of its own (``t5xxl_fp16.safetensors`` in ``models/text_encoders`` or ``models/clip``;
  Hugging Face's keys, either copy of the tied embedding); Chroma has no CLIP;
* the VAE (``ae.safetensors``: Flux's autoencoder, the original keys), converted by diffusers' own reader.

Which files: ``model.text_encoder_files`` and ``model.vae_file``, or, when those are empty, ComfyUI's folders
beside the transformer's.  Configs: ``resources/model_configs/chroma`` (Chroma1-HD's; or the ``config_dir`` given,
for tiny models); the T5 tokenizer from there or the shipped one.  Every file is read as safetensors
(``checkpoint_io``); nothing is unpickled, nothing downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from trainer.errors import InputError
from trainer.families.chroma import FAMILY, chroma_layout, chroma_norms
from trainer.models import fused_layout
from trainer.models.checkpoint_io import CheckpointFile, open_checkpoint
from trainer.models.component_files import (
    is_t5,
    load_exact,
    one_encoder_companions,
    t5_state,
    tokenizer_from,
    vae_from_state,
)
from trainer.models.flux_single import VAE_STEMS
from trainer.models.info import MODEL_CONFIGS

PREFIX = "model.diffusion_model."


def to_original(state: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    """A diffusers ``ChromaTransformer2DModel`` state dict → lodestones' keys (no prefix)."""
    return fused_layout.to_original(state, chroma_layout(config), chroma_norms(config), "original-layout (Chroma)")


def to_diffusers(original: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    """lodestones' keys (no prefix) → a diffusers state dict (the inverse of :func:`to_original`)."""
    return fused_layout.to_diffusers(original, chroma_layout(config), chroma_norms(config))


def pipeline_to_original(pipeline: Any) -> dict[str, torch.Tensor]:
    """A full or frozen run's transformer as the file ComfyUI's Load Diffusion Model takes (the transformer only:
    T5 and the VAE are files of their own for Chroma, as for Flux.1)."""
    transformer = pipeline.transformer
    return to_original(transformer.state_dict(), dict(transformer.config))


def companions(model_path: Path, text_encoder_files: list[str], vae_file: str) -> tuple[Path | None, Path | None]:
    """The T5 file and the VAE file: as configured, else found in ComfyUI's folders beside the transformer's
    (``models/diffusion_models/Chroma1-HD.safetensors`` → ``models/text_encoders/t5xxl…``, ``models/vae/ae…``)."""
    return one_encoder_companions(model_path, text_encoder_files, vae_file, family=FAMILY.display_name,
                                  encoder="T5-XXL, t5xxl_fp16.safetensors",
                                  is_encoder=lambda p: "t5" in p.name.lower(),
                                  is_vae=lambda p: p.stem.lower() in VAE_STEMS)


def load_chroma_single_file(checkpoint: CheckpointFile, config_dir: Path | None, dtype: torch.dtype,
                            text_encoder_files: list[str], vae_file: str) -> Any:
    import diffusers
    import transformers

    path = checkpoint.path
    name = FAMILY.display_name
    folder = config_dir if config_dir is not None else MODEL_CONFIGS / FAMILY.config_folders["flow_matching"]
    encoder_path, vae_path = companions(path, text_encoder_files, vae_file)
    if encoder_path is None:
        raise InputError(f"model.text_encoder_files: {path} holds the {name} transformer only; choose its T5-XXL "
                         "text encoder file (t5xxl_fp16.safetensors), or keep it in models/text_encoders beside "
                         "the transformer's folder as ComfyUI does")
    if vae_path is None:
        raise InputError(f"model.vae_file: {path} holds the {name} transformer only; choose its VAE file "
                         "(ae.safetensors, Flux's), or keep it in models/vae beside the transformer's folder as "
                         "ComfyUI does")
    if not is_t5(open_checkpoint(encoder_path).shapes):
        raise InputError(f"model.text_encoder_files: {encoder_path} is not a T5 text encoder ({name} reads T5-XXL "
                         "only)")

    state = {key.removeprefix(PREFIX): value for key, value in checkpoint.state_dict().items()}
    config = diffusers.ChromaTransformer2DModel.load_config(folder / "transformer")
    with torch.device("meta"):
        transformer = diffusers.ChromaTransformer2DModel.from_config(config)
    layout, norms = chroma_layout(dict(transformer.config)), chroma_norms(dict(transformer.config))
    unknown = fused_layout.unknown_keys(state, layout, norms)
    if unknown:
        raise InputError(f"model.path: {path} does not hold a {name} transformer of this shape: it has unknown "
                         f"{', '.join(unknown[:3])}")
    load_exact(transformer, to_diffusers(state, dict(transformer.config)), path, f"{name} transformer")
    # The approximator's frequency table is a buffer no file holds: made here, on the CPU, from the config.
    transformer.time_text_embed = type(transformer.time_text_embed)(
        num_channels=int(transformer.config.approximator_num_channels) // 4,
        out_dim=3 * int(transformer.config.num_single_layers) + 2 * 6 * int(transformer.config.num_layers) + 2)

    # In eval mode, as from_pretrained gives it: a module built by its constructor trains, and T5's dropout would
    # then blur every prompt it encodes.
    t5 = transformers.T5EncoderModel(transformers.T5Config.from_pretrained(folder / "text_encoder")).eval()
    load_exact(t5, t5_state(open_checkpoint(encoder_path).state_dict()), encoder_path, "T5-XXL text encoder",
               field="model.text_encoder_files")
    vae = vae_from_state(open_checkpoint(vae_path).state_dict(), folder, vae_path, "model.vae_file",
                         f"is not a {name} (Flux) VAE")

    scheduler = diffusers.FlowMatchEulerDiscreteScheduler.from_pretrained(folder, subfolder="scheduler",
                                                                          local_files_only=True)
    return diffusers.ChromaPipeline(transformer=transformer.to(dtype), vae=vae.to(dtype), text_encoder=t5.to(dtype),
                                    tokenizer=tokenizer_from(folder / "tokenizer", "t5"), scheduler=scheduler)
