"""Qwen-Image from the single files people keep for ComfyUI, offline, and back.

* the transformer (``qwen_image_bf16.safetensors`` or ``qwen_image_fp8_e4m3fn.safetensors`` in
  ``models/diffusion_models``): ComfyUI's Qwen-Image model names its modules as diffusers does, so the file holds
  diffusers' keys, ``model.diffusion_model.`` prefixed or not (diffusers' own single-file mapping for it is the
  identity); the fp8 file's weights are plain e4m3 values, cast to the run's dtype;
* Qwen2.5-VL-7B (``qwen_2.5_vl_7b.safetensors`` in ``models/text_encoders``): Hugging Face's original keys —
  the language model under ``model.``, the vision tower under ``visual.``, maybe ``lm_head.`` — where transformers 5
  puts them under ``model.language_model.`` and ``model.visual.``; a file without the LM head gets the embedding
  in its place (the pipeline reads hidden states, never the logits).  ComfyUI's ``…_fp8_scaled`` file (fp8
  weights, each with its ``scale_weight``, or the newer ``weight_scale``/``comfy_quant`` kind) is read as ComfyUI
  computes with it, weight × scale, and its other quantized formats (nvfp4, …) are refused by name
  (``component_files.read_scaled_fp8``, for every file here);
* the VAE (``qwen_image_vae.safetensors`` in ``models/vae``): Wan 2.1's original layout (``wan_vae_layout``).

Which files: ``model.text_encoder_files`` and ``model.vae_file``, or, when those are empty, ComfyUI's folders beside
the transformer's.  Configs: ``resources/model_configs/qwen-image`` (or the ``config_dir`` given, for tiny models);
the tokenizer from there or the shipped Qwen3 files, whose BPE and first special tokens are Qwen2.5's.  Every file
is read as safetensors (``checkpoint_io``); nothing is unpickled.  A full or frozen run's transformer is written
back the same way (:func:`pipeline_to_comfy`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from trainer.errors import InputError
from trainer.models import wan_vae_layout
from trainer.models.checkpoint_io import CheckpointFile, open_checkpoint
from trainer.models.component_files import (
    load_exact,
    one_encoder_companions,
    read_scaled_fp8,
    squeezed,
    tokenizer_from,
)
from trainer.models.info import MODEL_CONFIGS

PREFIX = "model.diffusion_model."
CONFIG_FOLDER = "qwen-image"
ENCODER_FILE = "qwen_2.5_vl_7b.safetensors"
VAE_FILE = "qwen_image_vae.safetensors"
VAE_PREFIXES = ("first_stage_model.", "vae.")


def pipeline_to_comfy(pipeline: Any) -> dict[str, torch.Tensor]:
    """A full or frozen run's transformer as the file ComfyUI's Load Diffusion Model takes (its keys are
    diffusers', as in ``qwen_image_bf16.safetensors``)."""
    return dict(pipeline.transformer.state_dict())



def companions(model_path: Path, text_encoder_files: list[str], vae_file: str) -> tuple[Path | None, Path | None]:
    """The Qwen2.5-VL file and the VAE file: as configured, else found in ComfyUI's folders beside the
    transformer's (``models/diffusion_models/qwen_image_bf16.safetensors`` → ``models/text_encoders/
    qwen_2.5_vl_7b…``, ``models/vae/qwen_image_vae.safetensors``) by their names, the full-width file before an
    fp8 one (Z-Image's ``qwen_3_4b`` may sit in the same folder)."""
    return one_encoder_companions(model_path, text_encoder_files, vae_file, family="Qwen-Image",
                                  encoder=f"its Qwen2.5-VL file, {ENCODER_FILE}",
                                  is_encoder=lambda p: "qwen25vl" in squeezed(p.name),
                                  is_vae=lambda p: "qwen" in squeezed(p.stem) and "vae" in p.stem.lower())


def qwen25_vl_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A Qwen2.5-VL file's tensors as transformers 5's ``Qwen2_5_VLForConditionalGeneration`` names them (files in
    Hugging Face's original layout or already in transformers 5's); the embedding stands in for an absent LM head."""
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith(("model.language_model.", "model.visual.", "lm_head.")):
            renamed[key] = value
        elif key.startswith("visual."):
            renamed[f"model.{key}"] = value
        elif key.startswith("model."):
            renamed[f"model.language_model.{key.removeprefix('model.')}"] = value
        else:
            renamed[key] = value  # named by the loader as unknown
    embedding = renamed.get("model.language_model.embed_tokens.weight")
    if "lm_head.weight" not in renamed and embedding is not None:
        renamed["lm_head.weight"] = embedding
    return renamed


def load_qwenimage_single_file(checkpoint: CheckpointFile, config_dir: Path | None, dtype: torch.dtype,
                               text_encoder_files: list[str], vae_file: str) -> Any:
    import diffusers
    import transformers
    from accelerate import init_empty_weights

    path = checkpoint.path
    folder = config_dir if config_dir is not None else MODEL_CONFIGS / CONFIG_FOLDER
    encoder_path, vae_path = companions(path, text_encoder_files, vae_file)
    if encoder_path is None:
        raise InputError(f"model.text_encoder_files: {path} holds the Qwen-Image transformer only; choose its "
                         f"Qwen2.5-VL text encoder file ({ENCODER_FILE}), or keep it in models/text_encoders beside "
                         "the transformer's folder as ComfyUI does")
    if vae_path is None:
        raise InputError(f"model.vae_file: {path} holds the Qwen-Image transformer only; choose its VAE file "
                         f"({VAE_FILE}), or keep it in models/vae beside the transformer's folder as ComfyUI does")

    # Built with empty parameters (init_empty_weights) and filled with the files' tensors: no second copy, and the
    # tensors a module makes for itself (the rotary tables) are real.
    state = {key.removeprefix(PREFIX): value for key, value in read_scaled_fp8(
        checkpoint.state_dict(), path, "model.path", "qwen_image_bf16.safetensors", dtype).items()}
    with init_empty_weights():
        transformer = diffusers.QwenImageTransformer2DModel.from_config(
            diffusers.QwenImageTransformer2DModel.load_config(folder / "transformer"))
    load_exact(transformer, state, path, "Qwen-Image transformer")

    encoder_state = read_scaled_fp8(open_checkpoint(encoder_path).state_dict(), encoder_path,
                                    "model.text_encoder_files", ENCODER_FILE, dtype)
    text_config = transformers.Qwen2_5_VLConfig.from_pretrained(folder / "text_encoder")
    with init_empty_weights():
        text_encoder = transformers.Qwen2_5_VLForConditionalGeneration(text_config)
    load_exact(text_encoder, qwen25_vl_state(encoder_state), encoder_path, "Qwen2.5-VL text encoder",
               field="model.text_encoder_files")

    vae_state = read_scaled_fp8(open_checkpoint(vae_path).state_dict(), vae_path, "model.vae_file", VAE_FILE, dtype)
    with init_empty_weights():
        vae = diffusers.AutoencoderKLQwenImage.from_config(
            diffusers.AutoencoderKLQwenImage.load_config(folder / "vae"))
    original = {next((key.removeprefix(p) for p in VAE_PREFIXES if key.startswith(p)), key): value
                for key, value in vae_state.items()}
    load_exact(vae, wan_vae_layout.to_diffusers(original, list(vae.state_dict()), vae.config.num_res_blocks),
               vae_path, "Qwen-Image (Wan 2.1) VAE", field="model.vae_file")

    scheduler = diffusers.FlowMatchEulerDiscreteScheduler.from_pretrained(folder, subfolder="scheduler",
                                                                          local_files_only=True)
    return diffusers.QwenImagePipeline(transformer=transformer.to(dtype), vae=vae.to(dtype),
                                       text_encoder=text_encoder.to(dtype),
                                       tokenizer=tokenizer_from(folder / "tokenizer", "qwen3"),
                                       scheduler=scheduler)
