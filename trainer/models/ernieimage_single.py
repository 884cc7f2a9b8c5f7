"""ERNIE-Image from the single files people keep for ComfyUI, offline.

* the transformer (``ernie-image….safetensors`` in ``models/diffusion_models``): ComfyUI's ERNIE model names its
  modules as diffusers does, so the file holds diffusers' keys, ``model.diffusion_model.`` prefixed or not (diffusers'
  own single-file converter for ERNIE-Image only strips that prefix; a full run writes such a file,
  ``qwenimage_single.pipeline_to_comfy``);
* Ministral 3 (``ministral-3-3b….safetensors`` in ``models/text_encoders``): ComfyUI's language model under
  ``model.`` (with its Tekken vocabulary as a ``tekken_model`` byte tensor, no weight), or Hugging Face's layouts
  (``Mistral3ForConditionalGeneration``'s, or ``Mistral3Model``'s own as the ERNIE-Image folder keeps it), read by
  ``flux2_single.mistral3_state`` into ``Mistral3Model``; the Pixtral vision tower and its projector, which
  text-to-image never runs, are zeros where the file has none, and an LM head is dropped;
* Flux.2's VAE (``flux2-vae.safetensors`` in ``models/vae``, BFL's layout or diffusers'), read by ``flux2_single``.

Every file goes through ``component_files.read_scaled_fp8``: ComfyUI's fp8 weights of one scale each (``scale_weight``,
or the newer ``weight_scale`` with ``comfy_quant``) are multiplied out as ComfyUI computes with them, its other
quantized formats (nvfp4, …) are refused by name.  Mistral's Tekken vocabulary ships in no
package Kamaal may take it from: ``model.tokenizer_folder`` names the ERNIE-Image folder's ``tokenizer`` (or the
whole folder); without it the file is refused naming that field.  Configs: ``resources/model_configs/ernie-image``
(or the ``config_dir`` given, whose own ``tokenizer`` serves tiny models).  Nothing is unpickled or downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from trainer.errors import InputError
from trainer.families.ernieimage import FAMILY
from trainer.models import flux2_single
from trainer.models.checkpoint_io import CheckpointFile, open_checkpoint
from trainer.models.component_files import (
    load_exact,
    one_encoder_companions,
    read_scaled_fp8,
    squeezed,
    text_tokenizer,
)
from trainer.models.info import MODEL_CONFIGS

TRANSFORMER_FILE = "ernie-image.safetensors (bf16)"
ENCODER_FILE = "ministral-3-3b.safetensors"
VAE_FILE = "flux2-vae.safetensors"
ENCODER_PREFIX = "model."  # Mistral3ForConditionalGeneration's names → Mistral3Model's
LANGUAGE_MODEL = "language_model."



def companions(model_path: Path, text_encoder_files: list[str], vae_file: str) -> tuple[Path | None, Path | None]:
    """The Ministral 3 file and the VAE file: as configured, else found in ComfyUI's folders beside the
    transformer's by their names (``ministral…3…3b``; Flux.2's VAE names), the full-width file first."""
    return one_encoder_companions(model_path, text_encoder_files, vae_file, family="ERNIE-Image",
                                  encoder=f"its Ministral 3 file, {ENCODER_FILE}",
                                  is_encoder=lambda p: "ministral33b" in squeezed(p.name),
                                  is_vae=lambda p: p.stem.lower() in flux2_single.VAE_STEMS)


def ministral_state(state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """A Ministral 3 file's tensors as ``Mistral3Model`` names them (``language_model.``, ``vision_tower.``,
    ``multi_modal_projector.``), any LM head left out: the pipeline reads hidden states only."""
    state = flux2_single.mistral3_state(state, path, "Ministral 3", ENCODER_FILE)
    return {key.removeprefix(ENCODER_PREFIX): value for key, value in state.items() if not key.startswith("lm_head.")}


def load_ernieimage_single_file(checkpoint: CheckpointFile, config_dir: Path | None, dtype: torch.dtype,
                                text_encoder_files: list[str], vae_file: str, tokenizer_folder: str = "") -> Any:
    import diffusers
    import transformers
    from accelerate import init_empty_weights

    path = checkpoint.path
    folder = config_dir if config_dir is not None else MODEL_CONFIGS / FAMILY.config_folders["flow_matching"]
    tokenizer_path = flux2_single.mistral_tokenizer_folder(tokenizer_folder, folder)
    if tokenizer_path is None or not (tokenizer_path / "tokenizer.json").is_file():
        raise InputError("model.tokenizer_folder: ERNIE-Image's tokenizer (Mistral's Tekken vocabulary) ships with no "
                         "package Kamaal may take it from; choose the tokenizer folder of baidu/ERNIE-Image "
                         "(tokenizer.json, tokenizer_config.json), or the whole ERNIE-Image folder")
    encoder_path, vae_path = companions(path, text_encoder_files, vae_file)
    if encoder_path is None:
        raise InputError(f"model.text_encoder_files: {path} holds the ERNIE-Image transformer only; choose its "
                         f"Ministral 3 text encoder file ({ENCODER_FILE}), or keep it in models/text_encoders beside "
                         "the transformer's folder as ComfyUI does")
    if vae_path is None:
        raise InputError(f"model.vae_file: {path} holds the ERNIE-Image transformer only; choose its VAE file "
                         f"({VAE_FILE}, Flux.2's), or keep it in models/vae beside the transformer's folder as "
                         "ComfyUI does")

    # Built with empty parameters (init_empty_weights) and filled with the files' tensors: no second copy, and the
    # tensors a module makes for itself (rotary tables) are real.
    state = {key.removeprefix(flux2_single.PREFIX): value for key, value in read_scaled_fp8(
        checkpoint.state_dict(), path, "model.path", TRANSFORMER_FILE, dtype).items()}
    with init_empty_weights():
        transformer = diffusers.ErnieImageTransformer2DModel.from_config(
            diffusers.ErnieImageTransformer2DModel.load_config(folder / "transformer"))
    load_exact(transformer, state, path, "ERNIE-Image transformer")

    encoder_state = ministral_state(read_scaled_fp8(open_checkpoint(encoder_path).state_dict(), encoder_path,
                                                    "model.text_encoder_files", ENCODER_FILE, dtype), encoder_path)
    with init_empty_weights():
        text_encoder = transformers.Mistral3Model(transformers.Mistral3Config.from_pretrained(folder / "text_encoder"))
    # The parts text never reaches (the vision tower, its projector), where the file has none of them: zeros (a file
    # with part of them is named by load_exact).  Their buffers (rotary tables) stay as the constructor made them.
    language_only = all(key.startswith(LANGUAGE_MODEL) for key in encoder_state)
    unused = [key for key in text_encoder.state_dict() if not key.startswith(LANGUAGE_MODEL)] if language_only else []
    load_exact(text_encoder, encoder_state, encoder_path, "Ministral 3 text encoder",
               field="model.text_encoder_files", optional=unused)
    for name, parameter in list(text_encoder.named_parameters()):
        if name in unused:
            module_name, _, leaf = name.rpartition(".")
            setattr(text_encoder.get_submodule(module_name), leaf,
                    torch.nn.Parameter(torch.zeros(parameter.shape, dtype=parameter.dtype)))

    vae = flux2_single.load_vae(vae_path, folder)
    return diffusers.ErnieImagePipeline(transformer=transformer.to(dtype), vae=vae.to(dtype),
                                        text_encoder=text_encoder.to(dtype), tokenizer=text_tokenizer(tokenizer_path),
                                        scheduler=flux2_single.scheduler(folder))
