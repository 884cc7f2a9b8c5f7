"""Qwen-Image 2.1 from the single files people keep for ComfyUI, offline, and back.

* the transformer (in ``models/diffusion_models``): ComfyUI's layout of 2.1 keeps diffusers' module names, except
  that the SwiGLU's gate and up projections are one ``img_mlp.gate_up`` (gate rows first, as diffusers' own
  single-file converter for 2.1 splits it), ``model.diffusion_model.`` prefixed or not; fp8 files as
  ``component_files.read_scaled_fp8`` reads them;
* Qwen3-VL-8B (in ``models/text_encoders``): Hugging Face's keys (``model.language_model.``, ``model.visual.``,
  ``lm_head.``; the older ``model.``/``visual.`` spelling is renamed as for Qwen-Image's Qwen2.5-VL);
* the VAE: in diffusers' keys only (the published folder's ``vae/diffusion_pytorch_model.safetensors``) — the layout
  of ComfyUI's 2.1 VAE file has not been checked against ComfyUI's code, so a file in another layout is refused
  naming the file diffusers' layout comes in.

Which files: ``model.text_encoder_files`` and ``model.vae_file``, or ComfyUI's folders beside the transformer's.
Configs: ``resources/model_configs/qwen-image-2.1`` (or the ``config_dir`` given, for tiny models); the tokenizer
from its ``processor/`` or the shipped Qwen3 files, read as text (``qwen_vl_text``).  Nothing is unpickled.  A full or
frozen run's transformer is written back in ComfyUI's layout (:func:`pipeline_to_comfy`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from trainer.errors import InputError
from trainer.models.checkpoint_io import CheckpointFile, open_checkpoint
from trainer.models.component_files import (
    load_exact,
    one_encoder_companions,
    read_scaled_fp8,
    squeezed,
    tokenizer_from,
)
from trainer.models.info import MODEL_CONFIGS
from trainer.models.qwen_vl_text import Qwen3VLTextProcessor, folder_chat_template
from trainer.models.qwenimage_single import PREFIX, qwen25_vl_state

CONFIG_FOLDER = "qwen-image-2.1"
TRANSFORMER_FILE = "qwen_image_2.1_bf16.safetensors"
ENCODER_FILE = "qwen3vl_8b.safetensors"
VAE_FILE = "vae/diffusion_pytorch_model.safetensors of the Qwen-Image 2.1 folder"
GATE, UP, FUSED = ".img_mlp.gate_layer.weight", ".img_mlp.proj.weight", ".img_mlp.gate_up.weight"


def to_comfy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers' transformer tensors → ComfyUI's layout: each block's gate and up projections joined, gate first."""
    out = {key: value for key, value in state.items() if not key.endswith((GATE, UP))}
    for key in state:
        if key.endswith(GATE):
            block = key.removesuffix(GATE)
            out[block + FUSED] = torch.cat([state[key], state[block + UP]])
    return out


def from_comfy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`to_comfy`, any ``model.diffusion_model.`` prefix dropped."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        key = key.removeprefix(PREFIX)
        if key.endswith(FUSED):
            gate, up = value.chunk(2, dim=0)
            out[key.removesuffix(FUSED) + GATE], out[key.removesuffix(FUSED) + UP] = gate, up
        else:
            out[key] = value
    return out


def pipeline_to_comfy(pipeline: Any) -> dict[str, torch.Tensor]:
    """A full or frozen run's transformer as the file ComfyUI's Load Diffusion Model takes."""
    return to_comfy(dict(pipeline.transformer.state_dict()))



def companions(model_path: Path, text_encoder_files: list[str], vae_file: str) -> tuple[Path | None, Path | None]:
    """The Qwen3-VL file and the VAE file: as configured, else found in ComfyUI's folders beside the transformer's
    by their names (``qwen3vl…`` / ``qwen3_vl…``; a VAE named for Qwen-Image 2.1), the full-width file first."""
    return one_encoder_companions(model_path, text_encoder_files, vae_file, family="Qwen-Image 2.1",
                                  encoder=f"its Qwen3-VL-8B file, {ENCODER_FILE}",
                                  is_encoder=lambda p: "qwen3vl" in squeezed(p.name),
                                  is_vae=lambda p: re.search(r"qwen.?image.?2\.?1", p.stem.lower()) is not None)


def load_qwenimage21_single_file(checkpoint: CheckpointFile, config_dir: Path | None, dtype: torch.dtype,
                                 text_encoder_files: list[str], vae_file: str) -> Any:
    import diffusers
    import transformers
    from accelerate import init_empty_weights

    path = checkpoint.path
    folder = config_dir if config_dir is not None else MODEL_CONFIGS / CONFIG_FOLDER
    encoder_path, vae_path = companions(path, text_encoder_files, vae_file)
    if encoder_path is None:
        raise InputError(f"model.text_encoder_files: {path} holds the Qwen-Image 2.1 transformer only; choose its "
                         f"Qwen3-VL-8B text encoder file ({ENCODER_FILE}), or keep it in models/text_encoders beside "
                         "the transformer's folder as ComfyUI does")
    if vae_path is None:
        raise InputError(f"model.vae_file: {path} holds the Qwen-Image 2.1 transformer only; choose its VAE file "
                         f"({VAE_FILE})")

    state = from_comfy(read_scaled_fp8(checkpoint.state_dict(), path, "model.path", TRANSFORMER_FILE, dtype))
    with init_empty_weights():
        transformer = diffusers.QwenImage21Transformer2DModel.from_config(
            diffusers.QwenImage21Transformer2DModel.load_config(folder / "transformer"))
    load_exact(transformer, state, path, "Qwen-Image 2.1 transformer")

    encoder_state = read_scaled_fp8(open_checkpoint(encoder_path).state_dict(), encoder_path,
                                    "model.text_encoder_files", ENCODER_FILE, dtype)
    with init_empty_weights():
        text_encoder = transformers.Qwen3VLForConditionalGeneration(
            transformers.Qwen3VLConfig.from_pretrained(folder / "text_encoder"))
    load_exact(text_encoder, qwen25_vl_state(encoder_state), encoder_path, "Qwen3-VL text encoder",
               field="model.text_encoder_files")

    vae_state = read_scaled_fp8(open_checkpoint(vae_path).state_dict(), vae_path, "model.vae_file", VAE_FILE, dtype)
    with init_empty_weights():
        vae = diffusers.AutoencoderKLQwenImage21.from_config(
            diffusers.AutoencoderKLQwenImage21.load_config(folder / "vae"))
    load_exact(vae, vae_state, vae_path, f"Qwen-Image 2.1 VAE in diffusers' keys ({VAE_FILE})",
               field="model.vae_file")

    scheduler = diffusers.FlowMatchEulerDiscreteScheduler.from_pretrained(folder, subfolder="scheduler",
                                                                          local_files_only=True)
    processor = Qwen3VLTextProcessor(tokenizer_from(folder / "processor", "qwen3"),
                                     folder_chat_template(folder / "processor"))
    return diffusers.QwenImage21Pipeline(transformer=transformer.to(dtype), vae=vae.to(dtype),
                                         text_encoder=text_encoder.to(dtype), processor=processor, scheduler=scheduler)
