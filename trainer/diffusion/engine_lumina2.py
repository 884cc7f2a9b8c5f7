"""Lumina 2's engine: Z-Image's objective (a NextDiT whose time runs the other way and which predicts x₀ − ε) with
Lumina's own calls — prompts from ``Lumina2Pipeline.encode_prompt`` (the system prompt, Gemma 2's penultimate hidden
state, padded with a mask) and the transformer taking a padded batch with that mask instead of lists."""

from __future__ import annotations

import torch

from trainer.diffusion.engines import ZImageEngine
from trainer.diffusion.text import TextConditioning


class Lumina2Engine(ZImageEngine):
    """Flow matching on Lumina 2: σ, the noisy latents and the loss are :class:`SD3Engine`'s, the time 1 − σ and the
    negated output :class:`ZImageEngine`'s; latents unpacked (the transformer patches them), the prompt's real tokens
    only (the transformer reads each row up to its mask's length, so the padding of a batch never reaches it)."""

    def encode_prompts(self, encoders, prompts, device):
        pipe = self._text_pipeline(encoders)
        hidden, mask, _, _ = pipe.encode_prompt(list(prompts), do_classifier_free_guidance=False,
                                                device=torch.device(device),
                                                max_sequence_length=self.family.max_sequence_length or 256)
        return TextConditioning.from_sequences([row[keep.bool()] for row, keep in zip(hidden, mask, strict=True)])

    def predict(self, denoiser, noisy, sigma, text):
        mask = text.mask
        if mask is None:  # every prompt as long as the longest
            mask = torch.ones(text.hidden.shape[:2], dtype=torch.bool, device=text.hidden.device)
        time = (1 - sigma.float()).to(noisy.device)
        out = denoiser(hidden_states=noisy, timestep=time, encoder_hidden_states=text.hidden.to(noisy.dtype),
                       encoder_attention_mask=mask.to(noisy.device), return_dict=False)[0]
        return -out
