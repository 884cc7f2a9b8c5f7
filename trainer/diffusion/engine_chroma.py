"""Chroma's engine: :class:`~trainer.diffusion.engines.FluxEngine` (packed latents, position ids, flow matching)
with the transformer called as ``ChromaPipeline`` calls it, and lodestones' timestep density.

* Prompts: the pipeline's own ``encode_prompt`` — T5 run with the tokenizer's mask, and the mask the transformer
  gets: the prompt's tokens and the first padding token.  Only those rows are kept (the rest of the 512 are dropped
  from attention anyway), as a variable-length ``TextConditioning`` like Z-Image's: a caption is cached in a few
  dozen rows instead of 512, and a step attends over that many text tokens.
* The mask drops the padding, as Chroma was trained (lodestones' ``flow``) and as SimpleTuner and ai-toolkit
  train it.  diffusers 0.42.1's pipeline casts it to the embeddings' float dtype, which attention *adds*
  to its scores: padding is then attended (diffusers issues #12116, #13619; short prompts suffer most).  The engine
  passes a boolean mask, and installs on the transformer a pre-hook that reads any float mask it is given as
  keep (> 0) / drop, so the previews and class images the pipeline draws condition as training does.  A diffusers
  user gets the same by passing the pipeline boolean ``prompt_attention_mask`` / ``negative_prompt_attention_mask``.
* The call: no guidance and no pooled input; ``attention_mask`` is the prompt mask followed by the image tokens.
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


def keep_drop_masks(transformer: torch.nn.Module) -> None:
    """Make ``transformer`` read a float ``attention_mask`` as keep (> 0) / drop, once (see the module docstring)."""
    if getattr(transformer, "_kamaal_keep_drop_masks", False):
        return

    def as_keep_drop(module, args, kwargs):
        mask = kwargs.get("attention_mask")
        if mask is not None and mask.is_floating_point():
            kwargs["attention_mask"] = mask > 0
        return args, kwargs

    transformer.register_forward_pre_hook(as_keep_drop, with_kwargs=True)
    transformer._kamaal_keep_drop_masks = True


class ChromaEngine(FluxEngine):
    """Flow matching on Chroma (see the module docstring)."""

    def __init__(self, parts) -> None:
        super().__init__(parts)
        keep_drop_masks(parts.unet)

    def encode_prompts(self, encoders, prompts, device):
        pipe = self._text_pipeline(encoders)
        hidden, _, mask, *_ = pipe.encode_prompt(list(prompts), device=torch.device(device),
                                                 do_classifier_free_guidance=False,
                                                 max_sequence_length=self.family.max_sequence_length or 512)
        return TextConditioning.from_sequences([row[keep > 0] for row, keep in zip(hidden, mask, strict=True)])

    def sigmas(self, u, latents):
        return chroma_sigmas(u)

    def predict(self, denoiser, noisy, sigma, text):
        return super().predict(_ChromaCall(denoiser, text.mask), noisy, sigma, text)


class _ChromaCall:
    """The transformer as FluxEngine calls it, turned into ChromaPipeline's call: the guidance and pooled inputs
    dropped (Chroma has neither: ``config.guidance_embeds`` is false here), the prompt mask extended over the
    image tokens and passed as a boolean ``attention_mask``."""

    def __init__(self, denoiser: torch.nn.Module, prompt_mask: torch.Tensor | None) -> None:  # None: every token
        self.denoiser = denoiser
        self.prompt_mask = prompt_mask
        self.config = SimpleNamespace(guidance_embeds=False)

    def __call__(self, *, hidden_states, guidance, pooled_projections, **arguments):
        mask = None
        if self.prompt_mask is not None:
            batch, image_tokens = hidden_states.shape[:2]
            ones = torch.ones(batch, image_tokens, device=hidden_states.device, dtype=torch.bool)
            mask = torch.cat([self.prompt_mask.to(hidden_states.device).bool(), ones], dim=1)
        return self.denoiser(hidden_states=hidden_states, attention_mask=mask, **arguments)
