"""How Krea 2 trains: :class:`Krea2Engine`, SD 3's flow matching with ``Krea2Pipeline``'s latents, prompts and
transformer call.

* Latents: Qwen-Image's VAE, one frame, normalised per channel by its ``latents_mean``/``latents_std`` (the inverse
  of what the pipeline does before decoding) — :class:`QwenImageEngine`'s.
* Prompts: the pipeline's own ``encode_prompt`` (Qwen-Image's chat template, padded to 512 tokens between the prompt
  and the assistant suffix, positions counting real tokens only, the stacked hidden states of the
  ``text_encoder_select_layers``), of which each prompt's real tokens are kept (prompt, then suffix): the
  transformer gives every text token the rotary position 0 and its text fusion has no positions, so under the mask
  the padding's place never reaches the image.  A batch is padded again at the end with its mask.
* The transformer: latents packed into ``patch_size``-square patches as ``_pack_latents`` does, position ids (0, 0,
  0) for the text and (0, row, column) for the image (``prepare_position_ids``), the time σ (the pipeline passes
  t / 1000), and its output, the velocity ε − x₀, unpacked the other way.
"""

from __future__ import annotations

import math

import torch

from trainer.diffusion.engines import QwenImageEngine, _unwrapped
from trainer.diffusion.text import TextConditioning


class Krea2Engine(QwenImageEngine):
    """Flow matching on Krea 2 (see the module's docstring)."""

    def encode_prompts(self, encoders, prompts, device):
        pipe = self._text_pipeline(encoders)
        hidden, mask = pipe.encode_prompt(list(prompts), device=torch.device(device),
                                          max_sequence_length=self.family.max_sequence_length or 512)
        return TextConditioning.from_sequences([row[keep] for row, keep in zip(hidden, mask.bool(), strict=True)])

    def predict(self, denoiser, noisy, sigma, text):
        batch, channels, height, width = noisy.shape
        # The pipeline's patch_size: the transformer's input channels are the VAE's times its square.
        p = math.isqrt(_unwrapped(denoiser).config.in_channels // channels)
        rows, cols = height // p, width // p
        packed = (noisy.view(batch, channels, rows, p, cols, p).permute(0, 2, 4, 1, 3, 5)
                  .reshape(batch, rows * cols, channels * p * p))
        image_ids = torch.zeros(rows, cols, 3, device=noisy.device)
        image_ids[..., 1] = torch.arange(rows, device=noisy.device)[:, None]
        image_ids[..., 2] = torch.arange(cols, device=noisy.device)[None, :]
        ids = torch.cat([torch.zeros(text.hidden.shape[1], 3, device=noisy.device), image_ids.reshape(-1, 3)])
        mask = None if text.mask is None else text.mask.to(noisy.device)
        out = denoiser(hidden_states=packed, encoder_hidden_states=text.hidden.to(noisy.dtype),
                       timestep=sigma.to(noisy.device, noisy.dtype), position_ids=ids, encoder_attention_mask=mask,
                       return_dict=False)[0]
        return (out.view(batch, rows, cols, channels, p, p).permute(0, 3, 1, 4, 2, 5)
                .reshape(batch, channels, height, width))
