"""Kandinsky 5 Image from the single files people keep for ComfyUI, offline.

* the transformer (``kandinsky5lite_t2i.safetensors`` in ``models/diffusion_models``): the Kandinsky-5 repository's
  module names, which diffusers kept and ComfyUI's ``comfy/ldm/kandinsky5`` model uses, ``model.diffusion_model.``
  prefixed or not; a file with visual conditioning (the image-to-image and video models: 2·16 + 1 input channels per
  patch element) is refused by name;
* Qwen2.5-VL-7B (``qwen_2.5_vl_7b.safetensors`` or its ``_fp8_scaled`` file in ``models/text_encoders``): read as
  Qwen-Image reads it (``qwenimage_single.qwen25_vl_state``, ``component_files.read_scaled_fp8``);
* CLIP-L (``clip_l.safetensors``, either CLIP layout) for the pooled embedding;
* Flux's VAE (``ae.safetensors`` in ``models/vae``), converted by diffusers' own reader.

Which files: ``model.text_encoder_files`` (both, either order: told apart by their keys) and ``model.vae_file``, or,
when those are empty, ComfyUI's folders beside the transformer's.  Configs: ``resources/model_configs/
kandinsky5-t2i-lite`` (or the ``config_dir`` given, for tiny models); tokenizers from there, else the shipped Qwen3
(Qwen2.5's BPE) and CLIP files.  Every file is read as safetensors (``checkpoint_io``); nothing is unpickled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from trainer.errors import InputError
from trainer.models.checkpoint_io import CheckpointFile, open_checkpoint
from trainer.models.component_files import (
    COMFY_TEXT_FOLDERS,
    clip_layout,
    clip_state,
    comfy_models_folder,
    load_exact,
    prefer_wide,
    read_scaled_fp8,
    tokenizer_from,
    vae_from_state,
    weight_files,
)
from trainer.models.info import MODEL_CONFIGS
from trainer.models.qwenimage_single import ENCODER_FILE, qwen25_vl_state

PREFIX = "model.diffusion_model."
CONFIG_FOLDER = "kandinsky5-t2i-lite"
VAE_STEMS = ("ae", "flux_vae", "flux-vae", "flux1_vae", "flux1-vae")  # Flux's VAE, as ComfyUI users name it


def companions(model_path: Path, text_encoder_files: list[str], vae_file: str) -> tuple[list[Path], Path | None]:
    """The text encoder files (Qwen2.5-VL's and CLIP-L's) and the VAE file: as configured, else found in ComfyUI's
    folders beside the transformer's, by their names (the full-width Qwen file before an fp8 one)."""
    encoders = [Path(p) for p in text_encoder_files]
    vae = Path(vae_file) if vae_file else None
    models = comfy_models_folder(model_path)
    if not encoders:
        files = [p for folder in COMFY_TEXT_FOLDERS for p in weight_files(models / folder)]
        squeezed = {p: p.name.lower().replace(".", "").replace("_", "").replace("-", "") for p in files}
        qwen = [p for p in files if "qwen25vl" in squeezed[p]]
        clip = [p for p in files if "clip_l" in p.name.lower()]
        encoders = ([prefer_wide(qwen)] if qwen else []) + clip[:1]
    if vae is None:
        vae = next((p for p in weight_files(models / "vae") if p.stem.lower() in VAE_STEMS), None)
    return encoders, vae


def _sort_encoders(path: Path, files: list[Path]) -> tuple[Path, Path]:
    """(Qwen2.5-VL file, CLIP-L file), told apart by their keys."""
    qwen = clip = None
    for file in files:
        keys = open_checkpoint(file).shapes
        if clip_layout(keys) is not None:
            clip = file
        elif any(key.startswith(("model.layers.", "model.language_model.")) for key in keys):
            qwen = file
        else:
            raise InputError(f"model.text_encoder_files: {file} is neither a Qwen2.5-VL nor a CLIP text encoder")
    missing = [name for name, found in ((ENCODER_FILE, qwen), ("clip_l.safetensors", clip)) if found is None]
    if missing:
        raise InputError(f"model.text_encoder_files: {path} holds the Kandinsky 5 transformer only; choose its "
                         f"{' and '.join(missing)} text encoder file{'s' if len(missing) > 1 else ''}, or keep "
                         "them in models/text_encoders beside the transformer's folder as ComfyUI does")
    return qwen, clip  # type: ignore[return-value]


