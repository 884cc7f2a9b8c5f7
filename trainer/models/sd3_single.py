"""Stable Diffusion 3.5 from Stability's single files, offline: ``sd3.5_large.safetensors``,
``sd3.5_large_turbo.safetensors``, ``sd3.5_medium.safetensors`` (and the files ComfyUI users keep beside them).

* the MMDiT under ``model.diffusion_model.`` (or bare), converted by ``sd3_layout`` — any width, so tiny test
  models load the same way; Medium (MMDiT-X: ``x_block.attn2`` in its first blocks) or Large from its keys;
* the VAE under ``first_stage_model.``, or ``model.vae_file``, converted by diffusers' own reader;
* CLIP-L, CLIP-G and T5-XXL under ``text_encoders.{clip_l,clip_g,t5xxl}.transformer.`` when the file has them,
  else as files of their own (``clip_l.safetensors``, ``clip_g.safetensors``, ``t5xxl_fp16.safetensors``):
  ``model.text_encoder_files``, or ComfyUI's ``models/clip`` / ``models/text_encoders`` beside the file's
  folder.  Files named in ``model.text_encoder_files`` replace the ones inside.  CLIP-L and CLIP-G are told
  apart by their widths and depths (768 × 12 and 1280 × 32), a file in Hugging Face's or OpenCLIP's layout.
  T5 is optional, as in diffusers' pipeline (``text_encoder_3`` None): the prompt's T5 part is then zeros, and
  ``load_model`` says so in its warnings.

Configs: ``resources/model_configs/sd3.5-large`` or ``sd3.5-medium`` (or the ``config_dir`` given, for tiny
models); tokenizers from there or the shipped ones.  Every file is read as safetensors or weights-only
(``checkpoint_io``); nothing is unpickled, nothing downloaded.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from trainer.errors import InputError
from trainer.families.sd3 import FAMILY, transformer_variant
from trainer.models.checkpoint_io import CheckpointFile, open_checkpoint
from trainer.models.component_files import (
    COMFY_TEXT_FOLDERS,
    clip_layout,
    clip_shape,
    clip_state,
    comfy_models_folder,
    is_t5,
    load_exact,
    prefer_wide,
    t5_state,
    tokenizer_from,
    vae_from_state,
    weight_files,
)
from trainer.models.info import MODEL_CONFIGS
from trainer.models.sd3_layout import PREFIX, to_diffusers, unknown_keys

VAE_PREFIX = "first_stage_model."
TEXT_PREFIX = "text_encoders."
# How ComfyUI users name the encoder files (a hint only: the keys and shapes decide).
_NAME_HINTS = {"text_encoder": ("clip_l", "clip-l", "vit-l"), "text_encoder_2": ("clip_g", "clip-g", "bigg"),
               "text_encoder_3": ("t5",)}


def load_sd3_single_file(checkpoint: CheckpointFile, config_dir: Path | None, dtype: torch.dtype,
                         text_encoder_files: list[str], vae_file: str) -> Any:
    import diffusers

    from trainer.models.loading import _refuse_missing_weights, _tokenizer

    path = checkpoint.path
    folder = config_dir if config_dir is not None else MODEL_CONFIGS / transformer_variant(checkpoint.shapes)
    state = checkpoint.state_dict()
    transformer = _transformer(state, path, folder)
    vae = _vae(state, path, folder, vae_file)
    encoders = _text_encoders(state, path, folder, text_encoder_files)
    specs = FAMILY.text_encoders
    parts: dict[str, Any] = {"transformer": _as(transformer, dtype), "vae": _as(vae, dtype)}
    for spec in specs:
        encoder = encoders[spec.component]
        parts[spec.component] = _as(encoder, dtype) if encoder is not None else None
        if spec.tokenizer_kind == "t5":
            parts[spec.tokenizer] = tokenizer_from(folder / spec.tokenizer, "t5") if encoder is not None else None
        else:
            parts[spec.tokenizer] = _tokenizer(folder / spec.tokenizer, spec.open_clip)
    parts["scheduler"] = diffusers.FlowMatchEulerDiscreteScheduler.from_pretrained(
        folder, subfolder="scheduler", local_files_only=True)
    pipeline = diffusers.StableDiffusion3Pipeline(**parts)
    _refuse_missing_weights(pipeline, path)
    return pipeline


def _as(module: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """``module`` in ``dtype`` (left alone when it already is: no copy, and no diffusers cast warning)."""
    return module if all(p.dtype == dtype for p in module.parameters()) else module.to(dtype)


def _transformer(state: dict[str, torch.Tensor], path: Path, folder: Path) -> torch.nn.Module:
    import diffusers

    if any(key.startswith(PREFIX) for key in state):
        sai = {key[len(PREFIX):]: value for key, value in state.items() if key.startswith(PREFIX)}
    else:  # a transformer-only file (ComfyUI's models/unet) keeps the MMDiT's keys bare
        sai = {key: value for key, value in state.items() if not key.startswith((VAE_PREFIX, TEXT_PREFIX))}
    config = diffusers.SD3Transformer2DModel.load_config(folder / "transformer")
    found, expected = _describe(sai), _describe_config(config)
    if found != expected or unknown_keys(sai, config):
        raise InputError(f"model.path: {path} holds an SD 3 MMDiT of {found}, but the config it is read with "
                         f"({folder / 'transformer'}) is {expected}; Kamaal reads Stable Diffusion 3.5 Large, Large "
                         "Turbo and Medium files")
    with torch.device("meta"):
        transformer = diffusers.SD3Transformer2DModel.from_config(config)
    load_exact(transformer, to_diffusers(sai, dict(transformer.config)), path, "SD 3.5 transformer",
               field="model.path")
    return transformer


def _describe(sai: dict[str, torch.Tensor]) -> str:
    """The MMDiT's size as its file shows it: blocks, width, which blocks have a second attention."""
    blocks = {int(m[1]) for key in sai if (m := re.match(r"joint_blocks\.(\d+)\.", key))}
    embedder = sai.get("context_embedder.weight")
    width = int(embedder.shape[0]) if embedder is not None else 0
    dual = sorted({int(m[1]) for key in sai if (m := re.match(r"joint_blocks\.(\d+)\.x_block\.attn2\.", key))})
    return _size(len(blocks), width, dual)


