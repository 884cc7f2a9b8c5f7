"""Krea 2 from the single files people keep for ComfyUI and musubi-tuner, offline.

* the transformer (krea-ai's ``raw.safetensors`` / ``turbo.safetensors``, in ``models/diffusion_models``): the original
  ``SingleStreamDiT`` layout (``first``, ``blocks.N.attn.wq``, ``txtfusion.…``), ``model.diffusion_model.`` prefixed
  or not, read by ``krea2_layout``; a name with "turbo" in it is the distilled model (the pipeline's
  ``is_distilled``: its fixed sampling shift), any other Raw;
* Qwen3-VL-4B (Comfy-Org's ``qwen3vl_4b_bf16.safetensors`` in ``models/text_encoders``): the language model under
  ``model.`` and the vision tower under ``visual.`` (ComfyUI's keys), or Hugging Face's ``model.language_model.`` /
  ``model.visual.``, into ``Qwen3VLModel`` (``language_model.``, ``visual.``); an LM head is dropped (tied, and the
  pipeline reads hidden states only).  A file without the vision tower loads too: the pipeline encodes text only, so
  the tower is filled with zeros it never reads.  ComfyUI's "scaled" fp8 files are read as ComfyUI computes with
  them (``component_files.read_scaled_fp8``);
* the VAE (``qwen_image_vae.safetensors`` in ``models/vae``): Qwen-Image's, in Wan 2.1's original layout
  (``wan_vae_layout``), found as ``qwenimage_single`` finds it.

Which files: ``model.text_encoder_files`` and ``model.vae_file``, or, when those are empty, ComfyUI's folders beside
the transformer's.  Configs: ``resources/model_configs/krea2`` (or the ``config_dir`` given, for tiny models); the
tokenizer from there or the shipped Qwen3 files (Qwen3-VL's BPE and special tokens).  Every file is read as
safetensors; nothing is unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from trainer.errors import InputError
from trainer.families.krea2 import FAMILY
from trainer.models import krea2_layout, wan_vae_layout
from trainer.models.checkpoint_io import CheckpointFile, open_checkpoint
from trainer.models.component_files import (
    load_exact,
    one_encoder_companions,
    read_scaled_fp8,
    squeezed,
    tokenizer_from,
)
from trainer.models.info import MODEL_CONFIGS
from trainer.models.qwenimage_single import VAE_FILE, VAE_PREFIXES

PREFIX = "model.diffusion_model."
ENCODER_FILE = "qwen3vl_4b_bf16.safetensors"
VISION = "visual."



def companions(model_path: Path, text_encoder_files: list[str], vae_file: str) -> tuple[Path | None, Path | None]:
    """The Qwen3-VL file and the VAE file: as configured, else found in ComfyUI's folders beside the transformer's
    by their names (``qwen3vl…``, not Z-Image's ``qwen_3_4b`` beside it; ``qwen…vae``), the full-width file first."""
    return one_encoder_companions(model_path, text_encoder_files, vae_file, family="Krea 2",
                                  encoder=f"its Qwen3-VL file, {ENCODER_FILE}",
                                  is_encoder=lambda p: "qwen3vl" in squeezed(p.name),
                                  is_vae=lambda p: "qwen" in squeezed(p.stem) and "vae" in p.stem.lower())


def qwen3_vl_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A Qwen3-VL file's tensors as ``Qwen3VLModel`` names them (ComfyUI's ``model.``/``visual.`` keys or Hugging
    Face's ``model.language_model.``/``model.visual.``); the LM head left out."""
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("lm_head."):
            continue
        if key.startswith(("model.language_model.", "model.visual.")):
            renamed[key.removeprefix("model.")] = value
        elif key.startswith(("model.", "language_model.")):
            renamed["language_model." + key.removeprefix("model.").removeprefix("language_model.")] = value
        else:
            renamed[key] = value  # visual.…, or named by the loader as unknown
    return renamed


def load_krea2_single_file(checkpoint: CheckpointFile, config_dir: Path | None, dtype: torch.dtype,
                           text_encoder_files: list[str], vae_file: str) -> Any:
    import diffusers
    import transformers
    from accelerate import init_empty_weights

    path = checkpoint.path
    folder = config_dir if config_dir is not None else MODEL_CONFIGS / FAMILY.config_folders["flow_matching"]
    encoder_path, vae_path = companions(path, text_encoder_files, vae_file)
    if encoder_path is None:
        raise InputError(f"model.text_encoder_files: {path} holds the Krea 2 transformer only; choose its Qwen3-VL "
                         f"text encoder file ({ENCODER_FILE}), or keep it in models/text_encoders beside the "
                         "transformer's folder as ComfyUI does")
    if vae_path is None:
        raise InputError(f"model.vae_file: {path} holds the Krea 2 transformer only; choose its VAE file "
                         f"({VAE_FILE}), or keep it in models/vae beside the transformer's folder as ComfyUI does")

    # Built with empty parameters (init_empty_weights) and filled with the files' tensors: no second copy, and the
    # tensors a module makes for itself (the rotary tables) are real.
    original = {key.removeprefix(PREFIX): value for key, value in read_scaled_fp8(
        checkpoint.state_dict(), path, "model.path", "raw.safetensors", dtype).items()}
    with init_empty_weights():
        transformer = diffusers.Krea2Transformer2DModel.from_config(
            diffusers.Krea2Transformer2DModel.load_config(folder / "transformer"))
    config = dict(transformer.config)
    unknown = krea2_layout.unknown_keys(original, config)
    if unknown:  # a file of another model, or a layout Kamaal does not know
        raise InputError(f"model.path: {path} does not hold a Krea 2 transformer of this shape: it has unknown "
                         f"{', '.join(unknown[:3])}")
    load_exact(transformer, krea2_layout.to_diffusers(original, config), path, "Krea 2 transformer")

    encoder_state = qwen3_vl_state(read_scaled_fp8(open_checkpoint(encoder_path).state_dict(), encoder_path,
                                                   "model.text_encoder_files", ENCODER_FILE, dtype))
    with init_empty_weights():
        text_encoder = transformers.Qwen3VLModel(transformers.Qwen3VLConfig.from_pretrained(folder / "text_encoder"))
    without_vision = not any(key.startswith(VISION) for key in encoder_state)
    vision = [key for key in text_encoder.state_dict() if key.startswith(VISION)] if without_vision else []
    load_exact(text_encoder, encoder_state, encoder_path, "Qwen3-VL text encoder", field="model.text_encoder_files",
               optional=vision)
    if without_vision:
        text_encoder.visual.to_empty(device="cpu")
        for parameter in text_encoder.visual.parameters():
            torch.nn.init.zeros_(parameter)

    vae_state = read_scaled_fp8(open_checkpoint(vae_path).state_dict(), vae_path, "model.vae_file", VAE_FILE, dtype)
    with init_empty_weights():
        vae = diffusers.AutoencoderKLQwenImage.from_config(diffusers.AutoencoderKLQwenImage.load_config(folder / "vae"))
    vae_original = {next((key.removeprefix(p) for p in VAE_PREFIXES if key.startswith(p)), key): value
                    for key, value in vae_state.items()}
    load_exact(vae, wan_vae_layout.to_diffusers(vae_original, list(vae.state_dict()), vae.config.num_res_blocks),
               vae_path, "Qwen-Image (Wan 2.1) VAE", field="model.vae_file")

    scheduler = diffusers.FlowMatchEulerDiscreteScheduler.from_pretrained(folder, subfolder="scheduler",
                                                                          local_files_only=True)
    index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    return diffusers.Krea2Pipeline(transformer=transformer.to(dtype), vae=vae.to(dtype),
                                   text_encoder=text_encoder.to(dtype),
                                   tokenizer=tokenizer_from(folder / "tokenizer", "qwen3"), scheduler=scheduler,
                                   text_encoder_select_layers=index.get("text_encoder_select_layers"),
                                   patch_size=int(index.get("patch_size", 2)),
                                   is_distilled="turbo" in path.name.lower())
