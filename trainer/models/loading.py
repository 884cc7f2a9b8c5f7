"""Load a Stable Diffusion base model, fully offline, from a diffusers folder or a single file.

Single files in the original layout are taken apart component by component with diffusers' own
converters (``from_single_file`` on each model class), given local configs: the shipped real-size ones
in ``resources/model_configs`` or any diffusers-style ``config_dir`` (tests pass tiny ones).  The weights
are read by ``checkpoint_io`` (weights-only for pickles) and handed over as a dict, so diffusers never
opens the file itself, and ``local_files_only`` plus ``force_offline`` keep every hub call away.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from trainer.errors import InputError
from trainer.families import family
from trainer.families.base import SHIPPED_TOKENIZERS
from trainer.models import detect
from trainer.models.checkpoint_io import CheckpointFile, open_checkpoint
from trainer.models.clip_vocab import CLIP_TOKENIZER_DIR, OPEN_CLIP_PAD_TOKEN
from trainer.models.info import DISPLAY_NAME, Architecture, ModelInfo, PredictionType, default_config_dir
from trainer.models.offline import force_offline


@dataclass
class LoadedModel:
    """A ready pipeline (its ``unet``, ``vae``, text encoders, tokenizers, scheduler) and what it is."""

    pipeline: Any
    info: ModelInfo
    warnings: list[str] = field(default_factory=list)


def inspect_model(path: Path | str, *, prediction_type: PredictionType | None = None) -> ModelInfo:
    """What ``path`` holds, reading only configs or tensor names/shapes (plus one tensor for SD 2.x)."""
    info, _ = _inspect(Path(path), prediction_type)
    return info


def _inspect(path: Path, prediction_type: PredictionType | None) -> tuple[ModelInfo, CheckpointFile | None]:
    if path.is_dir():
        architecture, prediction = detect.detect_diffusers_folder(path, prediction_type)
        return ModelInfo(architecture, prediction, "diffusers"), None
    checkpoint = open_checkpoint(path)
    architecture = detect.detect_architecture(checkpoint.shapes, path)
    if family(architecture).flow is not None:
        return ModelInfo(architecture, "flow_matching", "single_file"), checkpoint
    prediction = detect.detect_prediction_type(architecture, checkpoint.shapes, checkpoint.metadata,
                                               checkpoint.tensor, prediction_type)
    return ModelInfo(architecture, prediction, "single_file"), checkpoint


def load_model(path: Path | str, *, prediction_type: PredictionType | None = None,
               expected_architecture: Architecture | None = None, config_dir: Path | str | None = None,
               dtype: torch.dtype = torch.float32, device: torch.device | str | None = None,
               text_encoder_files: list[str] | None = None, vae_file: str = "",
               tokenizer_folder: str = "") -> LoadedModel:
    """Load a base model offline.  ``prediction_type`` overrides detection; ``expected_architecture``
    (the config's ``model.architecture``) must match what is found; ``config_dir`` replaces the shipped
    configs for single files.  Bad input raises ``InputError`` naming the file."""
    force_offline()
    path = Path(path)
    info, checkpoint = _inspect(path, prediction_type)
    if expected_architecture is not None and family(expected_architecture).files_of == info.architecture:
        info = replace(info, architecture=expected_architecture)  # Kontext dev's file is Flux.1 dev's, key for key
    if expected_architecture is not None and info.architecture != expected_architecture:
        raise InputError(f"model.path: {path} holds {DISPLAY_NAME[info.architecture]} weights, but model.architecture "
                         f"is '{expected_architecture}'; set it to '{info.architecture}'")
    reader = family(info.architecture).single_file_reader
    if checkpoint is None:
        pipeline = _load_diffusers_folder(path, info, dtype)
    elif reader is not None:  # the family reads its own single files (Flux: transformer + separate files)
        import importlib

        module_name, function_name = reader.split(":")
        tokenizer = {"tokenizer_folder": tokenizer_folder} if family(info.architecture).needs_tokenizer_folder else {}
        pipeline = getattr(importlib.import_module(module_name), function_name)(
            checkpoint, Path(config_dir) if config_dir is not None else None, dtype, list(text_encoder_files or []),
            vae_file, **tokenizer)
    else:
        folder = Path(config_dir) if config_dir is not None else default_config_dir(info)
        pipeline = _load_single_file(checkpoint, info, folder, dtype)
    if device is not None:
        pipeline.to(torch.device(device))
    # In evaluation mode, as from_pretrained leaves a model: a single-file reader builds its parts with their
    # constructors, which leave them training (T5's dropout 0.1 would make every caption's encoding a random draw).
    for component in pipeline.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()
    return LoadedModel(pipeline, info, _absent_encoders(pipeline, info, path))


def _absent_encoders(pipeline: Any, info: ModelInfo, path: Path) -> list[str]:
    """What to tell about a text encoder the pipeline runs without (SD 3.5's T5, optional as in diffusers)."""
    model = family(info.architecture)
    return [f"{model.display_name} is loaded without its {spec.label}: neither {path.name}, "
            "model.text_encoder_files nor ComfyUI's text encoder folders beside it hold it, so prompts are encoded "
            f"without it (its part of the conditioning is zeros, as diffusers' pipeline does without "
            f"{spec.component}); choose its file in model.text_encoder_files to use it"
            for spec in model.text_encoders if getattr(pipeline, spec.component, "") is None]


def _pipeline_class(architecture: Architecture) -> Any:
    import diffusers

    return getattr(diffusers, family(architecture).pipeline_class)


def _extra_pipeline_args(architecture: Architecture) -> dict[str, Any]:
    return dict(family(architecture).pipeline_args)


def _text_tokenizers(folder: Path, architecture: Architecture) -> dict[str, Any]:
    """The tokenizers read apart from ``from_pretrained``: where the folder keeps a multimodal processor whose
    image or video half needs torchvision (``TextEncoder.tokenizer_class``), its text tokenizer alone."""
    from trainer.models.component_files import text_tokenizer

    return {spec.tokenizer: text_tokenizer(folder / spec.tokenizer, spec.tokenizer_class)
            for spec in family(architecture).text_encoders
            if spec.tokenizer_class is not None and (folder / spec.tokenizer).is_dir()}


def _folder_parts(folder: Path, architecture: Architecture) -> dict[str, Any]:
    """The components the family builds itself for ``from_pretrained`` of ``folder`` (``Family.pipeline_parts``)."""
    import importlib

    hook = family(architecture).pipeline_parts
    if hook is None:
        return {}
    module_name, function_name = hook.split(":")
    return getattr(importlib.import_module(module_name), function_name)(folder)


def _load_diffusers_folder(folder: Path, info: ModelInfo, dtype: torch.dtype) -> Any:
    for spec in family(info.architecture).text_encoders:
        # An encoder whose vocabulary Kamaal does not ship (Gemma, Llama, Mistral's) cannot be made up for: the
        # folder must hold it (the released HiDream folders leave out Llama 3.1, which people add).
        if spec.tokenizer_kind not in SHIPPED_TOKENIZERS and not all(
                (folder / part).is_dir() for part in (spec.component, spec.tokenizer)):
            raise InputError(f"model.path: {folder} holds no {spec.label} ({spec.component}/ and {spec.tokenizer}/); "
                             f"{family(info.architecture).display_name} needs it: put its model and tokenizer there")
    try:
        tokenizers = _text_tokenizers(folder, info.architecture)
        # Loaded as None and set after: diffusers checks a passed component against the class the folder names,
        # which transformers only has as a placeholder here.
        pipeline = _pipeline_class(info.architecture).from_pretrained(
            folder, local_files_only=True, dtype=dtype, **dict.fromkeys(tokenizers),
            **_extra_pipeline_args(info.architecture),
            **_folder_parts(folder, info.architecture))
        pipeline.register_modules(**tokenizers)
    except (OSError, ValueError, RuntimeError, KeyError) as error:
        raise InputError(f"model.path: {folder} could not be loaded as a diffusers model ({error})") from None
    _refuse_missing_weights(pipeline, folder)
    ddpm = family(info.architecture).flow is None
    if ddpm and pipeline.scheduler.config.get("prediction_type") != info.prediction_type:
        pipeline.scheduler = type(pipeline.scheduler).from_config(
            pipeline.scheduler.config, prediction_type=info.prediction_type)
    return pipeline


def _load_single_file(checkpoint: CheckpointFile, info: ModelInfo, config_dir: Path, dtype: torch.dtype) -> Any:
    import diffusers
    import transformers
    from diffusers.loaders.single_file_utils import create_diffusers_clip_model_from_ldm

    path, architecture = checkpoint.path, info.architecture
    encoders = family(architecture).text_encoders
    required = [("VAE", detect.VAE_PREFIXES), *((e.label, (e.single_file_prefix,)) for e in encoders)]
    for what, prefixes in required:
        if not any(key.startswith(prefixes) for key in checkpoint.shapes):
            raise InputError(f"model.path: {path} has no {what} weights ({' or '.join(p + '*' for p in prefixes)}); "
                             "a full checkpoint with UNet, VAE and text encoder is needed")
    index = detect.read_json(config_dir / "model_index.json", config_dir)
    # Older checkpoints carry CLIP's position_ids buffer, which transformers no longer stores.
    state = {k: v for k, v in checkpoint.state_dict().items() if not k.endswith("position_ids")}
    common = {"config": str(config_dir), "local_files_only": True}
    loaders: dict[str, Any] = {
        "unet": lambda: diffusers.UNet2DConditionModel.from_single_file(state, subfolder="unet", dtype=dtype, **common),
        "vae": lambda: diffusers.AutoencoderKL.from_single_file(state, subfolder="vae", dtype=dtype, **common),
    }
    for encoder in encoders:
        loaders[encoder.component] = lambda encoder=encoder: create_diffusers_clip_model_from_ldm(
            getattr(transformers, encoder.transformers_class), state, subfolder=encoder.component,
            torch_dtype=dtype, **common)
    components: dict[str, Any] = {}
    for name, load in loaders.items():
        try:
            components[name] = load()
        except (ValueError, RuntimeError, KeyError, OSError, NotImplementedError) as error:
            detail = str(error).splitlines()[0] if str(error) else type(error).__name__
            if "meta" in detail:  # a parameter never got a value: the file lacks it
                raise InputError(f"model.path: {path} is missing {name} weights (it does not hold every tensor "
                                 f"the {DISPLAY_NAME[architecture]} {name} needs)") from None
            raise InputError(f"model.path: {path} does not fit the {DISPLAY_NAME[architecture]} {name} config in "
                             f"{config_dir} ({detail})") from None
    for encoder in encoders:
        components[encoder.tokenizer] = _tokenizer(config_dir / encoder.tokenizer, encoder.open_clip)
    scheduler_class = getattr(diffusers, index.get("scheduler", [None, "DDIMScheduler"])[1])
    components["scheduler"] = scheduler_class.from_pretrained(
        config_dir, subfolder="scheduler", local_files_only=True, prediction_type=info.prediction_type)
    pipeline = _pipeline_class(architecture)(**components, **_extra_pipeline_args(architecture))
    _refuse_missing_weights(pipeline, path)
    return pipeline


def _tokenizer(folder: Path, open_clip: bool) -> Any:
    """The config dir's own tokenizer if it has one (tiny models), else the shipped CLIP vocabulary."""
    from transformers import CLIPTokenizer

    if folder.is_dir():
        return CLIPTokenizer.from_pretrained(folder, local_files_only=True)
    extra = {"pad_token": OPEN_CLIP_PAD_TOKEN} if open_clip else {}
    return CLIPTokenizer.from_pretrained(CLIP_TOKENIZER_DIR, local_files_only=True, **extra)


def _refuse_missing_weights(pipeline: Any, source: Path) -> None:
    # Loading "into meta" leaves a parameter on the meta device when the file lacks it: fail loudly.
    for name, component in pipeline.components.items():
        if not isinstance(component, torch.nn.Module):
            continue
        missing = [n for n, p in [*component.named_parameters(), *component.named_buffers()] if p.is_meta]
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise InputError(f"model.path: {source} is missing {name} weights: {shown}")
