"""Masked loss: where in each picture the denoising loss counts (``dataset.masked_loss``).

A mask (``trainer.dataset.masks``, 1 = train, 0 = ignore) is brought to the latents' size by area
averaging — each latent cell gets the share of its pixels that train, so a mask edge gives partial
weights instead of aliasing — and floored at ``dataset.unmasked_weight`` (OneTrainer clamps the same way).

Normalisation: each image's loss is the weighted *mean*, Σ w·ℓ / Σ w over its latent cells (all
channels share a cell's weight).  So an image counts as much as any other whatever its mask's area, an
image without a mask gives exactly the unmasked loss, and the loss keeps the scale of an unmasked run,
so the learning rate, min-SNR weights and DreamBooth's prior_loss_weight keep their meaning (OneTrainer's
"normalize masked area loss"; kohya's plain product instead shrinks the loss with the mask's area).
An image whose weights are all zero adds nothing.

Every family's loss is taken on unpacked latents (batch, channels, height, width): the packed-token
families (Flux, Qwen-Image) unpack their prediction before the loss, so the same weight map lines up.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSS_WEIGHT = "loss_weight"  # the key of the weights in an engine's ``extras``


def latent_weights(mask: torch.Tensor, latent_size: tuple[int, int]) -> torch.Tensor:
    """(batch, 1, H, W) pixel masks in [0, 1] → (batch, 1, h, w): the average of each latent cell's pixels."""
    return F.interpolate(mask.float(), size=tuple(latent_size), mode="area")


def floored(weights: torch.Tensor, unmasked_weight: float) -> torch.Tensor:
    """Weights no lower than ``unmasked_weight``: the background still teaches that much."""
    return weights.clamp(min=unmasked_weight, max=1.0) if unmasked_weight else weights


def per_image_loss(elementwise: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """The loss of each image, (batch,), from the per-element loss (batch, channels, h, w).

    Without weights, the plain mean; with (batch, 1, h, w) weights, the weighted mean described above.
    """
    if weights is None:
        return elementwise.mean(dim=(1, 2, 3))
    weights = weights.to(elementwise.device, elementwise.dtype)
    total = (elementwise * weights).sum(dim=(1, 2, 3))
    area = weights.sum(dim=(1, 2, 3)) * elementwise.shape[1]
    return total / area.clamp_min(torch.finfo(elementwise.dtype).tiny)
