"""How ERNIE-Image trains: :class:`ErnieImageEngine`, Flux.2's latents (the VAE is Flux.2's) with the prompts and
transformer call of diffusers' ``ErnieImagePipeline``.

* Latents: as :class:`Flux2Engine` (patchified 2×2, normalised by the VAE's batch-norm statistics, unpatchified
  again), but with ε = 1e-5 under the square root: the pipeline decodes with that value, not the VAE config's 1e-4
  (its comment: the value the model was trained with).
* Prompts: the pipeline's own ``encode_prompt`` — each prompt's tokens (with Tekken's BOS), no padding, the
  penultimate hidden state — kept as rows of their own lengths (``TextConditioning.from_sequences``), so a caption
  caches as it is and a batch is padded with its mask.
* The transformer: the patchified latents as they are (it takes (batch, 128, h, w) and flattens them itself), the
  prompts padded with their lengths (``text_lens``: the mask of the text tokens, and where the image's rotary
  positions start), the time σ·1000 in the latents' dtype, as the pipeline passes it; its output is the velocity.
"""

from __future__ import annotations

import torch

from trainer.diffusion.engine_flux2 import Flux2Engine, patchified, unpatchified
from trainer.diffusion.text import TextConditioning

# ErnieImagePipeline's decode: sqrt(running_var + 1e-5), whatever the VAE config says.
PIPELINE_BATCH_NORM_EPS = 1e-5


class ErnieImageEngine(Flux2Engine):
    """Flow matching on ERNIE-Image (see the module's docstring); σ and the loss are :class:`SD3Engine`'s."""

    def batch_norm_eps(self) -> float:
        return PIPELINE_BATCH_NORM_EPS

    def encode_prompts(self, encoders, prompts, device):
        pipe = self._text_pipeline(encoders)
        return TextConditioning.from_sequences(pipe.encode_prompt(list(prompts), torch.device(device)))

    def predict(self, denoiser, noisy, sigma, text):
        hidden = text.hidden.to(noisy.device, noisy.dtype)
        if text.mask is None:  # every prompt as long as the longest
            lengths = torch.full((hidden.shape[0],), hidden.shape[1], dtype=torch.long)
        else:
            lengths = text.mask.sum(dim=1)
        out = denoiser(hidden_states=patchified(noisy), timestep=(sigma * 1000).to(noisy.device, noisy.dtype),
                       text_bth=hidden, text_lens=lengths.to(noisy.device), return_dict=False)[0]
        return unpatchified(out)
