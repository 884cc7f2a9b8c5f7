"""Flux.2 (klein, dev) from the single files people keep for ComfyUI, offline, and back.

* the transformer in Black Forest Labs' layout (``flux-2-klein-4b.safetensors`` or ``-9b``, base or distilled, in
  ``models/diffusion_models``; ``model.diffusion_model.`` prefixed or not), converted by ``trainer.families.flux2``'s
  layout through ``fused_layout`` — both ways, any width (diffusers' own converter reads what
  :func:`pipeline_to_original` writes); 4B or 9B from the file's width (``img_in``), which picks the shipped config
  folder ``flux2-klein-4b`` or ``flux2-klein-9b``;
* Qwen3 as a file of its own (``qwen_3_4b.safetensors``, Z-Image's, for the 4B; ``qwen_3_8b…`` for the 9B; in
  ``models/text_encoders``): Hugging Face's keys under ``model.`` or not, read into ``Qwen3ForCausalLM`` (the
  pipeline's class) with the LM head taken from the file or tied to the embedding where the file has none — the
  pipeline reads hidden states only, so the head's values never reach an image;
* the VAE (``flux2-vae.safetensors`` in ``models/vae``, or named in ``model.vae_file``): Black Forest Labs' own
  autoencoder file (Flux.1's encoder/decoder names, with ``encoder.quant_conv``, ``decoder.post_quant_conv`` and the
  batch-norm statistics ``bn.*``, as musubi-tuner's ``flux2_models.AutoEncoder`` holds it), converted by diffusers'
  LDM-VAE converter (it has no single-file reader for Flux.2's VAE), or the klein folder's own
  ``vae/diffusion_pytorch_model.safetensors`` (diffusers' keys); anything else is refused naming the file.

Flux.2 dev (``flux2-dev.safetensors``, BFL's, 6144 wide with the guidance embedder ``guidance_in``) reads the same
way, with Mistral Small 3.2 as ComfyUI keeps it (``mistral_3_small_flux2_bf16.safetensors``: the language model's
Hugging Face names under ``model.``, no LM head, no vision tower, Mistral's Tekken vocabulary as a ``tekken_model``
byte tensor) or as Hugging Face stores ``Mistral3ForConditionalGeneration``; what text-to-image never runs (the
head, the vision tower and its projector) is left at zeros.  Mistral's tokenizer ships in no package Kamaal may take
it from, and transformers reads ``tekken.json`` only through ``mistral_common``, which Kamaal lacks: the tokenizer
folder of FLUX.2-dev (``tokenizer.json`` and its chat template) is named in ``model.text_encoder_files``.  Scaled or
mixed fp8 files (ComfyUI's ``flux2_dev_fp8mixed``, weights with scales beside them) are refused by name.

Distilled or base: from the file's name (BFL calls the base models ``…klein-base…``), since their keys are the same;
the pipeline guides only the base models.  Every file is read as safetensors (``checkpoint_io``); nothing is
unpickled.  Configs: ``resources/model_configs/flux2-klein-{4b,9b}`` (or the ``config_dir`` given, for tiny models);
the tokenizer from there or the shipped Qwen3 one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from trainer.errors import InputError
from trainer.families.flux2 import bfl_layout, bfl_norms
from trainer.models import fused_layout
from trainer.models.checkpoint_io import CheckpointFile, open_checkpoint
from trainer.models.component_files import (
    load_exact,
    one_encoder_companions,
    text_tokenizer,
    tokenizer_from,
)
from trainer.models.info import MODEL_CONFIGS

PREFIX = "model.diffusion_model."
QWEN_PREFIX = "model."
# klein's width (img_in rows) → its shipped config folder and the Qwen3 file ComfyUI pairs with it.
SIZES = {3072: ("flux2-klein-4b", "qwen_3_4b"), 4096: ("flux2-klein-9b", "qwen_3_8b")}
VAE_STEMS = ("flux2-vae", "flux2_vae", "flux_2_vae", "flux-2-vae")
MISTRAL_STEM = "mistral_3_small_flux2"  # ComfyUI's _bf16 / _fp8 files of Flux.2 dev's encoder
LANGUAGE_MODEL = "model.language_model."
# Where a Mistral Small 3 file's language model starts → transformers 5's Mistral3ForConditionalGeneration names.
MISTRAL_PREFIXES = (("language_model.model.", LANGUAGE_MODEL), ("language_model.lm_head.", "lm_head."),
                    ("language_model.", LANGUAGE_MODEL),  # Mistral3Model's own names (ERNIE-Image's encoder)
                    ("model.vision_tower.", "model.vision_tower."), ("vision_tower.", "model.vision_tower."),
                    ("model.multi_modal_projector.", "model.multi_modal_projector."),
                    ("multi_modal_projector.", "model.multi_modal_projector."), (LANGUAGE_MODEL, LANGUAGE_MODEL),
                    ("lm_head.", "lm_head."), ("model.", LANGUAGE_MODEL), ("", LANGUAGE_MODEL))
TOKENIZER_TENSORS = ("tekken_model", "spiece_model", "tokenizer_json")  # ComfyUI's tokenizers kept as bytes
# Key endings of weights stored with scales (ComfyUI's scaled and mixed fp8 files).
SCALE_SUFFIXES = ("scale_weight", "weight_scale", "input_scale", "scaled_fp8", "comfy_quant")


def to_original(state: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    """A diffusers ``Flux2Transformer2DModel`` state dict → BFL keys (no prefix)."""
    return fused_layout.to_original(state, bfl_layout(config), bfl_norms(config), "original-layout (BFL Flux.2)")


def to_diffusers(original: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    """BFL keys (no prefix) → a diffusers state dict (the inverse of :func:`to_original`)."""
    return fused_layout.to_diffusers(original, bfl_layout(config), bfl_norms(config))


def pipeline_to_original(pipeline: Any) -> dict[str, torch.Tensor]:
    """A full or frozen run's transformer as the file ComfyUI's Load Diffusion Model takes (BFL's keys)."""
    transformer = pipeline.transformer
    return to_original(transformer.state_dict(), dict(transformer.config))


def companions(model_path: Path, text_encoder_files: list[str], vae_file: str, qwen_stem: str,
               what: str = "Flux.2 klein", encoder_name: str = "Qwen3") -> tuple[Path | None, Path | None]:
    """The text encoder's file (klein's Qwen3, dev's Mistral) and the VAE file: as configured, else found in
    ComfyUI's folders beside the transformer's."""
    return one_encoder_companions(
        model_path, text_encoder_files, vae_file, family=what,
        encoder=f"its {encoder_name} file, {qwen_stem}….safetensors",
        is_encoder=lambda p: p.name.lower().startswith(qwen_stem), is_vae=lambda p: p.stem.lower() in VAE_STEMS)


def qwen3_state(state: dict[str, torch.Tensor], tied: bool) -> dict[str, torch.Tensor]:
    """A Qwen3 file's tensors as ``Qwen3ForCausalLM`` names them (``model.…``, ``lm_head.weight``); a file without
    the head (tied, or left out by ComfyUI) gets the embedding as its head."""
    prefixed = any(key.startswith(QWEN_PREFIX + "layers.") for key in state)
    out = {key if prefixed or key == "lm_head.weight" else QWEN_PREFIX + key: value for key, value in state.items()}
    embedding = out.get(QWEN_PREFIX + "embed_tokens.weight")
    if embedding is not None and ("lm_head.weight" not in out or tied):
        out["lm_head.weight"] = embedding
    return out


def vae_state(state: dict[str, torch.Tensor], path: Path, config: dict) -> dict[str, torch.Tensor]:
    """A Flux.2 VAE file's tensors as ``AutoencoderKLFlux2`` names them: diffusers' keys as they are; BFL's (its
    quant convolutions inside the encoder and decoder, the LDM names) through diffusers' LDM-VAE converter."""
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    state = {key.removeprefix("first_stage_model.").removeprefix("vae."): value for key, value in state.items()}
    if "bn.running_mean" not in state:
        raise InputError(f"model.vae_file: {path} is not Flux.2's VAE (it has no batch-norm statistics, "
                         "bn.running_mean): choose flux2-vae.safetensors or the klein folder's "
                         "vae/diffusion_pytorch_model.safetensors")
    if not any(key.startswith("encoder.down.") for key in state):
        return state  # diffusers' layout (load_exact names anything that does not fit)
    norms = {key: value for key, value in state.items() if key.startswith("bn.")}
    ldm = {key.replace("encoder.quant_conv.", "quant_conv.").replace("decoder.post_quant_conv.", "post_quant_conv."):
           value for key, value in state.items() if not key.startswith("bn.")}
    try:
        converted = convert_ldm_vae_checkpoint(ldm, config)
    except (KeyError, ValueError, RuntimeError) as error:
        raise InputError(f"model.vae_file: {path} is not a Flux.2 VAE of this shape ({error})") from None
    return converted | norms


def refuse_scaled_fp8(shapes: dict, path: Path, field: str, plain: str) -> None:
    """A file whose weights come with scales (ComfyUI's ``…fp8mixed`` / ``…fp8_scaled``) is refused by name: read as
    plain weights it would give another model."""
    scaled = next((key for key in shapes if key.endswith(SCALE_SUFFIXES)), None)
    if scaled is not None:
        raise InputError(f"{field}: {path} is a scaled fp8 file ({scaled}); Kamaal reads bf16/fp16 weights only: "
                         f"choose {plain}")


def load_transformer(checkpoint: CheckpointFile, folder: Path, what: str) -> Any:
    """The BFL transformer file as diffusers' ``Flux2Transformer2DModel`` configured by ``folder/transformer``."""
    import diffusers

    path = checkpoint.path
    state = {key.removeprefix(PREFIX): value for key, value in checkpoint.state_dict().items()}
    config = diffusers.Flux2Transformer2DModel.load_config(folder / "transformer")
    with torch.device("meta"):
        transformer = diffusers.Flux2Transformer2DModel.from_config(config)
    layout, norms = bfl_layout(dict(transformer.config)), bfl_norms(dict(transformer.config))
    unknown = fused_layout.unknown_keys(state, layout, norms)
    if unknown:
        raise InputError(f"model.path: {path} does not hold a {what} transformer of this shape: it has unknown "
                         f"{', '.join(unknown[:3])}")
    load_exact(transformer, to_diffusers(state, dict(transformer.config)), path, f"{what} transformer")
    return transformer


def load_vae(vae_path: Path, folder: Path) -> Any:
    import diffusers

    vae_config = diffusers.AutoencoderKLFlux2.load_config(folder / "vae")
    with torch.device("meta"):
        vae = diffusers.AutoencoderKLFlux2.from_config(vae_config)
    load_exact(vae, vae_state(open_checkpoint(vae_path).state_dict(), vae_path, dict(vae.config)), vae_path,
               "Flux.2 VAE", field="model.vae_file", optional=("bn.num_batches_tracked",))
    if vae.bn.num_batches_tracked.is_meta:  # a count of training batches, which inference never reads
        vae.bn.num_batches_tracked = torch.zeros((), dtype=torch.long)
    return vae


def scheduler(folder: Path) -> Any:
    import diffusers

    return diffusers.FlowMatchEulerDiscreteScheduler.from_pretrained(folder, subfolder="scheduler",
                                                                     local_files_only=True)


def load_flux2klein_single_file(checkpoint: CheckpointFile, config_dir: Path | None, dtype: torch.dtype,
                                text_encoder_files: list[str], vae_file: str) -> Any:
    import diffusers
    import transformers

    path = checkpoint.path
    width_key = next((key for key in checkpoint.shapes if key.removeprefix(PREFIX) == "img_in.weight"), None)
    width = checkpoint.shapes[width_key][0] if width_key else None
    if config_dir is None and width not in SIZES:
        raise InputError(f"model.path: {path} is not a Flux.2 klein transformer (its img_in is {width} wide; klein 4B "
                         "is 3072, 9B 4096)")
    folder_name, qwen_stem = SIZES.get(width, SIZES[3072])
    folder = config_dir if config_dir is not None else MODEL_CONFIGS / folder_name
    encoder_path, vae_path = companions(path, text_encoder_files, vae_file, qwen_stem)
    if encoder_path is None:
        raise InputError(f"model.text_encoder_files: {path} holds the Flux.2 klein transformer only; choose its Qwen3 "
                         f"text encoder file ({qwen_stem}.safetensors), or keep it in models/text_encoders beside the "
                         "transformer's folder as ComfyUI does")
    if vae_path is None:
        raise InputError(f"model.vae_file: {path} holds the Flux.2 klein transformer only; choose its VAE file (the "
                         "klein folder's vae/diffusion_pytorch_model.safetensors), or keep it as flux2-vae.safetensors "
                         "in models/vae beside the transformer's folder")
    transformer = load_transformer(checkpoint, folder, "Flux.2 klein")

    text_config = transformers.Qwen3Config.from_pretrained(folder / "text_encoder")
    with torch.device("meta"):
        text_encoder = transformers.Qwen3ForCausalLM(text_config)
    load_exact(text_encoder, qwen3_state(open_checkpoint(encoder_path).state_dict(), text_config.tie_word_embeddings),
               encoder_path, "Qwen3 text encoder", field="model.text_encoder_files")
    # Its rotary table is a buffer no file holds: made here, on the CPU, from the config.
    text_encoder.model.rotary_emb = type(text_encoder.model.rotary_emb)(config=text_config)
    if text_config.tie_word_embeddings:
        text_encoder.tie_weights()

    return diffusers.Flux2KleinPipeline(transformer=transformer.to(dtype), vae=load_vae(vae_path, folder).to(dtype),
                                        text_encoder=text_encoder.to(dtype),
                                        tokenizer=tokenizer_from(folder / "tokenizer", "qwen3"),
                                        scheduler=scheduler(folder), is_distilled="base" not in path.name.lower())


def mistral3_state(state: dict[str, torch.Tensor], path: Path, what: str = "Mistral Small 3",
                   plain: str = "mistral_3_small_flux2_bf16.safetensors") -> dict[str, torch.Tensor]:
    """A Mistral 3 file's language model (Flux.2 dev's Mistral Small 3, ERNIE-Image's Ministral 3) as
    ``Mistral3ForConditionalGeneration`` names it (``model.language_model.…``): ComfyUI's (``model.layers.…``, or
    unprefixed), or Hugging Face's (``language_model.model.…`` as the release stores it, transformers 5's own names,
    or ``Mistral3Model``'s ``language_model.…``).  The Tekken vocabulary ComfyUI keeps in the file
    (``tekken_model``) is no weight; a vision tower or LM head in the file is read."""
    out = {}
    for key, value in state.items():
        if key in TOKENIZER_TENSORS:
            continue
        for old, new in MISTRAL_PREFIXES:
            if key.startswith(old):
                key = new + key.removeprefix(old)
                break
        out[key] = value
    if not any(key.startswith(LANGUAGE_MODEL + "layers.") for key in out):
        raise InputError(f"model.text_encoder_files: {path} is not a {what} text encoder (it has no "
                         f"model.layers.*): choose {plain}")
    return out


def mistral_tokenizer_folder(tokenizer_folder: str, folder: Path) -> Path | None:
    """The tokenizer folder: ``model.tokenizer_folder`` (FLUX.2-dev's ``tokenizer``, or the whole FLUX.2-dev folder),
    else the config folder's own (tiny models)."""
    found = Path(tokenizer_folder) if tokenizer_folder else folder / "tokenizer" if (folder / "tokenizer").is_dir() \
        else None
    if found is not None and not (found / "tokenizer.json").is_file() and (found / "tokenizer").is_dir():
        found = found / "tokenizer"  # the whole FLUX.2-dev folder was named
    return found


def load_flux2dev_single_file(checkpoint: CheckpointFile, config_dir: Path | None, dtype: torch.dtype,
                              text_encoder_files: list[str], vae_file: str, tokenizer_folder: str = "") -> Any:
    import diffusers
    import transformers

    path = checkpoint.path
    refuse_scaled_fp8(checkpoint.shapes, path, "model.path", "flux2-dev.safetensors (bf16)")
    folder = config_dir if config_dir is not None else MODEL_CONFIGS / "flux2-dev"
    tokenizer_path = mistral_tokenizer_folder(tokenizer_folder, folder)
    if tokenizer_path is None or not (tokenizer_path / "tokenizer.json").is_file():
        raise InputError("model.tokenizer_folder: Flux.2 dev's tokenizer (Mistral's Tekken vocabulary) ships with no "
                         "package Kamaal may take it from; choose the tokenizer folder of black-forest-labs/FLUX.2-dev "
                         "(tokenizer.json, tokenizer_config.json, chat_template.jinja)")
    encoder_path, vae_path = companions(path, text_encoder_files, vae_file, MISTRAL_STEM, "Flux.2 dev", "Mistral")
    if encoder_path is None:
        raise InputError(f"model.text_encoder_files: {path} holds the Flux.2 dev transformer only; choose its Mistral "
                         f"text encoder file ({MISTRAL_STEM}_bf16.safetensors), or keep it in models/text_encoders "
                         "beside the transformer's folder as ComfyUI does")
    if vae_path is None:
        raise InputError(f"model.vae_file: {path} holds the Flux.2 dev transformer only; choose its VAE file "
                         "(flux2-vae.safetensors, or the FLUX.2-dev folder's vae/diffusion_pytorch_model.safetensors), "
                         "or keep it as flux2-vae.safetensors in models/vae beside the transformer's folder")
    transformer = load_transformer(checkpoint, folder, "Flux.2 dev")

    encoder_file = open_checkpoint(encoder_path)
    refuse_scaled_fp8(encoder_file.shapes, encoder_path, "model.text_encoder_files",
                      f"{MISTRAL_STEM}_bf16.safetensors")
    text_config = transformers.Mistral3Config.from_pretrained(folder / "text_encoder")
    with torch.device("meta"):
        text_encoder = transformers.Mistral3ForConditionalGeneration(text_config)
    state = mistral3_state(encoder_file.state_dict(), encoder_path)
    own = text_encoder.state_dict()
    # The parts text never reaches (the LM head, the vision tower, its projector), where the file has none: zeros.
    unused = {key: torch.zeros(own[key].shape, dtype=own[key].dtype) for key in own
              if key not in state and not key.startswith(LANGUAGE_MODEL)}
    load_exact(text_encoder, state | unused, encoder_path, "Mistral Small 3 text encoder",
               field="model.text_encoder_files")
    # Rotary tables are buffers no file holds: made here, on the CPU, from the configs.
    language, vision = text_encoder.model.language_model, text_encoder.model.vision_tower
    language.rotary_emb = type(language.rotary_emb)(config=text_config.text_config)
    vision.patch_positional_embedding = type(vision.patch_positional_embedding)(config=text_config.vision_config)
    return diffusers.Flux2Pipeline(transformer=transformer.to(dtype), vae=load_vae(vae_path, folder).to(dtype),
                                   text_encoder=text_encoder.to(dtype),
                                   tokenizer=text_tokenizer(tokenizer_path),
                                   scheduler=scheduler(folder))
