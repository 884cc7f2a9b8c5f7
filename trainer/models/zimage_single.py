"""Z-Image from the single files people keep for ComfyUI, offline, and back.

* the transformer in the original layout (``z_image_turbo_bf16.safetensors`` in ``models/diffusion_models``:
  fused ``attention.qkv``, ``attention.out``, ``x_embedder``, ``final_layer``; ``model.diffusion_model.``
  prefixed or not), converted by the layout facts in ``trainer.families.zimage`` through ``fused_layout`` —
  both ways, for any width (diffusers' own converter reads what :func:`pipeline_to_original` writes);
* Qwen3-4B as a file of its own (``qwen_3_4b.safetensors`` in ``models/text_encoders``: Hugging Face's Qwen3
  keys under ``model.``, or without it; an LM head, tied to the embedding, is left out);
* the VAE (``ae.safetensors``: Flux's autoencoder, the original keys), converted by diffusers' own reader.

Which files: ``model.text_encoder_files`` and ``model.vae_file``, or, when those are empty, ComfyUI's folders
beside the transformer's (``models/text_encoders`` or ``models/clip``, ``models/vae``).  Configs:
``resources/model_configs/z-image-turbo`` (or the ``config_dir`` given, for tiny models); the tokenizer from there
or the shipped Qwen3 one.  Every file is read as safetensors (``checkpoint_io``); nothing is unpickled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from trainer.errors import InputError
from trainer.families.zimage import original_layout, original_parameters
from trainer.models import fused_layout
from trainer.models.checkpoint_io import CheckpointFile, open_checkpoint
from trainer.models.component_files import (
    load_exact,
    one_encoder_companions,
    tokenizer_from,
    vae_from_state,
)
from trainer.models.info import MODEL_CONFIGS

PREFIX = "model.diffusion_model."
CONFIG_FOLDER = "z-image-turbo"
VAE_STEMS = ("ae", "flux_vae", "flux-vae", "z_image_vae", "zimage_vae")  # what Flux's VAE file is called
QWEN_PREFIX = "model."  # ComfyUI's and transformers' causal-LM files keep the model under it


def to_original(state: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    """A diffusers ``ZImageTransformer2DModel`` state dict → the original keys (no prefix)."""
    return fused_layout.to_original(state, original_layout(config), original_parameters(config),
                                    "original-layout (Z-Image)")


def to_diffusers(original: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    """Original keys (no prefix) → a diffusers state dict (the inverse of :func:`to_original`)."""
    return fused_layout.to_diffusers(original, original_layout(config), original_parameters(config))


def pipeline_to_original(pipeline: Any) -> dict[str, torch.Tensor]:
    """A full or frozen run's transformer as the file ComfyUI's Load Diffusion Model takes (Z-Image's own keys,
    the way ``z_image_turbo_bf16.safetensors`` holds them)."""
    transformer = pipeline.transformer
    return to_original(transformer.state_dict(), dict(transformer.config))


def companions(model_path: Path, text_encoder_files: list[str], vae_file: str) -> tuple[Path | None, Path | None]:
    """The Qwen3 file and the VAE file: as configured, else found in ComfyUI's folders beside the transformer's
    (``models/diffusion_models/z_image_turbo_bf16.safetensors`` → ``models/text_encoders/qwen_3_4b…``,
    ``models/vae/ae.safetensors``)."""
    return one_encoder_companions(model_path, text_encoder_files, vae_file, family="Z-Image",
                                  encoder="its Qwen3 file, qwen_3_4b.safetensors",
                                  is_encoder=lambda p: "qwen" in p.name.lower(),
                                  is_vae=lambda p: p.stem.lower() in VAE_STEMS)


def qwen3_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A Qwen3 file's tensors as ``Qwen3Model`` names them: under ``model.`` or not, without the LM head."""
    prefixed = any(key.startswith(QWEN_PREFIX + "layers.") for key in state)
    return {key.removeprefix(QWEN_PREFIX) if prefixed else key: value for key, value in state.items()
            if not key.startswith("lm_head.")}


def load_zimage_single_file(checkpoint: CheckpointFile, config_dir: Path | None, dtype: torch.dtype,
                            text_encoder_files: list[str], vae_file: str) -> Any:
    import diffusers
    import transformers

    path = checkpoint.path
    folder = config_dir if config_dir is not None else MODEL_CONFIGS / CONFIG_FOLDER
    encoder_path, vae_path = companions(path, text_encoder_files, vae_file)
    if encoder_path is None:
        raise InputError(f"model.text_encoder_files: {path} holds the Z-Image transformer only; choose its Qwen3 "
                         "text encoder file (qwen_3_4b.safetensors), or keep it in models/text_encoders beside the "
                         "transformer's folder as ComfyUI does")
    if vae_path is None:
        raise InputError(f"model.vae_file: {path} holds the Z-Image transformer only; choose its VAE file "
                         "(ae.safetensors, Flux's), or keep it in models/vae beside the transformer's folder as "
                         "ComfyUI does")

    state = {key.removeprefix(PREFIX): value for key, value in checkpoint.state_dict().items()}
    config = diffusers.ZImageTransformer2DModel.load_config(folder / "transformer")
    with torch.device("meta"):
        transformer = diffusers.ZImageTransformer2DModel.from_config(config)
    unknown = fused_layout.unknown_keys(state, original_layout(dict(transformer.config)),
                                        original_parameters(dict(transformer.config)))
    if unknown:
        raise InputError(f"model.path: {path} does not hold a Z-Image transformer of this shape: it has unknown "
                         f"{', '.join(unknown[:3])}")
    load_exact(transformer, to_diffusers(state, dict(transformer.config)), path, "Z-Image transformer")

    text_config = transformers.Qwen3Config.from_pretrained(folder / "text_encoder")
    with torch.device("meta"):
        text_encoder = transformers.Qwen3Model(text_config)
    load_exact(text_encoder, qwen3_state(open_checkpoint(encoder_path).state_dict()), encoder_path,
               "Qwen3 text encoder", field="model.text_encoder_files")
    # Its rotary table is a buffer no file holds: made here, on the CPU, from the config.
    text_encoder.rotary_emb = type(text_encoder.rotary_emb)(config=text_config)

    vae = vae_from_state(open_checkpoint(vae_path).state_dict(), folder, vae_path, "model.vae_file",
                         "is not a Z-Image (Flux) VAE")

    scheduler = diffusers.FlowMatchEulerDiscreteScheduler.from_pretrained(folder, subfolder="scheduler",
                                                                          local_files_only=True)
    return diffusers.ZImagePipeline(transformer=transformer.to(dtype), vae=vae.to(dtype),
                                    text_encoder=text_encoder.to(dtype),
                                    tokenizer=tokenizer_from(folder / "tokenizer", "qwen3"),
                                    scheduler=scheduler)
