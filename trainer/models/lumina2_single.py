"""Lumina 2 from the single files people keep for ComfyUI, offline.

* the transformer in the original layout (``lumina_2_model_bf16.safetensors`` in ``models/diffusion_models``:
  Alpha-VLLM's NextDiT keys, ``model.diffusion_model.`` prefixed or not), converted by ``lumina2_layout`` — the
  layout a full/frozen run writes, which diffusers' own ``convert_lumina2_to_diffusers`` reads too;
* Gemma-2-2B as a file of its own (``gemma_2_2b_fp16.safetensors`` in ``models/text_encoders``: Hugging Face's
  Gemma 2 keys under ``model.``, or without it), and Flux's VAE (``ae.safetensors`` in ``models/vae``);
* or all of it in ComfyUI's one checkpoint (``lumina_2.safetensors`` in ``models/checkpoints``): the transformer
  under ``model.diffusion_model.``, Gemma under ``text_encoders.gemma2_2b.transformer.model.`` (beside a
  ``logit_scale`` and ComfyUI's SentencePiece model, which are not weights), the VAE under ``vae.``.

Gemma's tokenizer is under Gemma's licence terms and is not shipped: ``model.tokenizer_folder`` names a folder that
holds it (the ``tokenizer`` folder of ``Alpha-VLLM/Lumina-Image-2.0``, or of any Gemma 2 model), else the config
folder's own (the tiny models' bring one); without either, the files are refused naming that field.  Which other
files: ``model.text_encoder_files`` and ``model.vae_file``, else ComfyUI's folders beside the transformer's.
Configs: ``resources/model_configs/lumina-image-2`` (or the ``config_dir`` given).  Every file is read as
safetensors (``checkpoint_io``); nothing is unpickled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from trainer.errors import InputError
from trainer.families.lumina2 import original_layout, original_parameters
from trainer.models import fused_layout
from trainer.models.checkpoint_io import CheckpointFile, open_checkpoint
from trainer.models.component_files import (
    load_exact,
    one_encoder_companions,
    vae_from_state,
)
from trainer.models.info import MODEL_CONFIGS
from trainer.models.lumina2_layout import to_diffusers

PREFIX = "model.diffusion_model."
CONFIG_FOLDER = "lumina-image-2"
VAE_STEMS = ("ae", "flux_vae", "flux-vae", "lumina_2_vae", "lumina2_vae")  # what Flux's VAE file is called
GEMMA_IN_CHECKPOINT = "text_encoders.gemma2_2b.transformer.model."  # ComfyUI's all-in-one file
GEMMA_PREFIX = "model."  # transformers' causal-LM files (and ComfyUI's gemma_2_2b file) keep the model under it
VAE_IN_CHECKPOINT = "vae."
TOKENIZER_HINT = ("the tokenizer folder of Alpha-VLLM/Lumina-Image-2.0 (its tokenizer/ subfolder: tokenizer.json, "
                  "tokenizer_config.json…), downloaded yourself")


def companions(model_path: Path, text_encoder_files: list[str], vae_file: str) -> tuple[Path | None, Path | None]:
    """The Gemma file and the VAE file: as configured, else found in ComfyUI's folders beside the transformer's
    (``models/diffusion_models/lumina_2_model_bf16.safetensors`` → ``models/text_encoders/gemma_2_2b…``,
    ``models/vae/ae.safetensors``)."""
    return one_encoder_companions(model_path, text_encoder_files, vae_file, family="Lumina 2",
                                  encoder="its Gemma 2 file, gemma_2_2b_fp16.safetensors",
                                  is_encoder=lambda p: "gemma" in p.name.lower(),
                                  is_vae=lambda p: p.stem.lower() in VAE_STEMS)


def gemma_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A Gemma 2 file's (or the all-in-one file's) tensors as ``Gemma2Model`` names them, without an LM head."""
    if any(key.startswith(GEMMA_IN_CHECKPOINT) for key in state):
        return {key.removeprefix(GEMMA_IN_CHECKPOINT): value for key, value in state.items()
                if key.startswith(GEMMA_IN_CHECKPOINT)}
    prefixed = any(key.startswith(GEMMA_PREFIX + "layers.") for key in state)
    return {key.removeprefix(GEMMA_PREFIX) if prefixed else key: value for key, value in state.items()
            if not key.startswith("lm_head.") and key != "spiece_model"}


