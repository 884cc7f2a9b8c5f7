"""Kamaal's LoRA step against a bare DreamBooth-LoRA-style loop: same tiny model, data, batch, steps.

    python -m bench --only bench_training

Kamaal runs in-process through ``trainer.worker.run_worker`` (a recording sink, no child process:
bench_messaging measures that part), once with latent/text caching on and once off.  Its steps/s
come from the worker's own ``Progress`` events (``elapsed_s`` at each step), so loading, sampling and
saving are outside the window.  The reference is written the way the diffusers
``train_dreambooth_lora.py`` example works: VAE encode and text encoder on every step, ``add_adapter``
(peft) on the UNet, AdamW, DDPM noise, MSE on epsilon.  The first ``WARMUP`` steps are excluded
from both.  The ratio is Kamaal ÷ reference steps/s (above 1: Kamaal faster).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

STEPS, WARMUP, BATCH, RESOLUTION, RANK = 40, 5, 2, 64, 4
COLOURS = {"red": (220, 30, 30), "green": (30, 160, 60), "blue": (30, 60, 220)}


def draw_shapes(folder: Path, count: int = 6, size: int = RESOLUTION) -> Path:
    """Circles of a few colours on white with a caption beside each (as tests/diffusion/conftest.py)."""
    folder.mkdir(parents=True, exist_ok=True)
    names = list(COLOURS)
    for i in range(count):
        colour = names[i % len(names)]
        image = Image.new("RGB", (size, size), (250, 250, 250))
        offset = 4 * (i % 4)
        ImageDraw.Draw(image).ellipse((8 + offset, 8, 48 + offset, 48), fill=COLOURS[colour])
        image.save(folder / f"shape-{i:02d}.png")
        (folder / f"shape-{i:02d}.txt").write_text(f"a {colour} circle", encoding="utf-8")
    return folder


def kamaal_config(model_dir: Path, dataset_dir: Path, caching: bool, steps: int = STEPS) -> Any:
    from trainer.config import config_from_dict

    return config_from_dict({
        "mode": "lora",
        "model": {"architecture": "sd15", "path": str(model_dir)},
        "dataset": {"path": str(dataset_dir), "resolution": RESOLUTION, "min_bucket_side": 64,
                    "max_bucket_side": 128, "cache_latents": "memory" if caching else "off",
                    "cache_text": "on" if caching else "off"},
        "training": {"steps": steps, "batch_size": BATCH, "learning_rate": 1e-4, "eval_every": steps,
                     "log_every": 1, "seed": 1},
        "lora": {"rank": RANK, "alpha": float(RANK)},
        "sampling": {"prompts": ["a red circle"], "seeds": [7], "inference_steps": 1, "at_start": False},
        "output": {"run_name": "bench"},
    })


class _Recorder:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def emit(self, event: Any) -> None:
        self.events.append(event)


def kamaal_steps_per_s(config: Any, run_dir: Path) -> float:
    from trainer.protocol import Failed, Progress
    from trainer.runfolder import RunFolder
    from trainer.runlog import NoCommands
    from trainer.worker import run_worker

    RunFolder.create(config, run_dir)
    sink = _Recorder()
    code = run_worker(run_dir, NoCommands(), sink)
    failed = [e for e in sink.events if isinstance(e, Failed)]
    if code != 0 or failed:
        raise RuntimeError(f"Kamaal run failed (exit {code}): {failed[:1]}")
    at = {e.step: e.elapsed_s for e in sink.events if isinstance(e, Progress) and e.step > 0}
    last = max(at) - 1  # the last step's time may include the held-out evaluation at eval_every
    return (last - WARMUP) / (at[last] - at[WARMUP])


def reference_steps_per_s(model_dir: Path, dataset_dir: Path, steps: int = STEPS) -> float:
    """The diffusers DreamBooth LoRA example's inner loop, stripped of accelerate and logging."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from peft import LoraConfig
    from transformers import CLIPTextModel, CLIPTokenizer

    torch.manual_seed(1)
    tokenizer = CLIPTokenizer.from_pretrained(model_dir, subfolder="tokenizer")
    text_encoder = CLIPTextModel.from_pretrained(model_dir, subfolder="text_encoder")
    vae = AutoencoderKL.from_pretrained(model_dir, subfolder="vae")
    unet = UNet2DConditionModel.from_pretrained(model_dir, subfolder="unet")
    scheduler = DDPMScheduler.from_pretrained(model_dir, subfolder="scheduler")
    for module in (text_encoder, vae, unet):
        module.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=RANK, lora_alpha=RANK, init_lora_weights="gaussian",
                                target_modules=["to_k", "to_q", "to_v", "to_out.0"]))
    params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)
    unet.train()

    paths = sorted(dataset_dir.glob("*.png"))

    def example(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
        """The example's ``DreamBoothDataset.__getitem__``: open, resize, normalise, tokenize — every step."""
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB").resize((RESOLUTION, RESOLUTION)), dtype=np.float32)
        ids = tokenizer(path.with_suffix(".txt").read_text(encoding="utf-8"), padding="max_length",
                        max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt").input_ids
        return torch.from_numpy(array).permute(2, 0, 1) / 127.5 - 1.0, ids[0]

    generator = torch.Generator().manual_seed(1)
    stamps: list[float] = []
    for _ in range(steps):
        pick = torch.randint(0, len(paths), (BATCH,), generator=generator).tolist()
        batch = [example(paths[i]) for i in pick]
        pixels, ids = torch.stack([b[0] for b in batch]), torch.stack([b[1] for b in batch])
        with torch.no_grad():
            latents = vae.encode(pixels).latent_dist.sample() * vae.config.scaling_factor
            hidden = text_encoder(ids)[0]
        noise = torch.randn_like(latents)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (BATCH,))
        noisy = scheduler.add_noise(latents, noise, timesteps)
        pred = unet(noisy, timesteps, hidden, return_dict=False)[0]
        loss = F.mse_loss(pred.float(), noise.float(), reduction="mean")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad()
        stamps.append(time.perf_counter())
    return (steps - 1 - WARMUP) / (stamps[-2] - stamps[WARMUP - 1])  # the same steps as Kamaal's window


def rows() -> list[dict[str, str]]:
    from trainer.models.tiny import build_tiny_model

    with tempfile.TemporaryDirectory(prefix="kamaal-bench-train-") as tmp:
        root = Path(tmp)
        model_dir = build_tiny_model(root / "model", "sd15", seed=0)
        dataset_dir = draw_shapes(root / "shapes")
        reference = reference_steps_per_s(model_dir, dataset_dir)
        cached = kamaal_steps_per_s(kamaal_config(model_dir, dataset_dir, True), root / "runs" / "cached")
        uncached = kamaal_steps_per_s(kamaal_config(model_dir, dataset_dir, False), root / "runs" / "uncached")
        reference_again = reference_steps_per_s(model_dir, dataset_dir)  # both sides of the Kamaal runs
    reference = (reference + reference_again) / 2
    spread = abs(reference - reference_again) / reference
    shape = f"tiny sd15, {RESOLUTION} px, batch {BATCH}, {STEPS} steps ({WARMUP} warm-up excluded), CPU"
    return [
        {"name": "training: LoRA steps/s, caching on", "kamaal": f"{cached:.2f} it/s",
         "reference": f"{reference:.2f} it/s", "ratio": f"{cached / reference:.2f}",
         "note": f"vs diffusers DreamBooth-LoRA loop; {shape}; reference spread {spread:.0%}"},
        {"name": "training: LoRA steps/s, caching off", "kamaal": f"{uncached:.2f} it/s",
         "reference": f"{reference:.2f} it/s", "ratio": f"{uncached / reference:.2f}",
         "note": "same work per step as the reference (images read, VAE + text encoder every step)"},
    ]
