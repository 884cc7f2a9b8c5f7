"""What a base model is: the small typed description the rest of the trainer branches on.

Light on purpose (no torch): the worker can name what it is about to load, and the CLI can print it,
before any heavy import.  Where the shipped configs and tokenizer live is decided here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from trainer import families

# The diffusion families of the registry (trainer/families); the toy network is not a base model.
Architecture = Literal[families.MODEL_FAMILIES]  # type: ignore[valid-type]
# What the denoiser predicts: noise (ε) or velocity (v) for the DDPM families; flow matching's ε − x₀
# for the flow families (its own kind, not an option).
PredictionType = Literal["epsilon", "v_prediction", "flow_matching"]
SourceKind = Literal["diffusers", "single_file"]

ARCHITECTURES: tuple[Architecture, ...] = families.MODEL_FAMILIES
PREDICTION_TYPES: tuple[PredictionType, ...] = ("epsilon", "v_prediction")

RESOURCES = Path(__file__).resolve().parents[2] / "resources"
MODEL_CONFIGS = RESOURCES / "model_configs"

# Human names, for messages.
DISPLAY_NAME: dict[str, str] = {name: families.family(name).display_name for name in families.MODEL_FAMILIES}


@dataclass(frozen=True)
class ModelInfo:
    """A base model as detected: its family, what its UNet predicts, and what kind of file it came from."""

    architecture: Architecture
    prediction_type: PredictionType
    source_kind: SourceKind

    def describe(self) -> str:
        kind = "diffusers folder" if self.source_kind == "diffusers" else "single-file checkpoint"
        return f"{DISPLAY_NAME[self.architecture]} ({self.prediction_type}), {kind}"


def default_config_dir(info: ModelInfo) -> Path:
    """The shipped real-size diffusers configs for a single-file checkpoint of this kind."""
    return MODEL_CONFIGS / families.family(info.architecture).config_folders[info.prediction_type]
