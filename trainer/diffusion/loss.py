"""The denoising objective: noise the latents, ask the UNet to predict the noise (or velocity).

Options as in kohya sd-scripts and the diffusers examples: noise offset, min-SNR-γ loss
weighting (Hang et al., 2023), epsilon or v-prediction targets.  Noise and timesteps come
from a CPU generator that checkpoints carry, so runs are reproducible and resumable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trainer.diffusion.loss_weights import per_image_loss
from trainer.diffusion.text import TextConditioning


def snr(noise_scheduler, timesteps: torch.Tensor) -> torch.Tensor:
    """Signal-to-noise ratio alpha²/sigma² of each timestep."""
    alphas_cumprod = noise_scheduler.alphas_cumprod.to(timesteps.device)[timesteps].float()
    return alphas_cumprod / (1.0 - alphas_cumprod)


def draw_noise(shape: tuple[int, ...], generator: torch.Generator, noise_offset: float, num_timesteps: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """(noise, timesteps) for a batch of latents of ``shape``, on the CPU (the generator lives there)."""
    noise = torch.randn(shape, generator=generator)
    if noise_offset:
        noise = noise + noise_offset * torch.randn((shape[0], shape[1], 1, 1), generator=generator)
    timesteps = torch.randint(0, num_timesteps, (shape[0],), generator=generator)
    return noise, timesteps


def unet_prediction(unet, noisy: torch.Tensor, timesteps: torch.Tensor, text: TextConditioning,
                    time_ids: torch.Tensor | None) -> torch.Tensor:
    extra = {}
    if text.pooled is not None:
        extra["added_cond_kwargs"] = {"text_embeds": text.pooled, "time_ids": time_ids}
    return unet(noisy, timesteps, text.hidden, **extra).sample


def denoising_loss(unet, noise_scheduler, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor,
                   text: TextConditioning, time_ids: torch.Tensor | None, min_snr_gamma: float = 0.0,
                   weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean loss over the batch (a scalar); ``weights``: masked loss (``loss_weights``), per latent cell."""
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)
    prediction_type = noise_scheduler.config.prediction_type
    target = noise if prediction_type == "epsilon" else noise_scheduler.get_velocity(latents, noise, timesteps)
    predicted = unet_prediction(unet, noisy, timesteps, text, time_ids)
    loss = per_image_loss(F.mse_loss(predicted.float(), target.float(), reduction="none"), weights)
    if min_snr_gamma:
        ratio = snr(noise_scheduler, timesteps)
        clipped = torch.clamp(ratio, max=min_snr_gamma)
        weight = clipped / ratio if prediction_type == "epsilon" else clipped / (ratio + 1)
        loss = loss * weight
    return loss.mean()
