"""A tiny Stable Diffusion setup of the test's own (model and four captioned images in tmp), so GUI tests
that train diffusion do not depend on the bundled demo files."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image


def tiny_sd_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``--set`` overrides for the sd15-lora-8gb preset: the tiny model, 64 px images, fp32, a short run."""
    import tqdm

    from trainer.models.tiny import build_tiny_model

    monkeypatch.setattr(tqdm.tqdm, "monitor_interval", 0)  # no tqdm monitor thread in the test process
    model_dir, data_dir = tmp_path / "tiny", tmp_path / "images"
    build_tiny_model(model_dir, "sd15", seed=0)
    data_dir.mkdir()
    for i in range(4):
        Image.new("RGB", (64, 64), (60 * i, 120, 200 - 40 * i)).save(data_dir / f"img-{i}.png")
        (data_dir / f"img-{i}.txt").write_text("a sks emblem", encoding="utf-8")
    return [f'model.path="{model_dir.as_posix()}"', f'dataset.path="{data_dir.as_posix()}"',
            'model.precision="fp32"', "dataset.resolution=64", "dataset.min_bucket_side=64",
            "dataset.max_bucket_side=128", "dataset.repeats=1", "training.steps=6", "training.warmup_steps=0",
            "training.gradient_checkpointing=false", "training.eval_every=100",
            'sampling.prompts=["a sks emblem", "an emblem"]', "sampling.seeds=[1]", "sampling.every_n_steps=3",
            "sampling.inference_steps=2", "output.checkpoint_every=0"]
