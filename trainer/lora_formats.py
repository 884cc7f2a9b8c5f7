"""LoRA files that other tools load: the kohya format (Automatic1111, ComfyUI, kohya) and diffusers'.

The adapters are trained with peft; ``get_peft_model_state_dict`` gives keys such as
``down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight``.  The kohya
format names the same module ``lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q``
with ``.lora_down.weight`` (A), ``.lora_up.weight`` (B) and a scalar ``.alpha``.  Text encoder
modules use ``lora_te_`` (SD 1.x/2.x) or ``lora_te1_``/``lora_te2_`` (SDXL's two encoders).

We write the alpha the user trained with (diffusers' own converter writes alpha = rank, which
changes the strength of any LoRA trained with alpha ≠ rank) and use ``lora_te_`` for single
text-encoder models, which is what Automatic1111 expects.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

# Prefixes by model family: which text encoder gets which kohya prefix.
TEXT_ENCODER_PREFIXES: dict[str, tuple[str, ...]] = {
    "sd15": ("lora_te",),
    "sd2": ("lora_te",),
    "sdxl": ("lora_te1", "lora_te2"),
}
UNET_PREFIX = "lora_unet"

# Metadata that kohya-based tools read to show and sort LoRAs.
BASE_MODEL_VERSION = {"sd15": "sd_v1", "sd2": "sd_v2", "sdxl": "sdxl_base_v1-0"}
MODELSPEC_ARCHITECTURE = {"sd15": "stable-diffusion-v1/lora", "sd2": "stable-diffusion-v2-768-v/lora",
                          "sdxl": "stable-diffusion-xl-v1-base/lora"}


def canonical_text_encoder_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Text-encoder LoRA keys under ``text_model.``, as every tool expects.

    transformers 5 flattened ``CLIPTextModel`` (``encoder.layers.0…`` instead of
    ``text_model.encoder.layers.0…``); files named that way load in diffusers but not in
    Automatic1111 or ComfyUI, so we always write the long-standing layout.
    """
    return {key if key.startswith("text_model.") else f"text_model.{key}": value for key, value in state.items()}


def peft_to_kohya(state: dict[str, torch.Tensor], prefix: str, alpha: float) -> dict[str, torch.Tensor]:
    """Rename one model's peft LoRA state dict to kohya keys and add an ``.alpha`` per module."""
    converted: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        for peft_part, kohya_part in ((".lora_A.weight", ".lora_down.weight"), (".lora_B.weight", ".lora_up.weight")):
            if key.endswith(peft_part):
                module = key[: -len(peft_part)]
                name = f"{prefix}_{module.replace('.', '_')}"
                converted[name + kohya_part] = tensor.detach().to("cpu", torch.float32).contiguous()
                converted[name + ".alpha"] = torch.tensor(float(alpha))
                break
        else:
            raise ValueError(f"unexpected key in a LoRA state dict: {key!r}")
    return converted


def kohya_metadata(architecture: str, rank: int, alpha: float, run_name: str, config: dict[str, Any]) -> dict[str, str]:
    return {
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(rank),
        "ss_network_alpha": str(alpha),
        "ss_base_model_version": BASE_MODEL_VERSION[architecture],
        "ss_v2": str(architecture == "sd2"),
        "ss_output_name": run_name,
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": MODELSPEC_ARCHITECTURE[architecture],
        "modelspec.implementation": "https://github.com/Stability-AI/generative-models" if architecture == "sdxl"
        else "diffusers",
        "modelspec.title": run_name,
        "kamaal.config": json.dumps(config),
    }


def save_kohya_lora(path: Path, architecture: str, unet_state: dict[str, torch.Tensor],
                    text_encoder_states: list[dict[str, torch.Tensor]], alpha: float, rank: int, run_name: str,
                    config: dict[str, Any]) -> Path:
    """Write ``path`` atomically in the kohya format; ``text_encoder_states`` may be empty."""
    tensors = peft_to_kohya(unet_state, UNET_PREFIX, alpha)
    prefixes = TEXT_ENCODER_PREFIXES[architecture]
    if len(text_encoder_states) > len(prefixes):
        raise ValueError(f"{architecture} has {len(prefixes)} text encoder(s), got {len(text_encoder_states)} states")
    for prefix, state in zip(prefixes, text_encoder_states, strict=False):
        tensors.update(peft_to_kohya(canonical_text_encoder_state(state), prefix, alpha))
    _atomic_save(tensors, path, kohya_metadata(architecture, rank, alpha, run_name, config))
    return path


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp")
    save_file(tensors, staging, metadata=metadata)
    staging.replace(path)