def _describe_config(config: dict) -> str:
    width = int(config["num_attention_heads"]) * int(config["attention_head_dim"])
    return _size(int(config["num_layers"]), width, sorted(int(i) for i in config.get("dual_attention_layers") or ()))


def _size(blocks: int, width: int, dual: list[int]) -> str:
    second = f", a second image attention in blocks {dual[0]}–{dual[-1]} (MMDiT-X)" if dual else ""
    return f"{blocks} blocks {width} wide{second}"


def _vae(state: dict[str, torch.Tensor], path: Path, folder: Path, vae_file: str) -> torch.nn.Module:

    if vae_file:  # named: it replaces the one inside (its keys with or without first_stage_model.)
        source, field = Path(vae_file), "model.vae_file"
        vae_state = {key.removeprefix(VAE_PREFIX): value for key, value in open_checkpoint(source).state_dict().items()}
    elif any(key.startswith(VAE_PREFIX) for key in state):
        source, field = path, "model.path"
        vae_state = {key[len(VAE_PREFIX):]: value for key, value in state.items() if key.startswith(VAE_PREFIX)}
    else:
        raise InputError(f"model.vae_file: {path} holds no VAE ({VAE_PREFIX}*); choose the SD 3.5 VAE file")
    return vae_from_state(vae_state, folder, source, field, "does not hold an SD 3.5 VAE")


def _text_encoders(state: dict[str, torch.Tensor], path: Path, folder: Path,
                   text_encoder_files: list[str]) -> dict[str, torch.nn.Module | None]:
    """Each encoder from a named file, else from inside the checkpoint, else from ComfyUI's folders beside it;
    T5 may be absent (None), a CLIP may not."""
    import transformers

    specs = FAMILY.text_encoders
    inside = {spec.component: {key[len(spec.single_file_prefix):]: value for key, value in state.items()
                               if key.startswith(spec.single_file_prefix)} for spec in specs}
    configs = {spec.component: (transformers.T5Config if spec.tokenizer_kind == "t5" else transformers.CLIPTextConfig)
               .from_pretrained(folder / spec.component) for spec in specs}
    if text_encoder_files:
        files, field = _sort_files([Path(p) for p in text_encoder_files], configs), "model.text_encoder_files"
    else:
        lacking = [spec.component for spec in specs if not inside[spec.component]]
        files, field = _found_beside(path, lacking, configs), "model.text_encoder_files"
    encoders: dict[str, torch.nn.Module | None] = {}
    for spec in specs:
        name = spec.component
        if name in files:
            source, where, weights = files[name], field, open_checkpoint(files[name]).state_dict()
        elif inside[name]:
            source, where, weights = path, "model.path", inside[name]
        elif spec.tokenizer_kind == "t5":
            encoders[name] = None
            continue
        else:
            short = spec.single_file_prefix.split(".")[1]  # clip_l, clip_g
            raise InputError(f"model.text_encoder_files: {path} holds no {spec.label} ({spec.single_file_prefix}*); "
                             f"choose its file ({short}.safetensors), or keep it in models/clip or "
                             "models/text_encoders beside the checkpoint's folder as ComfyUI does")
        with torch.device("meta"):  # filled in place below: no random initialisation of billions of weights
            model = getattr(transformers, spec.transformers_class)(configs[name])
        if spec.tokenizer_kind == "t5":
            load_exact(model, t5_state(weights), source, spec.label, field=where)
        else:
            load_exact(model, clip_state(weights, model), source, spec.label, field=where)
        _fill_position_ids(model)
        encoders[name] = model
    return encoders


