"""EMA of the trained weights (``training.ema_decay``): the previews are drawn with it (a pipeline given its
diffusers file draws the very image), its files are written beside the raw ones, it lags behind them as an
average does, and a stopped and resumed run ends with the same EMA as an uninterrupted one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file

from tests.diffusion.conftest import diffusion_config, straight_and_resumed
from trainer.protocol import Finished, Sample


def test_the_ema_is_sampled_saved_beside_the_raw_weights_and_resumed(tmp_path, tiny_sd15, shapes_dataset):
    import diffusers

    config = diffusion_config(tiny_sd15, shapes_dataset, training={
        "steps": 8, "batch_size": 2, "learning_rate": 3e-3, "eval_every": 4, "seed": 1, "ema_decay": 0.8,
        "ema_on_cpu": True}, sampling={"prompts": ["a red circle"], "seeds": [7], "inference_steps": 3,
                                         "at_start": False})
    straight, resumed, _ = straight_and_resumed(config, tmp_path, stop_at=4)
    outputs = [Path(p) for p in straight.of(Finished)[0].outputs]
    raw = [p for p in outputs if p.parent.name != "ema" and p.parent.parent.name != "ema"]
    ema = [p for p in outputs if "ema" in p.relative_to(tmp_path / "straight" / "output").parts]
    assert len(raw) == len(ema) == 2  # the kohya file and the diffusers file, each
    resumed_ema = [Path(p) for p in resumed.of(Finished)[0].outputs if "/ema/" in p]
    for a, b in zip(ema, resumed_ema, strict=True):
        first, second = load_file(a), load_file(b)
        assert all(torch.equal(first[key], second[key]) for key in first)  # the EMA resumed bit for bit

    raw_up = load_file(next(p for p in raw if p.parent.name == "diffusers"))
    ema_up = load_file(next(p for p in ema if p.parent.name == "diffusers"))
    ups = [key for key in raw_up if "lora_B" in key or "lora.up" in key]
    assert ups
    # LoRA's up weights start at zero and grow; their average lags behind: smaller, not equal.
    raw_norm = sum(float(raw_up[key].norm()) for key in ups)
    ema_norm = sum(float(ema_up[key].norm()) for key in ups)
    assert 0 < ema_norm < raw_norm, (ema_norm, raw_norm)

    final = straight.of(Sample)[-1]
    trained = np.asarray(Image.open(final.paths[0]).convert("RGB"), dtype=np.int16)
    pipe = diffusers.StableDiffusionPipeline.from_pretrained(tiny_sd15, local_files_only=True, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)

    def draw(lora: Path) -> np.ndarray:
        pipe.unload_lora_weights()
        pipe.load_lora_weights(str(lora.parent), weight_name=lora.name)
        image = pipe(final.prompts[0], width=64, height=64, num_inference_steps=3, guidance_scale=7.5,
                     generator=torch.Generator("cpu").manual_seed(final.seeds[0])).images[0]
        return np.asarray(image, dtype=np.int16)

    ema_file = next(p for p in ema if p.parent.name == "diffusers")
    raw_file = next(p for p in raw if p.parent.name == "diffusers")
    assert np.abs(draw(ema_file) - trained).max() <= 2  # the preview was drawn with the EMA
    assert np.abs(draw(raw_file) - trained).max() > 2
