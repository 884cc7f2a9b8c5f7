"""Tiny models and synthetic LoRAs for the merge tests (session-scoped: built once, never modified)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

# UNet attention projections and CLIP attention projections: what a typical LoRA trains.
_UNET_TARGETS = re.compile(r"lora_unet_.*attn[12]_(to_q|to_k|to_v|to_out_0)$")
_TE_TARGETS = re.compile(r"lora_te[12]?_.*self_attn_(q_proj|k_proj|v_proj|out_proj)$")


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("merge-models")


@pytest.fixture(scope="session")
def sd15_a(models) -> Path:
    from trainer.models.tiny import build_tiny_model

    return build_tiny_model(models / "sd15-a", "sd15", seed=0)


@pytest.fixture(scope="session")
def sd15_b(models) -> Path:
    from trainer.models.tiny import build_tiny_model

    return build_tiny_model(models / "sd15-b", "sd15", seed=1)


@pytest.fixture(scope="session")
def sd15_c(models) -> Path:
    from trainer.models.tiny import build_tiny_model

    return build_tiny_model(models / "sd15-c", "sd15", seed=2)


@pytest.fixture(scope="session")
def sdxl_a(models) -> Path:
    from trainer.models.tiny import build_tiny_model

    return build_tiny_model(models / "sdxl-a", "sdxl", seed=0)


def random_lora(model_dir: Path, arch: str, seed: int, rank: int, alpha: float, text: bool = True,
                size: float = 0.15) -> dict[str, torch.Tensor]:
    """A kohya-format LoRA for a tiny model's attention layers, with visible but sane effect."""
    from trainer.merge.fuse import lora_targets
    from trainer.models import load_model

    pipeline = load_model(model_dir).pipeline
    generator = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    for name, module in sorted(lora_targets(pipeline, arch).items()):
        if not (_UNET_TARGETS.match(name) or (text and _TE_TARGETS.match(name))):
            continue
        out_features, in_features = module.weight.shape
        tensors[f"{name}.lora_down.weight"] = torch.randn(rank, in_features, generator=generator) / in_features ** 0.5
        tensors[f"{name}.lora_up.weight"] = torch.randn(out_features, rank, generator=generator) * size
        tensors[f"{name}.alpha"] = torch.tensor(float(alpha))
    return tensors


def write_lora(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata or {})
    return path


@pytest.fixture(scope="session")
def lora_1(models, sd15_a) -> Path:
    return write_lora(models / "lora-1.safetensors", random_lora(sd15_a, "sd15", seed=11, rank=4, alpha=2.0))


@pytest.fixture(scope="session")
def lora_2(models, sd15_a) -> Path:
    # Rank and alpha differ from lora_1 on purpose; UNet only, so the module sets differ too.
    return write_lora(models / "lora-2.safetensors", random_lora(sd15_a, "sd15", seed=12, rank=3, alpha=6.0,
                                                                  text=False))


@pytest.fixture(scope="session")
def sdxl_lora(models, sdxl_a) -> Path:
    return write_lora(models / "lora-sdxl.safetensors", random_lora(sdxl_a, "sdxl", seed=13, rank=4, alpha=4.0))


def render(pipeline, prompt: str = "a red circle", seed: int = 7, steps: int = 3):
    """One 64 px image as an int16 array, DDIM with fixed settings."""
    import diffusers
    import numpy as np

    pipeline.scheduler = diffusers.DDIMScheduler.from_config(pipeline.scheduler.config)
    pipeline.set_progress_bar_config(disable=True)
    image = pipeline(prompt, width=64, height=64, num_inference_steps=steps, guidance_scale=7.5,
                     generator=torch.Generator("cpu").manual_seed(seed)).images[0]
    return np.asarray(image, dtype=np.int16)


def load_pipeline(model: Path, config_dir: Path | None = None):
    from trainer.models import load_model

    return load_model(model, config_dir=config_dir).pipeline
