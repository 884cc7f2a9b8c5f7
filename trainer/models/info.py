"""What a base model is: the small typed description the rest of the trainer branches on.

Light on purpose (no torch): the worker can name what it is about to load, and the CLI can print it,
before any heavy import.  Where the shipped configs and tokenizer live is decided here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Architecture = Literal["sd15", "sd2", "sdxl"]
PredictionType = Literal["epsilon", "v_prediction"]
SourceKind = Literal["diffusers", "single_file"]

ARCHITECTURES: tuple[Architecture, ...] = ("sd15", "sd2", "sdxl")
PREDICTION_TYPES: tuple[PredictionType, ...] = ("epsilon", "v_prediction")

RESOURCES = Path(__file__).resolve().parents[2] / "resources"
MODEL_CONFIGS = RESOURCES / "model_configs"

# Which shipped diffusers config folder describes a full-size single-file checkpoint. SD 2.x comes in
# two published shapes (768 px v-prediction, 512 px epsilon) that share weights' layout.
CONFIG_FOLDER: dict[tuple[Architecture, PredictionType], str] = {
    ("sd15", "epsilon"): "sd15",
    ("sd15", "v_prediction"): "sd15",
    ("sd2", "v_prediction"): "sd2-v",
    ("sd2", "epsilon"): "sd2-base",
    ("sdxl", "epsilon"): "sdxl-base",
    ("sdxl", "v_prediction"): "sdxl-base",
}

# Human names, for messages.
DISPLAY_NAME: dict[Architecture, str] = {"sd15": "Stable Diffusion 1.x", "sd2": "Stable Diffusion 2.x",
                                         "sdxl": "SDXL"}


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
    return MODEL_CONFIGS / CONFIG_FOLDER[(info.architecture, info.prediction_type)]