def _fill_position_ids(model: torch.nn.Module) -> None:
    """CLIP's position ids are a buffer no file holds (not saved); built on the meta device, give it values."""
    for module in model.modules():
        ids = getattr(module, "position_ids", None)
        if isinstance(ids, torch.Tensor) and ids.is_meta:
            module.register_buffer("position_ids", torch.arange(ids.shape[-1]).expand(ids.shape), persistent=False)


def _found_beside(path: Path, lacking: list[str], configs: dict[str, Any]) -> dict[str, Path]:
    """The lacking encoders' files in ComfyUI's text encoder folders beside the checkpoint's, by their names
    (then checked by their keys); the fp16/fp32 T5 before an fp8 one."""
    if not lacking:
        return {}
    models = comfy_models_folder(path)
    candidates = [file for folder in COMFY_TEXT_FOLDERS for file in weight_files(models / folder)]
    chosen: list[Path] = []
    for name in lacking:
        named = [file for file in candidates if any(hint in file.name.lower() for hint in _NAME_HINTS[name])]
        if named:
            chosen.append(prefer_wide(named) if name == "text_encoder_3" else named[0])
    return _sort_files(chosen, configs) if chosen else {}


def _sort_files(files: list[Path], configs: dict[str, Any]) -> dict[str, Path]:
    """Which encoder each file holds: T5 by its keys; CLIP-L or CLIP-G by width and depth against the configs
    (real CLIP-L is 768 × 12, CLIP-G 1280 × 32; where both fit — tiny test models — the file's name, then the
    order given, decides)."""
    chosen: dict[str, Path] = {}
    undecided: list[Path] = []
    shapes_l = (configs["text_encoder"].hidden_size, configs["text_encoder"].num_hidden_layers)
    shapes_g = (configs["text_encoder_2"].hidden_size, configs["text_encoder_2"].num_hidden_layers)
    for file in files:
        shapes = open_checkpoint(file).shapes
        if is_t5(shapes):
            slot: str | None = "text_encoder_3"
        elif clip_layout(shapes) is not None:
            size = clip_shape(dict(shapes))
            fits = [name for name, want in (("text_encoder", shapes_l), ("text_encoder_2", shapes_g)) if size == want]
            if not fits:
                raise InputError(f"model.text_encoder_files: {file} is a CLIP text encoder {size[0]} wide with "
                                 f"{size[1]} layers; SD 3.5 takes CLIP-L ({shapes_l[0]} × {shapes_l[1]}) and "
                                 f"CLIP-G ({shapes_g[0]} × {shapes_g[1]})")
            hinted = [name for name in fits if any(h in file.name.lower() for h in _NAME_HINTS[name])]
            slot = fits[0] if len(fits) == 1 else hinted[0] if len(hinted) == 1 else None
        else:
            raise InputError(f"model.text_encoder_files: {file} is neither a CLIP nor a T5 text encoder")
        if slot is None:
            undecided.append(file)
            continue
        if slot in chosen:
            raise InputError(f"model.text_encoder_files: {chosen[slot]} and {file} hold the same text encoder")
        chosen[slot] = file
    for file in undecided:
        slot = next((name for name in ("text_encoder", "text_encoder_2") if name not in chosen), None)
        if slot is None:
            raise InputError(f"model.text_encoder_files: {file} is one CLIP text encoder too many")
        chosen[slot] = file
    return chosen
