"""HiDream-I1 from the single files people keep for ComfyUI, offline, and back.

* the transformer (``hidream_i1_full_fp16.safetensors``, ``…_dev_…``, ``…_fast_…`` in ``models/diffusion_models``):
  ComfyUI's HiDream model names its modules as diffusers does, so the file holds diffusers' keys,
  ``model.diffusion_model.`` prefixed or not (diffusers' own single-file converter for HiDream only strips that
  prefix); fp8 files are read by ``component_files.read_scaled_fp8`` (plain fp8 cast, "scaled" fp8 of either
  generation multiplied out, ComfyUI's other quantized formats refused by name);
* four text encoder files (``models/text_encoders``): ``clip_l_hidream`` and ``clip_g_hidream`` (CLIP with its
  projection, Hugging Face's layout; told apart by name, else by width and depth against the configs),
  ``t5xxl_…`` (T5's encoder) and ``llama_3.1_8b_instruct_…`` (Hugging Face's Llama keys; a file without the LM head
  gets the embedding in its place — the pipeline reads hidden states only);
* Flux's VAE (``ae.safetensors`` in ``models/vae``).

Tokenizers: CLIP's and T5's are shipped; Llama 3's is not (Meta's licence).  It is the config folder's
``tokenizer_4`` where there is one (tiny models), else ComfyUI's own copy, ``comfy/text_encoders/llama_tokenizer``
in the ComfyUI installation whose ``models/`` folder holds the transformer; without either the file is refused
naming that folder.  Which files: ``model.text_encoder_files`` and ``model.vae_file``, or ComfyUI's folders beside the
transformer's.  Every file is read as safetensors (``checkpoint_io``); nothing is unpickled, nothing downloaded.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from trainer.errors import InputError
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
    read_scaled_fp8,
    t5_state,
    tokenizer_from,
    vae_from_state,
    weight_files,
)
from trainer.models.info import MODEL_CONFIGS

PREFIX = "model.diffusion_model."
CONFIG_FOLDER = "hidream-i1-full"
TRANSFORMER_FILE = "hidream_i1_full_fp16.safetensors"
ENCODER_NAMES = {"text_encoder": "clip_l_hidream.safetensors", "text_encoder_2": "clip_g_hidream.safetensors",
                 "text_encoder_3": "t5xxl_fp16.safetensors",
                 "text_encoder_4": "llama_3.1_8b_instruct_fp8_scaled.safetensors"}
COMFY_LLAMA_TOKENIZER = Path("comfy") / "text_encoders" / "llama_tokenizer"
VAE_STEMS = ("ae", "flux_vae", "flux-vae", "flux1_vae", "flux1-vae")


def pipeline_to_comfy(pipeline: Any) -> dict[str, torch.Tensor]:
    """A full or frozen run's transformer as the file ComfyUI's Load Diffusion Model takes (diffusers' keys)."""
    return dict(pipeline.transformer.state_dict())


def _squeezed(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def companions(model_path: Path, text_encoder_files: list[str], vae_file: str) -> tuple[list[Path], Path | None]:
    """The text encoder files and the VAE file: as configured, else found by name in ComfyUI's folders beside the
    transformer's (the full-width file of an encoder before an fp8 one)."""
    encoders = [Path(p) for p in text_encoder_files]
    vae = Path(vae_file) if vae_file else None
    models = comfy_models_folder(model_path)
    if not encoders:
        for folder in COMFY_TEXT_FOLDERS[::-1]:  # text_encoders is where ComfyUI keeps them now
            files = weight_files(models / folder)
            groups = [[p for p in files if "cliplhidream" in _squeezed(p.name)],  # not SD 3.5's clip_l beside it
                      [p for p in files if "clipghidream" in _squeezed(p.name)],
                      [p for p in files if "t5xxl" in _squeezed(p.name)],
                      [p for p in files if "llama31" in _squeezed(p.name)]]
            if all(groups):
                encoders = [prefer_wide(group) for group in groups]
                break
    if vae is None:
        found = [p for p in weight_files(models / "vae") if p.stem.lower() in VAE_STEMS]
        vae = found[0] if found else None
    return encoders, vae


def _sort_encoders(files: list[Path], folder: Path) -> dict[str, Path]:
    """Which file is which encoder: T5 and Llama by their keys, the two CLIPs by name (``clip_l``/``clip_g``), else
    by width and depth against the configs."""
    import json

    sorted_files: dict[str, Path] = {}
    clips: list[Path] = []
    for file in files:
        keys = open_checkpoint(file).shapes
        if is_t5(keys):
            sorted_files["text_encoder_3"] = file
        elif clip_layout(keys) is not None:
            clips.append(file)
        elif any(key.startswith("model.layers.") for key in keys):
            sorted_files["text_encoder_4"] = file
        else:
            raise InputError(f"model.text_encoder_files: {file} is neither a CLIP, a T5 nor a Llama text encoder")
    for file in clips:
        name = _squeezed(file.name)
        if "clipl" in name or "clipg" in name:
            sorted_files["text_encoder" if "clipl" in name else "text_encoder_2"] = file
            continue
        shape = clip_shape(open_checkpoint(file).shapes)
        for component in ("text_encoder", "text_encoder_2"):
            config = json.loads((folder / component / "config.json").read_text(encoding="utf-8"))
            if shape == (config["hidden_size"], config["num_hidden_layers"]) and component not in sorted_files:
                sorted_files[component] = file
                break
    missing = [ENCODER_NAMES[c] for c in ENCODER_NAMES if c not in sorted_files]
    if missing:
        raise InputError(f"model.text_encoder_files: HiDream-I1 needs its four text encoder files; missing: "
                         f"{', '.join(missing)} (choose them, or keep them in models/text_encoders beside the "
                         "transformer's folder as ComfyUI does)")
    return sorted_files


def llama_tokenizer(folder: Path, model_path: Path, named: str = ""):
    """Llama 3's tokenizer: the folder named in ``model.tokenizer_folder``, else the config folder's ``tokenizer_4``,
    else ComfyUI's own copy in the installation the model file sits in; else ``InputError`` naming where it is
    looked for."""
    from transformers import AutoTokenizer

    own = folder / "tokenizer_4"
    comfy = comfy_models_folder(model_path).parent / COMFY_LLAMA_TOKENIZER
    for candidate in (*([Path(named)] if named else []), own, comfy):
        if (candidate / "tokenizer.json").is_file():
            return AutoTokenizer.from_pretrained(candidate, local_files_only=True)
    raise InputError(f"model.path: {model_path} needs Llama 3.1's tokenizer, which Kamaal does not ship (Meta's "
                     f"licence): name its folder in model.tokenizer_folder, keep the file in ComfyUI's models folder, "
                     f"whose installation has it in {comfy}, or point model.path at HiDream's diffusers folder with "
                     "Llama-3.1-8B-Instruct as its text_encoder_4 and tokenizer_4")


def llama_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A Llama file's tensors as ``LlamaForCausalLM`` names them; the embedding stands in for an absent LM head."""
    state = dict(state)
    if "lm_head.weight" not in state and "model.embed_tokens.weight" in state:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    return state


def load_hidream_single_file(checkpoint: CheckpointFile, config_dir: Path | None, dtype: torch.dtype,
                             text_encoder_files: list[str], vae_file: str, tokenizer_folder: str = "") -> Any:
    import diffusers
    import transformers
    from accelerate import init_empty_weights

    from trainer.models.loading import _tokenizer

    path = checkpoint.path
    folder = config_dir if config_dir is not None else MODEL_CONFIGS / CONFIG_FOLDER
    encoder_paths, vae_path = companions(path, text_encoder_files, vae_file)
    files = _sort_encoders(encoder_paths, folder)
    if vae_path is None:
        raise InputError(f"model.vae_file: {path} holds the HiDream-I1 transformer only; choose its VAE file "
                         "(Flux's ae.safetensors), or keep it in models/vae beside the transformer's folder as "
                         "ComfyUI does")
    tokenizer_4 = llama_tokenizer(folder, path, tokenizer_folder)

    state = {key.removeprefix(PREFIX): value for key, value in read_scaled_fp8(
        checkpoint.state_dict(), path, "model.path", TRANSFORMER_FILE, dtype).items()}
    with init_empty_weights():
        transformer = diffusers.HiDreamImageTransformer2DModel.from_config(
            diffusers.HiDreamImageTransformer2DModel.load_config(folder / "transformer"))
    load_exact(transformer, state, path, "HiDream-I1 transformer")

    encoders: dict[str, torch.nn.Module] = {}
    for component, file in files.items():
        tensors = read_scaled_fp8(open_checkpoint(file).state_dict(), file, "model.text_encoder_files",
                                  ENCODER_NAMES[component], dtype)
        config = transformers.AutoConfig.from_pretrained(folder / component)
        model_class = {"text_encoder_3": transformers.T5EncoderModel,
                       "text_encoder_4": transformers.LlamaForCausalLM}.get(
            component, transformers.CLIPTextModelWithProjection)
        with init_empty_weights():
            encoder = model_class(config)
        fitted = (t5_state(tensors) if component == "text_encoder_3" else llama_state(tensors)
                  if component == "text_encoder_4" else clip_state(tensors, encoder))
        load_exact(encoder, fitted, file, f"{ENCODER_NAMES[component].split('.')[0]} text encoder",
                   field="model.text_encoder_files")
        encoders[component] = encoder.to(dtype).eval()  # built by its constructor it trains: dropout off

    vae = vae_from_state(open_checkpoint(vae_path).state_dict(), folder, vae_path, "model.vae_file",
                         "is not a Flux VAE")
    # Dev samples with shift 6 (HiDream's inference script and its published scheduler); Full and Fast with 3.
    shift = {"shift": 6.0} if "_dev" in path.name.lower() else {}
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler.from_pretrained(folder, subfolder="scheduler",
                                                                          local_files_only=True, **shift)
    return diffusers.HiDreamImagePipeline(
        transformer=transformer.to(dtype), vae=vae.to(dtype), scheduler=scheduler, **encoders,
        tokenizer=_tokenizer(folder / "tokenizer", False), tokenizer_2=_tokenizer(folder / "tokenizer_2", True),
        tokenizer_3=tokenizer_from(folder / "tokenizer_3", "t5"), tokenizer_4=tokenizer_4)
