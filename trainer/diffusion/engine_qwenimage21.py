"""How Qwen-Image 2.1 trains: :class:`QwenImage21Engine`, SD 3's flow matching with the latents, prompts and
transformer call of diffusers' ``QwenImage21Pipeline``.

* Latents: the RGBA VAE reads four channels, so an RGB training image gets an opaque alpha (1 in [−1, 1], what the
  pipeline's preprocessing gives an RGB picture converted to RGBA); the mean of its distribution (the pipeline encodes
  with ``argmax``) normalised by the VAE's per-channel ``latents_mean``/``latents_std``, one frame dropped.
* The shift: by the image's token count, which for 2.1 is every latent pixel (no 2×2 patching), as the pipeline's
  ``calculate_shift(latents.shape[1], …)`` counts it.
* Prompts: the pipeline's own ``encode_prompt`` (Qwen3-VL's last layer before its norm, the system prompt dropped,
  each prompt as long as it is, with a mask where lengths differ).
* The transformer: latents flattened into tokens as ``_pack_latents`` does, the VLM-side ``img_mask`` (no image slot
  in the prompt, then one slot per 2×2 group of target tokens, as the pipeline appends them), ``img_shapes``, the
  time σ (the pipeline gives t / 1000), and the target's tokens of its output — the velocity ε − x₀ — unflattened.
"""

from __future__ import annotations

import math

import torch

from trainer.diffusion.engines import SD3Engine
from trainer.diffusion.text import TextConditioning

# Each image slot of the vision-language sequence stands for 2×2 latent tokens (the transformer's _IMG_TOKENS_PER_SLOT).
TOKENS_PER_SLOT = 4


class QwenImage21Engine(SD3Engine):
    """Flow matching on Qwen-Image 2.1 (see the module's docstring)."""

    def image_latents(self, pixels):
        config = self.parts.vae.config
        if pixels.shape[1] == 3:  # opaque: the alpha an RGB image has as RGBA
            pixels = torch.cat([pixels, torch.ones_like(pixels[:, :1])], dim=1)
        mean = self.parts.vae.encode(pixels.unsqueeze(2)).latent_dist.mean  # (batch, channels, 1 frame, h, w)
        shape = (1, -1, 1, 1, 1)
        average = torch.tensor(config.latents_mean, device=mean.device, dtype=mean.dtype).view(shape)
        spread = torch.tensor(config.latents_std, device=mean.device, dtype=mean.dtype).view(shape)
        return ((mean - average) / spread).squeeze(2)

    def shift(self, shape):
        flow = self.family.flow
        assert flow is not None
        tokens = shape[-2] * shape[-1]
        slope = (flow.max_shift - flow.base_shift) / (flow.max_seq_len - flow.base_seq_len)
        return math.exp(flow.base_shift + slope * (tokens - flow.base_seq_len))

    def encode_prompts(self, encoders, prompts, device):
        pipe = self._text_pipeline(encoders)
        hidden, mask, _ = pipe.encode_prompt(list(prompts), device=torch.device(device))
        if mask is None:  # every prompt as long as the longest
            return TextConditioning(hidden)
        return TextConditioning.from_sequences([row[keep.bool()] for row, keep in zip(hidden, mask, strict=True)])

    def predict(self, denoiser, noisy, sigma, text):
        batch, channels, height, width = noisy.shape
        tokens = noisy.reshape(batch, channels, height * width).transpose(1, 2)
        slots = torch.cat([torch.zeros(batch, text.hidden.shape[1], dtype=torch.bool, device=noisy.device),
                           torch.ones(batch, height * width // TOKENS_PER_SLOT, dtype=torch.bool,
                                      device=noisy.device)], dim=1)
        out = denoiser(hidden_states=tokens, timestep=sigma.to(noisy.device, noisy.dtype),
                       encoder_hidden_states=text.hidden.to(noisy.dtype), encoder_hidden_states_mask=text.mask,
                       img_shapes=[[(1, height, width)]] * batch, img_mask=slots, return_dict=False)[0]
        return out[:, -height * width:].transpose(1, 2).reshape(batch, channels, height, width)
