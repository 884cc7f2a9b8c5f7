"""The parts of a Stable Diffusion model that training needs, loaded offline.

Also picks the device and the mixed-precision dtype: CUDA when present, bf16 where the GPU
supports it, fp16 otherwise on CUDA, fp32 on the CPU.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from trainer.config import Config
from trainer.errors import InputError

PIPELINE_CLASSES = {"sd15": "StableDiffusionPipeline", "sd2": "StableDiffusionPipeline",
                    "sdxl": "StableDiffusionXLPipeline"}


@dataclass
class Components:
    architecture: str
    prediction_type: str
    tokenizers: list
    text_encoders: list[torch.nn.Module]
    vae: torch.nn.Module
    unet: torch.nn.Module
    noise_scheduler: object
    sample_scheduler_config: dict = field(default_factory=dict)

    @property
    def vae_scale(self) -> float:
        return float(self.vae.config.scaling_factor)


def pick_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_precision(requested: str, device: str) -> str:
    """"no", "fp16" or "bf16" (accelerate's names) for the requested model.precision."""
    if device != "cuda":
        if requested in ("fp16", "bf16"):
            return "bf16" if requested == "bf16" else "no"  # fp16 autocast on the CPU is not supported
        return "no"
    if requested == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return {"fp32": "no", "fp16": "fp16", "bf16": "bf16"}[requested]


def weight_dtype(precision: str) -> torch.dtype:
    """The dtype of the frozen weights (the trained ones stay in fp32)."""
    return {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def load_components(config: Config, logger: logging.Logger) -> Components:
    """Load the base model named by ``model.path`` (a diffusers folder or a single file)."""
    import diffusers

    if not config.model.path:
        raise InputError(f"model.path: choose the base model to train (a diffusers folder or a .safetensors "
                         f"file of an {config.model.architecture} model)")
    path = Path(config.model.path)
    if not path.exists():
        raise InputError(f"model.path: not found: {path}")
    pipeline_class = getattr(diffusers, PIPELINE_CLASSES[config.model.architecture])
    try:
        if path.is_dir():
            if not (path / "model_index.json").is_file():
                raise InputError(f"model.path: {path} is a folder but not a diffusers model (no model_index.json)")
            pipe = pipeline_class.from_pretrained(path, local_files_only=True, safety_checker=None)
        else:
            from trainer.models import load_single_file_pipeline  # offline single-file loading

            pipe = load_single_file_pipeline(path, config.model.architecture)
    except InputError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise InputError(
            f"model.path: {path} cannot be loaded as a {config.model.architecture} model ({exc})") from None
    from diffusers import DDPMScheduler

    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    prediction = config.model.prediction_type
    if prediction == "auto":
        prediction = noise_scheduler.config.prediction_type
    noise_scheduler.register_to_config(prediction_type=prediction)
    tokenizers = [pipe.tokenizer] + ([pipe.tokenizer_2] if config.model.architecture == "sdxl" else [])
    encoders = [pipe.text_encoder] + ([pipe.text_encoder_2] if config.model.architecture == "sdxl" else [])
    logger.info("Loaded %s (%s, predicts %s)", path, config.model.architecture, prediction)
    return Components(config.model.architecture, prediction, tokenizers, encoders, pipe.vae, pipe.unet,
                      noise_scheduler, dict(pipe.scheduler.config))
