"""Pretrain the miniature Stable Diffusion of the shapes world, reproducibly from a seed, on a CPU.

SD 1.x architecture with small widths: ``AutoencoderKL`` (three levels, so latents are 1/4 of the
image side: 64 px → 16×16×4; a factor of 8 would leave a small star two latent pixels wide),
``UNet2DConditionModel``, a CLIP text encoder (``quick_gelu``, the SD 1.x marker) and the shapes
tokenizer.  Saved as an ordinary diffusers folder, so the engine loads it like any other model.

Stages (one tqdm bar across all of them):

1. render the world (``world_samples``);
2. train the VAE on 32×32 crops around the shape (it is convolutional; crops are 4× cheaper), then
   briefly on whole pictures so its mid-block attention sees 16×16 latents; L1 weighted 5:1 towards
   the shape's pixels (the background is most of a picture) + a small KL term;
3. encode every picture once (the posterior mean) and set ``scaling_factor`` to 1/std of the latents;
4. train UNet and text encoder together on the cached latents: ε-prediction under the SD 1.x noise
   schedule, min-SNR-5 weighting, 10 % empty captions (so classifier-free guidance works), an EMA
   of the weights (what is saved).

Same seed and thread count → same weights.  ``kamaal-train build-shapes-model OUT_DIR`` runs it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from trainer.shapes.tokenizer import CONTEXT_TOKENS, write_shapes_tokenizer
from trainer.shapes.world import IMAGE_SIZE, world_samples

# The SD 1.x noise schedule (the engine's DDPM/DDIM schedulers are built from this config).
SCHEDULER_CONFIG: dict[str, Any] = {
    "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000,
    "clip_sample": False, "set_alpha_to_one": False, "steps_offset": 1, "timestep_spacing": "leading",
    "prediction_type": "epsilon"}
VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 1,
    # 16 channels at full resolution are enough to paint flat colours with sharp edges, and that
    # level is where an autoencoder spends its time.
    "block_out_channels": (16, 32, 64), "norm_num_groups": 8,
    "down_block_types": ("DownEncoderBlock2D",) * 3, "up_block_types": ("UpDecoderBlock2D",) * 3,
    "sample_size": IMAGE_SIZE}
TEXT_WIDTH = 64
UNET_CONFIG: dict[str, Any] = {
    "sample_size": IMAGE_SIZE // 4, "in_channels": 4, "out_channels": 4, "layers_per_block": 1,
    "block_out_channels": (32, 64, 128), "norm_num_groups": 16,
    # No attention at the 16×16 level: it costs most and colour/shape are global properties that the
    # 8×8 and 4×4 levels see whole.  LoRA's to_q/to_k/to_v/to_out.0 exist at the other two levels.
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "cross_attention_dim": TEXT_WIDTH, "attention_head_dim": 8}


@dataclass(frozen=True)
class BuildSettings:
    seed: int = 0
    images: int = 8_000
    vae_steps: int = 500  # on 32×32 crops
    vae_full_steps: int = 60  # then on whole 64×64 pictures
    vae_batch: int = 32
    vae_lr: float = 1e-3
    kl_weight: float = 1e-4  # per latent element; small: reconstruction must stay crisp
    # 1,300 steps taught colour but not shape: every shape prompt drew the same blob for a given seed.
    unet_steps: int = 7000
    unet_batch: int = 32
    unet_lr: float = 1e-3
    warmup_steps: int = 100
    min_snr_gamma: float = 5.0
    empty_caption_share: float = 0.1
    context_tokens: int = CONTEXT_TOKENS  # the tokenizer pads prompts to this, not 77 (3× faster steps)
    ema_decay: float = 0.995
    # One thread: on a machine whose cores are busy with other work, two OpenMP threads wait on each
    # other at every barrier; a UNet step measured 2 s with one thread and 2–20 s with two.
    threads: int = 1
    # UNet and VAE in fp16 (halves the shipped size; the engine loads them as fp32); the text encoder is
    # stored in fp32 either way (the folder rule in trainer.models.folder_dtypes).
    save_fp16: bool = True
    # > 0: also save the EMA weights every this many UNet steps as OUT_DIR/snapshots/step-N (a whole
    # pipeline folder), to judge a long build while it runs.  Does not change the result.
    snapshot_every: int = 0


Progress = Callable[[int, dict[str, Any]], None]


def _no_progress(steps: int, info: dict[str, Any]) -> None:
    pass


def text_encoder_config(vocab_size: int) -> Any:
    import transformers

    return transformers.CLIPTextConfig(
        hidden_size=TEXT_WIDTH, intermediate_size=4 * TEXT_WIDTH, num_attention_heads=4, num_hidden_layers=3,
        hidden_act="quick_gelu", projection_dim=TEXT_WIDTH, vocab_size=vocab_size, max_position_embeddings=77,
        # CLIP pools at the first end-of-text token; its id must be the tokenizer's.
        bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1)


def render_world(count: int, seed: int) -> tuple[torch.Tensor, list[str], torch.Tensor]:
    """(count, 3, 64, 64) uint8 pixels, their captions, and each shape's centre (x, y)."""
    pixels = np.empty((count, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    captions, centres = [], []
    for index, (image, caption, scene) in enumerate(world_samples(count, seed)):
        pixels[index] = np.asarray(image)
        captions.append(caption)
        centres.append(scene.centre)
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous(), captions, torch.tensor(centres)


def _object_crops(pixels: torch.Tensor, centres: torch.Tensor, index: torch.Tensor, crop: int,
                  generator: torch.Generator) -> torch.Tensor:
    """Crops around each picture's shape (jittered, aligned to the 4-pixel latent grid): a random
    crop of a 64 px picture often holds only background, and the VAE would never learn colours."""
    jitter = torch.randint(-crop // 4, crop // 4 + 1, (len(index), 2), generator=generator)
    corners = (centres[index].round().long() - crop // 2 + jitter).div(4, rounding_mode="floor") * 4
    corners = corners.clamp(0, IMAGE_SIZE - crop)
    return torch.stack([pixels[i, :, top:top + crop, left:left + crop]
                        for i, (left, top) in zip(index.tolist(), corners.tolist(), strict=True)])


def _object_weights(images: torch.Tensor, corner_colours: torch.Tensor) -> torch.Tensor:
    """Per-pixel loss weights: 5 on the shape, 1 on the background (which covers most of a picture)."""
    differs = (images - corner_colours[:, :, None, None]).abs().amax(dim=1, keepdim=True) > 0.15
    return 1.0 + 4.0 * differs.float()


def to_unit(pixels: torch.Tensor) -> torch.Tensor:
    return pixels.float() / 127.5 - 1.0


def _lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then cosine down to 10 %."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def train_vae(pixels: torch.Tensor, centres: torch.Tensor, settings: BuildSettings, progress: Progress) -> Any:
    import diffusers

    generator = torch.Generator().manual_seed(settings.seed + 11)
    torch.manual_seed(settings.seed + 12)  # the module init and the posterior's sampling noise
    vae = diffusers.AutoencoderKL(**VAE_CONFIG)
    vae.train()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=settings.vae_lr, weight_decay=0.0)
    total = settings.vae_steps + settings.vae_full_steps
    for step in range(total):
        for group in optimizer.param_groups:
            group["lr"] = settings.vae_lr * _lr_factor(step, total, 50)
        crop = 32 if step < settings.vae_steps else IMAGE_SIZE
        batch = settings.vae_batch if crop == 32 else settings.vae_batch // 2
        index = torch.randint(0, len(pixels), (batch,), generator=generator)
        images = to_unit(_object_crops(pixels, centres, index, crop, generator) if crop < IMAGE_SIZE
                         else pixels[index])
        weights = _object_weights(images, to_unit(pixels[index, :, 0, 0]))
        posterior = vae.encode(images).latent_dist
        reconstruction = vae.decode(posterior.sample(generator=generator)).sample
        l1 = ((reconstruction - images).abs() * weights).mean() / weights.mean()
        kl = posterior.kl().mean() / posterior.mean[0].numel()
        loss = l1 + settings.kl_weight * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        progress(1, {"stage": "vae", "l1": f"{float(l1.detach()):.4f}"})
    vae.eval()
    return vae.requires_grad_(False)


@torch.no_grad()
def encode_world(vae: Any, pixels: torch.Tensor, progress: Progress, batch: int = 128) -> torch.Tensor:
    """Posterior means (unscaled) of every picture."""
    latents = []
    for start in range(0, len(pixels), batch):
        latents.append(vae.encode(to_unit(pixels[start:start + batch])).latent_dist.mean)
        progress(1, {"stage": "encode"})
    return torch.cat(latents)


Snapshot = Callable[[int, Any, Any], None]


def train_unet(latents: torch.Tensor, captions: list[str], tokenizer: Any, settings: BuildSettings,
               progress: Progress, snapshot: Snapshot | None = None) -> tuple[Any, Any]:
    import diffusers
    import transformers

    torch.manual_seed(settings.seed + 21)
    unet = diffusers.UNet2DConditionModel(**UNET_CONFIG)
    torch.manual_seed(settings.seed + 22)
    text_encoder = transformers.CLIPTextModel(text_encoder_config(len(tokenizer)))
    scheduler = diffusers.DDPMScheduler.from_config(SCHEDULER_CONFIG)
    alphas = scheduler.alphas_cumprod
    # Every distinct caption (and the empty one) tokenized once.
    distinct = sorted(set(captions))
    position = {caption: i for i, caption in enumerate(distinct)}
    caption_index = torch.tensor([position[c] for c in captions])
    distinct.append("")
    token_ids = tokenizer(distinct, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                          return_tensors="pt").input_ids
    empty_id = len(distinct) - 1
    modules = torch.nn.ModuleList([unet, text_encoder])
    modules.train()
    ema = [p.detach().clone() for p in modules.parameters()]
    optimizer = torch.optim.AdamW(modules.parameters(), lr=settings.unet_lr, weight_decay=0.01)
    generator = torch.Generator().manual_seed(settings.seed + 23)
    for step in range(settings.unet_steps):
        for group in optimizer.param_groups:
            group["lr"] = settings.unet_lr * _lr_factor(step, settings.unet_steps, settings.warmup_steps)
        index = torch.randint(0, len(latents), (settings.unet_batch,), generator=generator)
        ids = caption_index[index].clone()
        ids[torch.rand(len(ids), generator=generator) < settings.empty_caption_share] = empty_id
        clean = latents[index]
        noise = torch.randn(clean.shape, generator=generator)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (len(ids),), generator=generator)
        noisy = scheduler.add_noise(clean, noise, timesteps)
        hidden = text_encoder(token_ids[ids])[0]
        predicted = unet(noisy, timesteps, hidden).sample
        per_example = F.mse_loss(predicted, noise, reduction="none").mean(dim=(1, 2, 3))
        snr = alphas[timesteps] / (1 - alphas[timesteps])
        loss = (per_example * torch.clamp(snr, max=settings.min_snr_gamma) / snr).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(modules.parameters(), 1.0)
        optimizer.step()
        # EMA with a warm-up (the early, poor weights are forgotten quickly).
        decay = min(settings.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for average, parameter in zip(ema, modules.parameters(), strict=True):
                average.lerp_(parameter.detach(), 1 - decay)
        progress(1, {"stage": "unet", "loss": f"{float(loss.detach()):.4f}"})
        if snapshot is not None and settings.snapshot_every > 0 and (step + 1) % settings.snapshot_every == 0 \
                and step + 1 < settings.unet_steps:
            _snapshot(step + 1, modules, ema, snapshot)
    with torch.no_grad():
        for average, parameter in zip(ema, modules.parameters(), strict=True):
            parameter.copy_(average)
    modules.eval()
    return unet.requires_grad_(False), text_encoder.requires_grad_(False)


def _snapshot(step: int, modules: torch.nn.ModuleList, ema: list[torch.Tensor], snapshot: Snapshot) -> None:
    import copy

    averaged = copy.deepcopy(modules)
    with torch.no_grad():
        for average, parameter in zip(ema, averaged.parameters(), strict=True):
            parameter.copy_(average)
    averaged.eval()
    snapshot(step, averaged[0], averaged[1])


def _save_pipeline(out: Path, vae: Any, text_encoder: Any, tokenizer: Any, unet: Any, fp16: bool) -> None:
    """The caller's modules are not touched (a snapshot's VAE is still in use): fp16 parts are written
    from copies."""
    import diffusers

    from trainer.models.folder_dtypes import save_diffusers_folder

    pipeline = diffusers.StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        scheduler=diffusers.DDIMScheduler(**SCHEDULER_CONFIG), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)
    save_diffusers_folder(pipeline, out, torch.float16 if fp16 else torch.float32)


def total_progress_steps(settings: BuildSettings) -> int:
    return settings.vae_steps + settings.vae_full_steps + math.ceil(settings.images / 128) + settings.unet_steps


def build_shapes_model(out_dir: Path | str, settings: BuildSettings = BuildSettings(),
                       progress: Progress = _no_progress) -> Path:
    """Train and write the shapes model as a diffusers folder; returns the folder."""
    import diffusers
    from transformers import CLIPTokenizer

    from trainer.models.offline import force_offline

    force_offline()
    out = Path(out_dir)
    threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    started = time.monotonic()
    try:
        with torch.random.fork_rng(devices=[]):
            out.mkdir(parents=True, exist_ok=True)
            write_shapes_tokenizer(out / "tokenizer", context_tokens=settings.context_tokens)
            tokenizer = CLIPTokenizer.from_pretrained(out / "tokenizer", local_files_only=True)
            pixels, captions, centres = render_world(settings.images, settings.seed)
            vae = train_vae(pixels, centres, settings, progress)
            latents = encode_world(vae, pixels, progress)
            scale = 1.0 / float(latents.std())
            vae.register_to_config(scaling_factor=round(scale, 5))
            def snapshot(step: int, unet: Any, text_encoder: Any) -> None:
                _save_pipeline(out / "snapshots" / f"step-{step}", vae, text_encoder, tokenizer, unet,
                               settings.save_fp16)

            unet, text_encoder = train_unet(latents * vae.config.scaling_factor, captions, tokenizer, settings,
                                            progress, snapshot)
        _save_pipeline(out, vae, text_encoder, tokenizer, unet, settings.save_fp16)
        record = {"settings": asdict(settings), "seconds": round(time.monotonic() - started, 1),
                  "torch": torch.__version__, "diffusers": diffusers.__version__}
        (out / "build.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    finally:
        torch.set_num_threads(threads)
    return out