def gemma_tokenizer(tokenizer_folder: str, config_folder: Path, path: Path) -> Any:
    """The user's tokenizer folder, else the config folder's own; ``InputError`` naming ``model.tokenizer_folder``
    when there is neither or it holds no tokenizer."""
    from transformers import AutoTokenizer

    folder = Path(tokenizer_folder).expanduser() if tokenizer_folder else config_folder / "tokenizer"
    if not folder.is_dir():
        raise InputError(f"model.tokenizer_folder: {path} is Lumina 2, whose Gemma tokenizer Kamaal cannot ship; "
                         f"choose {TOKENIZER_HINT}" if not tokenizer_folder
                         else f"model.tokenizer_folder: {folder} is not a folder; choose {TOKENIZER_HINT}")
    try:
        return AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, TypeError) as error:
        raise InputError(f"model.tokenizer_folder: {folder} holds no tokenizer transformers can read "
                         f"({str(error).splitlines()[0] if str(error) else type(error).__name__}); choose "
                         f"{TOKENIZER_HINT}") from None


def load_lumina2_single_file(checkpoint: CheckpointFile, config_dir: Path | None, dtype: torch.dtype,
                             text_encoder_files: list[str], vae_file: str, tokenizer_folder: str = "") -> Any:
    import diffusers
    import transformers

    path = checkpoint.path
    folder = config_dir if config_dir is not None else MODEL_CONFIGS / CONFIG_FOLDER
    tokenizer = gemma_tokenizer(tokenizer_folder, folder, path)  # first: the one thing no file here can give
    state = checkpoint.state_dict()
    all_in_one = any(key.startswith(GEMMA_IN_CHECKPOINT) for key in state)
    if all_in_one:
        encoder_state, encoder_path = gemma_state(state), path
        vae_state = {key.removeprefix(VAE_IN_CHECKPOINT): value for key, value in state.items()
                     if key.startswith(VAE_IN_CHECKPOINT)}
        vae_path = path
        if not vae_state:
            raise InputError(f"model.path: {path} holds Lumina 2's transformer and Gemma 2 but no VAE (vae.…)")
    else:
        encoder_path, vae_path = companions(path, text_encoder_files, vae_file)
        if encoder_path is None:
            raise InputError(f"model.text_encoder_files: {path} holds the Lumina 2 transformer only; choose its "
                             "Gemma 2 text encoder file (gemma_2_2b_fp16.safetensors), or keep it in "
                             "models/text_encoders beside the transformer's folder as ComfyUI does")
        if vae_path is None:
            raise InputError(f"model.vae_file: {path} holds the Lumina 2 transformer only; choose its VAE file "
                             "(ae.safetensors, Flux's), or keep it in models/vae beside the transformer's folder "
                             "as ComfyUI does")
        encoder_state = gemma_state(open_checkpoint(encoder_path).state_dict())
        vae_state = open_checkpoint(vae_path).state_dict()

    prefixed = any(key.startswith(PREFIX) for key in state)
    transformer_state = {key.removeprefix(PREFIX): value for key, value in state.items()
                         if key.startswith(PREFIX) or not prefixed}
    config = diffusers.Lumina2Transformer2DModel.load_config(folder / "transformer")
    with torch.device("meta"):
        transformer = diffusers.Lumina2Transformer2DModel.from_config(config)
    layout, parameters = original_layout(dict(transformer.config)), original_parameters(dict(transformer.config))
    unknown = fused_layout.unknown_keys(transformer_state, layout, parameters)
    if unknown:
        raise InputError(f"model.path: {path} does not hold a Lumina 2 transformer of this shape: it has unknown "
                         f"{', '.join(unknown[:3])}")
    load_exact(transformer, to_diffusers(transformer_state, dict(transformer.config)), path, "Lumina 2 transformer")
    # Its rotary tables are plain attributes no file holds: made here, on the CPU, as its constructor does.
    rope = transformer.rope_embedder
    transformer.rope_embedder = type(rope)(theta=rope.theta, axes_dim=rope.axes_dim, axes_lens=rope.axes_lens,
                                           patch_size=rope.patch_size)

    text_config = transformers.Gemma2Config.from_pretrained(folder / "text_encoder")
    with torch.device("meta"):
        text_encoder = transformers.Gemma2Model(text_config)
    load_exact(text_encoder, encoder_state, encoder_path, "Gemma 2 text encoder",
               field="model.path" if all_in_one else "model.text_encoder_files")
    # Its rotary table and embedding scale (√width) are buffers no file holds: made here, on the CPU.
    text_encoder.rotary_emb = type(text_encoder.rotary_emb)(config=text_config)
    embedding = text_encoder.embed_tokens
    embedding.embed_scale = torch.tensor(embedding.scalar_embed_scale)

    vae = vae_from_state(vae_state, folder, vae_path, "model.path" if all_in_one else "model.vae_file",
                         "is not a Lumina 2 (Flux) VAE")
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler.from_pretrained(folder, subfolder="scheduler",
                                                                          local_files_only=True)
    return diffusers.Lumina2Pipeline(transformer=transformer.to(dtype), vae=vae.to(dtype),
                                     text_encoder=text_encoder.to(dtype), tokenizer=tokenizer, scheduler=scheduler)
