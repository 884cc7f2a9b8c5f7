"""The denoising objective: noise the latents, ask the UNet to predict the noise (or velocity).

Options as in kohya sd-scripts and the diffusers examples: noise offset, multi-resolution (pyramid)
noise, a timestep range, min-SNR-γ (Hang et al., 2023) and debiased-estimation (Yu et al., 2024) loss
weighting, epsilon or v-prediction targets.  Noise and timesteps come from a CPU generator that
checkpoints carry, so runs are reproducible and resumable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from trainer.diffusion.loss_weights import per_image_loss
from trainer.diffusion.text import TextConditioning

# kohya caps the SNR at 1000 before weighting by 1/√SNR: the cleanest timesteps' SNR runs to 10⁵ and more.
DEBIASED_SNR_CAP = 1000.0


@dataclass(frozen=True)
class NoiseOptions:
    """How a training batch is noised (``training.*`` of the config): the engines' one argument for it."""

    offset: float = 0.0
    multires_iterations: int = 0
    multires_discount: float = 0.3
    # The timesteps drawn, as fractions of the 0–1000 scale: DDPM t in [low, high) · steps, flow σ in [low, high].
    timestep_range: tuple[float, float] = (0.0, 1.0)

    @classmethod
    def of(cls, training: Any) -> NoiseOptions:
        return cls(training.noise_offset, training.multires_noise_iterations, training.multires_noise_discount,
                   (training.timestep_min / 1000, training.timestep_max / 1000))


def base_noise(shape: tuple[int, ...], generator: torch.Generator, options: NoiseOptions) -> torch.Tensor:
    """Gaussian noise with the noise offset (a constant per image and channel) and then multires noise, in
    kohya's order."""
    noise = torch.randn(shape, generator=generator)
    if options.offset:
        noise = noise + options.offset * torch.randn((shape[0], shape[1], 1, 1), generator=generator)
    if options.multires_iterations:
        noise = multires_noise(noise, generator, options.multires_iterations, options.multires_discount)
    return noise


def multires_noise(noise: torch.Tensor, generator: torch.Generator, iterations: int, discount: float) -> torch.Tensor:
    """kohya's multires ("pyramid") noise: to ``noise`` add, for level i = 0 … iterations − 1, Gaussian noise
    drawn at the size divided by rⁱ (r drawn in [2, 4) per level, so the levels do not line up with the
    latents' grid) and scaled back up bilinearly, weighted discountⁱ; then each image's noise is brought back to
    unit variance.  The coarse levels put energy in the low frequencies that white noise lacks, so the model
    learns to change large areas (overall brightness, colour) too.  Stops at a level one pixel across."""
    batch, channels, height, width = noise.shape
    total = noise.clone()
    for level in range(iterations):
        factor = (2 + 2 * float(torch.rand((), generator=generator))) ** level
        size = (max(1, int(height / factor)), max(1, int(width / factor)))
        coarse = torch.randn((batch, channels, *size), generator=generator)
        total += F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False) * discount**level
        if min(size) == 1:
            break
    return total / total.std(dim=(1, 2, 3), keepdim=True)


def snr(noise_scheduler, timesteps: torch.Tensor) -> torch.Tensor:
    """Signal-to-noise ratio alpha²/sigma² of each timestep."""
    alphas_cumprod = noise_scheduler.alphas_cumprod.to(timesteps.device)[timesteps].float()
    return alphas_cumprod / (1.0 - alphas_cumprod)


def draw_noise(shape: tuple[int, ...], generator: torch.Generator, options: NoiseOptions, num_timesteps: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """(noise, timesteps) for a batch of latents of ``shape``, on the CPU (the generator lives there); the
    timesteps uniform in ``options.timestep_range`` of the schedule's ``num_timesteps``."""
    noise = base_noise(shape, generator, options)
    low, high = (round(fraction * num_timesteps) for fraction in options.timestep_range)
    timesteps = torch.randint(low, max(high, low + 1), (shape[0],), generator=generator)
    return noise, timesteps


def unet_prediction(unet, noisy: torch.Tensor, timesteps: torch.Tensor, text: TextConditioning,
                    time_ids: torch.Tensor | None) -> torch.Tensor:
    extra = {}
    if text.pooled is not None:
        extra["added_cond_kwargs"] = {"text_embeds": text.pooled, "time_ids": time_ids}
    return unet(noisy, timesteps, text.hidden, **extra).sample


def denoising_loss(unet, noise_scheduler, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor,
                   text: TextConditioning, time_ids: torch.Tensor | None, min_snr_gamma: float = 0.0,
                   weights: torch.Tensor | None = None, *, debiased: bool = False) -> torch.Tensor:
    """Mean loss over the batch (a scalar): each image's loss (weighted over its latent cells by a masked loss's
    ``weights``, ``loss_weights``), weighted by its timestep's :func:`timestep_weights`."""
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)
    prediction_type = noise_scheduler.config.prediction_type
    target = noise if prediction_type == "epsilon" else noise_scheduler.get_velocity(latents, noise, timesteps)
    predicted = unet_prediction(unet, noisy, timesteps, text, time_ids)
    loss = per_image_loss(F.mse_loss(predicted.float(), target.float(), reduction="none"), weights)
    return (loss * timestep_weights(noise_scheduler, timesteps, min_snr_gamma, debiased)).mean()


def timestep_weights(noise_scheduler, timesteps: torch.Tensor, min_snr_gamma: float = 0.0, debiased: bool = False
                     ) -> torch.Tensor | float:
    """Each timestep's weight in the loss.  Both schemes are stated for a prediction's error in one unit (min-SNR
    on the image x₀: min(SNR, γ); debiased estimation on the noise ε: 1/√SNR) and carried to the unit the model
    predicts in: the ε error is SNR times the x₀ error, the v error (SNR + 1) times it.  So with v-prediction
    min-SNR weighs min(SNR, γ)/(SNR + 1) and debiased estimation √SNR/(SNR + 1) (1/√SNR · SNR/(SNR + 1))."""
    if not min_snr_gamma and not debiased:
        return 1.0
    epsilon = noise_scheduler.config.prediction_type == "epsilon"
    ratio = snr(noise_scheduler, timesteps)
    weight = torch.ones_like(ratio)
    if min_snr_gamma:
        clipped = torch.clamp(ratio, max=min_snr_gamma)
        weight = weight * (clipped / ratio if epsilon else clipped / (ratio + 1))
    if debiased:
        capped = torch.clamp(ratio, max=DEBIASED_SNR_CAP)
        weight = weight * (1 / torch.sqrt(capped) if epsilon else torch.sqrt(capped) / (capped + 1))
    return weight
