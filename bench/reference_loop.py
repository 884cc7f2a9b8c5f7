"""The reference Kamaal's training step is timed against: the diffusers DreamBooth-LoRA example's inner loop.

Written the way ``train_dreambooth_lora.py`` and ``train_dreambooth_lora_sdxl.py`` work, stripped of
accelerate and logging: every step opens the images, tokenizes the captions and runs the VAE and the
text encoder(s) (no caching); ``add_adapter`` (peft) on the UNet with the LoRA weights in fp32, the frozen
weights in the mixed-precision dtype (the VAE in fp32, as the SDXL example and Kamaal keep it), autocast
around the UNet, a GradScaler under fp16, AdamW (or bitsandbytes' 8-bit AdamW), DDPM noise, MSE on
epsilon, gradient clipping.  SD 1.x and SDXL (two text encoders, pooled embeddings, size/crop time ids).

Shared by ``bench_training`` (CPU, tiny SD 1.5) and ``gpu_check`` (CUDA at full size; ``--dry-run``: CPU,
tiny models).  ``run_reference`` returns the time at the end of every step; ``steps_per_s`` turns a window
of them into a speed, so each caller times the same steps as its Kamaal run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw

COLOURS = {"red": (220, 30, 30), "green": (30, 160, 60), "blue": (30, 60, 220)}


def draw_shapes(folder: Path, count: int = 6, size: int = 64) -> Path:
    """Circles of a few colours on white, ``size`` px square, a caption beside each (as tests/diffusion/conftest.py)."""
    folder.mkdir(parents=True, exist_ok=True)
    names = list(COLOURS)
    s = size / 64  # the 64 px drawing, scaled
    for i in range(count):
        colour = names[i % len(names)]
        image = Image.new("RGB", (size, size), (250, 250, 250))
        offset = 4 * (i % 4)
        ImageDraw.Draw(image).ellipse(((8 + offset) * s, 8 * s, (48 + offset) * s, 48 * s), fill=COLOURS[colour])
        image.save(folder / f"shape-{i:02d}.png")
        (folder / f"shape-{i:02d}.txt").write_text(f"a {colour} circle", encoding="utf-8")
    return folder


@dataclass(frozen=True)
class ReferenceSpec:
    """What the reference loop trains: the same model folder, images and settings as the Kamaal run beside it."""

    model_dir: Path
    dataset_dir: Path
    arch: str = "sd15"  # "sd15" or "sdxl"
    resolution: int = 64
    batch: int = 2
    rank: int = 4
    steps: int = 40
    device: str = "cpu"
    precision: str = "no"  # accelerate's names: "no", "fp16", "bf16"
    gradient_checkpointing: bool = False
    optimizer: str = "adamw"  # or "adamw8bit" (bitsandbytes, CUDA)
    learning_rate: float = 1e-4
    seed: int = 1


@dataclass
class ReferenceRun:
    stamps: list[float]  # perf_counter() at the end of each step (after the loss is read: the GPU is done)
    losses: list[float]
    peak_allocated_bytes: int = 0  # CUDA only
    peak_reserved_bytes: int = 0
    notes: list[str] = field(default_factory=list)


def steps_per_s(stamps: list[float], first: int, last: int) -> float:
    """Speed over steps ``first + 1 … last`` (1-based): from the end of step ``first`` to the end of ``last``."""
    return (last - first) / (stamps[last - 1] - stamps[first - 1])


def run_reference(spec: ReferenceSpec) -> ReferenceRun:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from peft import LoraConfig
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    torch.manual_seed(spec.seed)
    device = torch.device(spec.device)
    dtype = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[spec.precision]
    sdxl = spec.arch == "sdxl"
    root = spec.model_dir
    tokenizers = [CLIPTokenizer.from_pretrained(root, subfolder="tokenizer", local_files_only=True)]
    encoders: list[torch.nn.Module] = [CLIPTextModel.from_pretrained(root, subfolder="text_encoder",
                                                                     local_files_only=True)]
    if sdxl:
        tokenizers.append(CLIPTokenizer.from_pretrained(root, subfolder="tokenizer_2", local_files_only=True))
        encoders.append(CLIPTextModelWithProjection.from_pretrained(root, subfolder="text_encoder_2",
                                                                    local_files_only=True))
    vae = AutoencoderKL.from_pretrained(root, subfolder="vae", local_files_only=True)
    unet = UNet2DConditionModel.from_pretrained(root, subfolder="unet", local_files_only=True)
    scheduler = DDPMScheduler.from_pretrained(root, subfolder="scheduler", local_files_only=True)
    for module in (*encoders, vae, unet):
        module.requires_grad_(False)
    vae.to(device, torch.float32)
    for module in (*encoders, unet):
        module.to(device, dtype)
    unet.add_adapter(LoraConfig(r=spec.rank, lora_alpha=spec.rank, init_lora_weights="gaussian",
                                target_modules=["to_k", "to_q", "to_v", "to_out.0"]))
    params = [p for p in unet.parameters() if p.requires_grad]
    for p in params:  # the examples' cast_training_params: trained weights in fp32
        p.data = p.data.float()
    if spec.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    if spec.optimizer == "adamw8bit":
        import bitsandbytes as bnb

        optimizer = bnb.optim.AdamW8bit(params, lr=spec.learning_rate, betas=(0.9, 0.999), weight_decay=1e-2,
                                        eps=1e-8)
    else:
        optimizer = torch.optim.AdamW(params, lr=spec.learning_rate, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)
    scaler = torch.amp.GradScaler(device.type) if spec.precision == "fp16" else None
    unet.train()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    paths = sorted(spec.dataset_dir.glob("*.png"))
    size = spec.resolution

    def example(path: Path) -> tuple[torch.Tensor, str]:
        """The example's ``DreamBoothDataset.__getitem__``: open, resize, normalise — every step."""
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB").resize((size, size)), dtype=np.float32)
        return torch.from_numpy(array).permute(2, 0, 1) / 127.5 - 1.0, path.with_suffix(".txt").read_text("utf-8")

    def encode_prompt(captions: list[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """SD 1.x: the last hidden state.  SDXL: both encoders' penultimate states side by side + pooled."""
        if not sdxl:
            ids = tokenizers[0](captions, padding="max_length", max_length=tokenizers[0].model_max_length,
                                truncation=True, return_tensors="pt").input_ids
            return encoders[0](ids.to(device))[0], None
        states, pooled = [], None
        for tokenizer, encoder in zip(tokenizers, encoders, strict=True):
            ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                            return_tensors="pt").input_ids
            out = encoder(ids.to(device), output_hidden_states=True)
            states.append(out.hidden_states[-2])
            pooled = getattr(out, "text_embeds", None)
        return torch.cat(states, dim=-1), pooled

    generator = torch.Generator().manual_seed(spec.seed)
    stamps: list[float] = []
    losses: list[float] = []
    for _ in range(spec.steps):
        pick = torch.randint(0, len(paths), (spec.batch,), generator=generator).tolist()
        batch = [example(paths[i]) for i in pick]
        pixels = torch.stack([b[0] for b in batch]).to(device)
        with torch.no_grad():
            latents = (vae.encode(pixels).latent_dist.sample() * vae.config.scaling_factor).to(dtype)
            hidden, pooled = encode_prompt([b[1] for b in batch])
        noise = torch.randn_like(latents)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (spec.batch,), device=device)
        noisy = scheduler.add_noise(latents, noise, timesteps)
        extra = {}
        if sdxl:
            time_ids = torch.tensor([[size, size, 0, 0, size, size]] * spec.batch, device=device, dtype=dtype)
            extra["added_cond_kwargs"] = {"text_embeds": pooled, "time_ids": time_ids}
        with torch.autocast(device.type, dtype=dtype, enabled=spec.precision != "no"):
            pred = unet(noisy, timesteps, hidden, return_dict=False, **extra)[0]
        loss = F.mse_loss(pred.float(), noise.float(), reduction="mean")
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss.detach()))  # waits for the GPU, as Kamaal's step does
        stamps.append(time.perf_counter())
    run = ReferenceRun(stamps, losses)
    if device.type == "cuda":
        run.peak_allocated_bytes = int(torch.cuda.max_memory_allocated())
        run.peak_reserved_bytes = int(torch.cuda.max_memory_reserved())
    return run
