"""The shipped shapes model and helpers to train on it and judge the preview pictures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.conftest import REPO
from tests.trainer.helpers import with_sections
from trainer.config import Config, config_from_dict
from trainer.runfolder import RunFolder
from trainer.shapes.judge import PromptScore, score_samples

SHAPES_MODEL = REPO / "resources" / "models" / "shapes-sd"
DEMO = REPO / "resources" / "demo"
SKS = {"sks": "emblem"}


@pytest.fixture(scope="session")
def shapes_model() -> Path:
    if not (SHAPES_MODEL / "model_index.json").is_file():
        pytest.fail(f"{SHAPES_MODEL} is missing: kamaal-train build-shapes-model {SHAPES_MODEL}")
    return SHAPES_MODEL


def shapes_config(model: Path, dataset: Path, **sections: Any) -> Config:
    """A short CPU run on the shapes model; previews only at the start and the end (the judge reads them)."""
    data: dict[str, Any] = {
        "mode": "lora",
        "model": {"architecture": "sd15", "path": str(model), "precision": "fp32"},
        "dataset": {"path": str(dataset), "resolution": 64, "min_bucket_side": 64, "max_bucket_side": 128},
        "training": {"steps": 40, "batch_size": 4, "learning_rate": 2e-3, "eval_every": 20, "log_every": 1,
                     "seed": 0},
        "sampling": {"seeds": [0, 1, 2, 3], "inference_steps": 12, "guidance_scale": 5.0, "at_start": True},
        "output": {"run_name": "shapes"},
    }
    return config_from_dict(with_sections(data, sections))


def judged_previews(run_dir: Path, step: int, prompts: list[str]) -> list[PromptScore]:
    """The judge's scores of the preview pictures the run drew at ``step``, one per prompt."""
    folder = RunFolder(run_dir).sample_dir(step)
    return [score_samples(prompt, [Image.open(p) for p in sorted(folder.glob(f"p{index:02d}-seed*.png"))], SKS)
            for index, prompt in enumerate(prompts)]
