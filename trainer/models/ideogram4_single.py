"""Ideogram 4 from the single files people keep for ComfyUI, offline.

ComfyUI runs Ideogram 4 from two transformer files in ``models/diffusion_models`` — the conditional one
(``ideogram4….safetensors``, the one a LoRA trains) and the unconditional one that guides
(``ideogram4_unconditional….safetensors``, each loaded by its own Load Diffusion Model node) — plus Qwen3-VL-8B in
``models/text_encoders`` (``qwen3vl_8b….safetensors``) and Flux.2's VAE in ``models/vae`` (``flux2-vae.safetensors``).

* both transformers are in Ideogram's own layout (ComfyUI's ``comfy/ldm/ideogram4`` names: ``attention.qkv`` fused,
  ``attention.o``; bare keys or ``model.diffusion_model.``), read by ``ideogram4_layout`` — the layout a full run
  writes.  ``model.path`` is the conditional file; the unconditional one is found beside it by its name;
* Qwen3-VL as Krea 2 reads it (``krea2_single.qwen3_vl_state``: ComfyUI's ``model.``/``visual.`` keys or Hugging
  Face's), into ``Qwen3VLModel``; what the pipeline never runs may be absent — the vision tower (zeros) and the norm
  after the last layer (ones: the pipeline taps 13 layers' outputs; ComfyUI's Ideogram encoder is built without it);
* the VAE as Flux.2's reader reads it (BFL's layout or diffusers').

Every file goes through ``component_files.read_scaled_fp8``: the fp8 files Comfy-Org publishes for Ideogram 4
(``ideogram4_fp8_scaled``, ``qwen3vl_8b_fp8_scaled``: ComfyUI's newer format, an fp8 weight with one ``weight_scale``
and a ``comfy_quant`` description per layer) and the older ``scale_weight`` kind are multiplied out as ComfyUI computes
with them; the nvfp4 ones (``…_nvfp4_mixed``) are refused by name.  Tokenizer: the config folder's own
(tiny models), else the shipped Qwen3 vocabulary (Qwen3-VL's BPE) with the family's rendering of Qwen3-VL's chat turn.
Configs: ``resources/model_configs/ideogram-4`` (or the ``config_dir`` given).  Nothing is unpickled or downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from trainer.errors import InputError
from trainer.families.ideogram4 import FAMILY, original_layout
from trainer.models import flux2_single, fused_layout, ideogram4_layout
from trainer.models.checkpoint_io import CheckpointFile, open_checkpoint
from trainer.models.component_files import (
    comfy_models_folder,
    load_exact,
    one_encoder_companions,
    prefer_wide,
    read_scaled_fp8,
    squeezed,
    tokenizer_from,
    weight_files,
)
from trainer.models.info import MODEL_CONFIGS
from trainer.models.krea2_single import VISION, qwen3_vl_state

PREFIX = "model.diffusion_model."
TRANSFORMER_FILE = "ideogram4.safetensors (bf16)"
UNCONDITIONAL_FILE = "ideogram4_unconditional.safetensors"
ENCODER_FILE = "qwen3vl_8b.safetensors"
VAE_FILE = "flux2-vae.safetensors"
FINAL_NORM = "language_model.norm.weight"
DIFFUSION_FOLDERS = ("diffusion_models", "unet")  # where ComfyUI's Load Diffusion Model looks, both listed as one



def is_unconditional(path: Path) -> bool:
    """Whether a transformer file is the unconditional one: by its name, as ComfyUI users tell them apart (the two
    have the same keys and shapes)."""
    return "uncond" in squeezed(path.name)


def companions(model_path: Path, text_encoder_files: list[str], vae_file: str) -> tuple[Path | None, Path | None,
                                                                                          Path | None]:
    """The unconditional transformer's file (named for it: beside ``model_path``, else in ComfyUI's
    ``diffusion_models`` or ``unet``), the Qwen3-VL file and the VAE file: as configured, else found in ComfyUI's
    folders beside the transformer's by their names."""
    models = comfy_models_folder(model_path)
    unconditional = None
    for folder in (model_path.resolve().parent, *(models / name for name in DIFFUSION_FOLDERS)):
        found = [p for p in weight_files(folder) if is_unconditional(p) and "ideogram" in p.name.lower()]
        if found:
            unconditional = prefer_wide(found)
            break
    encoder, vae = one_encoder_companions(model_path, text_encoder_files, vae_file, family="Ideogram 4",
                                          encoder=f"its Qwen3-VL-8B file, {ENCODER_FILE}",
                                          is_encoder=lambda p: "qwen3vl8b" in squeezed(p.name),
                                          is_vae=lambda p: p.stem.lower() in flux2_single.VAE_STEMS)
    return unconditional, encoder, vae