def load_kandinsky5_single_file(checkpoint: CheckpointFile, config_dir: Path | None, dtype: torch.dtype,
                                text_encoder_files: list[str], vae_file: str) -> Any:
    import diffusers
    import transformers
    from accelerate import init_empty_weights

    from trainer.models.loading import _tokenizer

    path = checkpoint.path
    folder = config_dir if config_dir is not None else MODEL_CONFIGS / CONFIG_FOLDER
    encoders, vae_path = companions(path, text_encoder_files, vae_file)
    qwen_path, clip_path = _sort_encoders(path, encoders)
    if vae_path is None:
        raise InputError(f"model.vae_file: {path} holds the Kandinsky 5 transformer only; choose Flux's VAE file "
                         "(ae.safetensors), or keep it in models/vae beside the transformer's folder as ComfyUI does")

    state = {key.removeprefix(PREFIX): value for key, value in read_scaled_fp8(
        checkpoint.state_dict(), path, "model.path", "kandinsky5lite_t2i.safetensors", dtype).items()}
    config = diffusers.Kandinsky5Transformer3DModel.load_config(folder / "transformer")
    embedding = state.get("visual_embeddings.in_layer.weight")
    patch = 1
    for side in config["patch_size"]:
        patch *= int(side)
    if embedding is not None and embedding.shape[1] == patch * (2 * int(config["in_visual_dim"]) + 1):
        raise InputError(f"model.path: {path} is a Kandinsky 5 model with visual conditioning (image editing or "
                         "video); Kamaal trains the text-to-image model (kandinsky5lite_t2i)")
    # Built with empty parameters and filled with the file's tensors: no second copy, and the RoPE tables (buffers
    # the model makes for itself) are real.
    with init_empty_weights():
        transformer = diffusers.Kandinsky5Transformer3DModel.from_config(config)
    load_exact(transformer, state, path, "Kandinsky 5 Image transformer")

    qwen_state = read_scaled_fp8(open_checkpoint(qwen_path).state_dict(), qwen_path, "model.text_encoder_files",
                                 ENCODER_FILE, dtype)
    with init_empty_weights():
        qwen = transformers.Qwen2_5_VLForConditionalGeneration(
            transformers.Qwen2_5_VLConfig.from_pretrained(folder / "text_encoder"))
    load_exact(qwen, qwen25_vl_state(qwen_state), qwen_path, "Qwen2.5-VL text encoder",
               field="model.text_encoder_files")
    clip = transformers.CLIPTextModel(transformers.CLIPTextConfig.from_pretrained(folder / "text_encoder_2"))
    load_exact(clip, clip_state(open_checkpoint(clip_path).state_dict(), clip), clip_path, "CLIP-L text encoder",
               field="model.text_encoder_files")
    vae = vae_from_state(open_checkpoint(vae_path).state_dict(), folder, vae_path, "model.vae_file",
                         "is not Flux's VAE")

    scheduler = diffusers.FlowMatchEulerDiscreteScheduler.from_pretrained(folder, subfolder="scheduler",
                                                                          local_files_only=True)
    return diffusers.Kandinsky5T2IPipeline(transformer=transformer.to(dtype), vae=vae.to(dtype),
                                           text_encoder=qwen.to(dtype), text_encoder_2=clip.to(dtype),
                                           tokenizer=tokenizer_from(folder / "tokenizer", "qwen3"),
                                           tokenizer_2=_tokenizer(folder / "tokenizer_2", False),
                                           scheduler=scheduler)
