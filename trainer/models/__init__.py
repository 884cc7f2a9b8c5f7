"""Base models: detect, load offline (diffusers folders and original single files), and the tiny test model.

Heavy (torch, diffusers): only the trainer process imports this package, never the GUI.

    info = inspect_model(path)                      # cheap: configs or tensor names/shapes
    loaded = load_model(path, expected_architecture="sd15", dtype=pick_dtype("auto", pick_device()))
    loaded.pipeline.unet, loaded.pipeline.vae, ...  # a diffusers StableDiffusion(XL)Pipeline
    build_tiny_model(out_dir, arch="sd15", seed=0)  # writes a tiny diffusers folder for tests
"""

from trainer.models.device import cpu_warning, pick_device, pick_dtype
from trainer.models.info import ARCHITECTURES, PREDICTION_TYPES, ModelInfo, default_config_dir
from trainer.models.loading import LoadedModel, inspect_model, load_model
from trainer.models.original_layout import pipeline_to_original
from trainer.models.tiny import TINY_ARCHITECTURES, build_tiny_model, tiny_pipeline

__all__ = [
    "ARCHITECTURES",
    "PREDICTION_TYPES",
    "TINY_ARCHITECTURES",
    "LoadedModel",
    "ModelInfo",
    "build_tiny_model",
    "cpu_warning",
    "default_config_dir",
    "inspect_model",
    "load_model",
    "pick_device",
    "pick_dtype",
    "pipeline_to_original",
    "tiny_pipeline",
]
