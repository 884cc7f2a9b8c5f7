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
from trainer.families import family


@dataclass
class Components:
    architecture: str
    prediction_type: str
    tokenizers: list
    text_encoders: list[torch.nn.Module]
    vae: torch.nn.Module
    unet: torch.nn.Module  # the denoiser: a UNet, or the transformer of a transformer family
    noise_scheduler: object
    sample_scheduler_config: dict = field(default_factory=dict)
    sample_scheduler_class: str = ""  # the model's own scheduler, for families that sample with it
    # The family's ``frozen_components`` by pipeline name (Ideogram 4's unconditional transformer): sampling only.
    frozen: dict[str, torch.nn.Module] = field(default_factory=dict)

    @property
    def vae_scale(self) -> float:
        return float(self.vae.config.scaling_factor)


def pick_device() -> str:
    from trainer.models import pick_device as model_device

    return model_device().type


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
    """Load the base model named by ``model.path`` (a diffusers folder or a single file), offline."""
    import copy

    from diffusers import DDPMScheduler

    from trainer.models import cpu_warning, load_model

    if not config.model.path:
        raise InputError(f"model.path: choose the base model to train (a diffusers folder or a .safetensors "
                         f"file of {family(config.model.architecture).display_name})")
    if config.mode in ("lora", "dreambooth") and not (config.mode == "dreambooth"
                                                       and config.dreambooth.train_full_unet):
        from trainer.models.lora_targets import check_lora_targets

        check_lora_targets(Path(config.model.path), list(config.lora.target_modules))  # before the slow load
    override = None if config.model.prediction_type == "auto" else config.model.prediction_type
    loaded = load_model(Path(config.model.path), prediction_type=override,
                        expected_architecture=config.model.architecture,  # type: ignore[arg-type]
                        text_encoder_files=list(config.model.text_encoder_files), vae_file=config.model.vae_file,
                        tokenizer_folder=config.model.tokenizer_folder)
    pipe, info = loaded.pipeline, loaded.info
    for warning in loaded.warnings:  # e.g. an SD 3.5 file loaded without T5
        logger.warning(warning)
    model = family(info.architecture)
    sample_config = dict(pipe.scheduler.config)
    if model.flow is None:
        zero_snr = {}
        if config.training.zero_terminal_snr:
            if info.prediction_type != "v_prediction":
                raise InputError(f"training.zero_terminal_snr: needs v-prediction, and {config.model.path} is an "
                                 f"{info.prediction_type} model; set model.prediction_type = v_prediction to train "
                                 "it to predict v (the paper's recipe), or turn zero_terminal_snr off")
            # Lin et al.: the rescaled betas, and samples that start at the last (pure-noise) timestep.
            zero_snr = {"rescale_betas_zero_snr": True, "timestep_spacing": "trailing"}
            sample_config |= zero_snr
        noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config, **zero_snr)
        noise_scheduler.register_to_config(prediction_type=info.prediction_type)
    else:  # flow matching: the engine draws σ itself; the scheduler is kept for its config
        noise_scheduler = copy.deepcopy(pipe.scheduler)
    denoiser = getattr(pipe, model.denoiser)
    warning = cpu_warning(denoiser, pick_device())
    if warning:
        logger.warning(warning)
    text_encoders = model.text_encoders
    tokenizers = [getattr(pipe, encoder.tokenizer) for encoder in text_encoders]
    encoders = [getattr(pipe, encoder.component) for encoder in text_encoders]
    logger.info("Loaded %s (%s)", config.model.path, info.describe())
    return Components(info.architecture, info.prediction_type, tokenizers, encoders, pipe.vae, denoiser,
                      noise_scheduler, sample_config, type(pipe.scheduler).__name__,
                      {name: getattr(pipe, name) for name in model.frozen_components})