def load_transformer(path: Path, state: dict[str, torch.Tensor], folder: Path, component: str, dtype: torch.dtype,
                     field: str = "model.path") -> Any:
    """One transformer file (Ideogram's layout) as diffusers' ``Ideogram4Transformer2DModel`` configured by
    ``folder/component``."""
    import diffusers
    from accelerate import init_empty_weights

    what = "Ideogram 4 " + component.replace("_", " ")
    original = {key.removeprefix(PREFIX): value for key, value in read_scaled_fp8(
        state, path, field, UNCONDITIONAL_FILE if component != "transformer" else TRANSFORMER_FILE, dtype).items()}
    with init_empty_weights():
        transformer = diffusers.Ideogram4Transformer2DModel.from_config(
            diffusers.Ideogram4Transformer2DModel.load_config(folder / component))
    config = dict(transformer.config)
    unknown = fused_layout.unknown_keys(original, original_layout(config), ideogram4_layout.same_names(config))
    if unknown:  # a file of another model, or a layout Kamaal does not know
        raise InputError(f"{field}: {path} does not hold an {what} of this shape: it has unknown "
                         f"{', '.join(unknown[:3])}")
    load_exact(transformer, ideogram4_layout.to_diffusers(original, config), path, what, field=field)
    return transformer.to(dtype)


def load_ideogram4_single_file(checkpoint: CheckpointFile, config_dir: Path | None, dtype: torch.dtype,
                               text_encoder_files: list[str], vae_file: str) -> Any:
    import diffusers
    import transformers
    from accelerate import init_empty_weights

    path = checkpoint.path
    folder = config_dir if config_dir is not None else MODEL_CONFIGS / FAMILY.config_folders["flow_matching"]
    if is_unconditional(path):
        raise InputError(f"model.path: {path} is Ideogram 4's unconditional transformer, which only guides; choose "
                         f"the conditional one ({TRANSFORMER_FILE}) and keep this file beside it")
    unconditional_path, encoder_path, vae_path = companions(path, text_encoder_files, vae_file)
    if unconditional_path is None:
        raise InputError(f"model.path: {path} holds Ideogram 4's conditional transformer only; its sampling needs the "
                         f"unconditional one too: keep {UNCONDITIONAL_FILE} beside it (in the same folder, or in "
                         "models/diffusion_models) as ComfyUI does")
    if encoder_path is None:
        raise InputError(f"model.text_encoder_files: {path} holds the Ideogram 4 transformer only; choose its "
                         f"Qwen3-VL-8B text encoder file ({ENCODER_FILE}), or keep it in models/text_encoders beside "
                         "the transformer's folder as ComfyUI does")
    if vae_path is None:
        raise InputError(f"model.vae_file: {path} holds the Ideogram 4 transformer only; choose its VAE file "
                         f"({VAE_FILE}, Flux.2's), or keep it in models/vae beside the transformer's folder as "
                         "ComfyUI does")

    transformer = load_transformer(path, checkpoint.state_dict(), folder, "transformer", dtype)
    unconditional = load_transformer(unconditional_path, open_checkpoint(unconditional_path).state_dict(), folder,
                                     "unconditional_transformer", dtype)

    encoder_state = qwen3_vl_state(read_scaled_fp8(open_checkpoint(encoder_path).state_dict(), encoder_path,
                                                   "model.text_encoder_files", ENCODER_FILE, dtype))
    with init_empty_weights():
        text_encoder = transformers.Qwen3VLModel(transformers.Qwen3VLConfig.from_pretrained(folder / "text_encoder"))
    without_vision = not any(key.startswith(VISION) for key in encoder_state)
    vision = [key for key in text_encoder.state_dict() if key.startswith(VISION)] if without_vision else []
    without_norm = FINAL_NORM not in encoder_state
    load_exact(text_encoder, encoder_state, encoder_path, "Qwen3-VL text encoder", field="model.text_encoder_files",
               optional=[*vision, *([FINAL_NORM] if without_norm else [])])
    if without_vision:  # the pipeline encodes text only: the tower is never read
        text_encoder.visual.to_empty(device="cpu")
        for parameter in text_encoder.visual.parameters():
            torch.nn.init.zeros_(parameter)
    if without_norm:  # the pipeline taps the layers' outputs, never the norm after the last (ComfyUI's file drops it)
        norm = text_encoder.language_model.norm
        norm.weight = torch.nn.Parameter(torch.ones(norm.weight.shape, dtype=norm.weight.dtype))

    tokenizer = tokenizer_from(folder / "tokenizer", "qwen3")
    if not (folder / "tokenizer").is_dir():  # the shipped Qwen3 files: Qwen3's own template cannot render the turn
        tokenizer.chat_template = FAMILY.text_encoders[0].chat_template
    return diffusers.Ideogram4Pipeline(
        transformer=transformer, unconditional_transformer=unconditional,
        vae=flux2_single.load_vae(vae_path, folder).to(dtype), text_encoder=text_encoder.to(dtype),
        tokenizer=tokenizer, scheduler=flux2_single.scheduler(folder))
