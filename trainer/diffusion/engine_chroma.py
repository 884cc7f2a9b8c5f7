"""Chroma's engine: :class:`~trainer.diffusion.engines.FluxEngine` (packed latents, position ids, flow matching)
with the transformer called as ``ChromaPipeline`` calls it, and lodestones' timestep density.

* Prompts: the pipeline's own ``encode_prompt`` — T5 run with the tokenizer's mask, every prompt padded to
  ``max_sequence_length``, and the mask the transformer gets (the prompt's tokens and the first padding token).
  Chroma has no pooled text vector; its conditioning carries that mask in the ``pooled`` slot, a (batch, tokens)
  row per prompt, so batching, ``select`` and the disk cache keep the two together as they keep SDXL's pooled
  embedding with its hidden states.
* The call: no guidance and no pooled input; ``attention_mask`` is the prompt mask followed by ones for the image
  tokens, exactly what the pipeline builds (diffusers 0.42.1 passes it to attention as it is, a float 0/1 mask, so
  training sees what sampling sees).
* σ: the density −7.7·(σ − ½)² + 2 on a 1000-point grid of [0, 1], as lodestones' ``flow`` trainer draws it, no
  shift.  The job's uniform draw u is mapped through that grid's inverse CDF, so the held-out set's fixed fractions
  are the same quantiles on every run.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch

from trainer.diffusion.engines import FluxEngine
from trainer.diffusion.text import TextConditioning

_GRID = torch.linspace(0, 1, 1000, dtype=torch.float64)
_DENSITY = -7.7 * (_GRID - 0.5) ** 2 + 2
_CDF = torch.cumsum(_DENSITY / _DENSITY.sum(), dim=0)


def chroma_sigmas(u: torch.Tensor) -> torch.Tensor:
    """σ of uniform draws ``u`` in [0, 1) under Chroma's training density (inverse CDF on its grid)."""
    index = torch.searchsorted(_CDF.to(u.device), u.double().contiguous(), right=True)
    return _GRID.to(u.device)[index.clamp(max=len(_GRID) - 1)].float()


class ChromaEngine(FluxEngine):
    """Flow matching on Chroma (see the module docstring)."""

    def encode_prompts(self, encoders, prompts, device):
        pipe = self._text_pipeline(encoders)
        hidden, _, mask, *_ = pipe.encode_prompt(list(prompts), device=torch.device(device),
                                                 do_classifier_free_guidance=False,
                                                 max_sequence_length=self.family.max_sequence_length or 512)
        return TextConditioning(hidden, mask)

    def sigmas(self, u, latents):
        return chroma_sigmas(u)

    def predict(self, denoiser, noisy, sigma, text):
        return super().predict(_ChromaCall(denoiser, text.pooled), noisy, sigma, text)


class _ChromaCall:
    """The transformer as FluxEngine calls it, turned into ChromaPipeline's call: the guidance and pooled inputs
    dropped (Chroma has neither: ``config.guidance_embeds`` is false here), the prompt mask extended over the
    image tokens and passed as ``attention_mask``."""

    def __init__(self, denoiser: torch.nn.Module, prompt_mask: torch.Tensor | None) -> None:
        self.denoiser = denoiser
        self.prompt_mask = prompt_mask
        self.config = SimpleNamespace(guidance_embeds=False)

    def __call__(self, *, hidden_states, guidance, pooled_projections, **arguments):
        mask = None
        if self.prompt_mask is not None:
            batch, image_tokens = hidden_states.shape[:2]
            ones = torch.ones(batch, image_tokens, device=hidden_states.device, dtype=hidden_states.dtype)
            mask = torch.cat([self.prompt_mask.to(hidden_states.device, hidden_states.dtype), ones], dim=1)
        return self.denoiser(hidden_states=hidden_states, attention_mask=mask, **arguments)
