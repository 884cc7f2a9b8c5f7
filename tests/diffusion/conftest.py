"""Tiny offline models and a small generated dataset for the diffusion engine's tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

from tests.trainer.helpers import with_sections
from trainer.config import Config, config_from_dict

COLOURS = {"red": (220, 30, 30), "blue": (30, 60, 220), "green": (30, 170, 60)}


@pytest.fixture(scope="session")
def tiny_sd15(tmp_path_factory) -> Path:
    from trainer.models.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-sd15", "sd15", seed=0)


@pytest.fixture(scope="session")
def tiny_sd2(tmp_path_factory) -> Path:
    from trainer.models.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-sd2", "sd2", seed=0)


@pytest.fixture(scope="session")
def tiny_sdxl(tmp_path_factory) -> Path:
    from trainer.models.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-sdxl", "sdxl", seed=0)


def draw_shapes(folder: Path, count: int, with_captions: bool = True, size: tuple[int, int] = (64, 64)) -> Path:
    """Circles of a few colours on white; a caption file beside each."""
    folder.mkdir(parents=True, exist_ok=True)
    names = list(COLOURS)
    for i in range(count):
        colour = names[i % len(names)]
        image = Image.new("RGB", size, (250, 250, 250))
        offset = 4 * (i % 4)
        ImageDraw.Draw(image).ellipse((8 + offset, 8, 48 + offset, 48), fill=COLOURS[colour])
        image.save(folder / f"shape-{i:02d}.png")
        if with_captions:
            (folder / f"shape-{i:02d}.txt").write_text(f"a {colour} circle", encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def shapes_dataset(tmp_path_factory) -> Path:
    return draw_shapes(tmp_path_factory.mktemp("data") / "shapes", 6)


def diffusion_config(model_dir: Path, dataset_dir: Path, arch: str = "sd15", **sections: Any) -> Config:
    """A quick LoRA config on a tiny model; keyword arguments update tables or set top-level keys."""
    data: dict[str, Any] = {
        "mode": "lora",
        "model": {"architecture": arch, "path": str(model_dir)},
        "dataset": {"path": str(dataset_dir), "resolution": 64, "min_bucket_side": 64, "max_bucket_side": 128},
        "training": {"steps": 30, "batch_size": 2, "learning_rate": 3e-3, "eval_every": 10, "log_every": 1,
                     "seed": 1},
        "lora": {"rank": 4, "alpha": 8.0},
        "sampling": {"prompts": ["a red circle"], "seeds": [7], "inference_steps": 3, "at_start": False},
        "output": {"run_name": "tiny"},
    }
    return config_from_dict(with_sections(data, sections))


def straight_and_resumed(config: Config, root: Path, stop_at: int) -> tuple[Any, Any, Any]:
    """Run ``config`` once straight through, and once stopped (with a save) after ``stop_at`` steps and
    resumed; returns the recorders (straight, resumed) and the LoRA file tensors of both, as a pair."""
    from safetensors.torch import load_file

    from tests.trainer.helpers import ScriptedCommands, run_in_process
    from trainer.protocol import EXIT_OK, Failed, Finished, Stop

    code, straight = run_in_process(config, root / "straight")
    assert code == EXIT_OK, straight.of(Failed)
    code, stopped = run_in_process(config, root / "split", ScriptedCommands({stop_at: [Stop(save=True)]}))
    assert code == EXIT_OK, stopped.of(Failed)
    code, resumed = run_in_process(config, root / "split", resume=True)
    assert code == EXIT_OK, resumed.of(Failed)
    weights = (load_file(straight.of(Finished)[0].outputs[0]), load_file(resumed.of(Finished)[0].outputs[0]))
    return straight, resumed, weights
