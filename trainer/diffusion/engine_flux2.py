"""How Flux.2 trains (klein and dev): :class:`Flux2Engine`, SD 3's flow matching with the latents, prompts and
transformer call of diffusers' Flux.2 pipelines.

* Latents: the VAE's mean (the pipeline encodes with ``argmax``), patchified 2×2 into 4× the channels, normalised by
  the VAE's batch-norm running statistics (``vae.bn``, per patchified channel, ``batch_norm_eps``) — and unpatchified
  again, so the job's latents keep the VAE's shape (32 channels at 1/8 of the image side): the token count
  ``SD3Engine.sigmas`` derives the resolution shift from, (h/2)·(w/2), is then the transformer's sequence length,
  as musubi-tuner's ``flux2_shift`` counts it.  Fresh Gaussian noise is the same in either arrangement.
* Prompts: the pipeline's own ``encode_prompt`` (every prompt padded to 512 tokens, the layers the pipeline reads).
* The transformer: patchified and packed as ``prepare_latents`` packs them, position ids (t, h, w, l) for the image
  and (0, 0, 0, token) for the text, the time σ (the pipeline passes t / 1000), the guidance input only where the
  model has one (dev, at 1.0 as musubi-tuner trains it; klein has none), and its output, the velocity ε − x₀,
  unpacked the other way.
* Edit pairs (:class:`Flux2EditEngine`, ``flux2kleinedit`` and ``flux2devedit``): each control image is a reference
  image of the pipeline's, its latents packed after the target's with the first position id 10, 20, …; the loss reads
  the target.
"""

from __future__ import annotations

import torch

from trainer.diffusion.engines import CONTROL_LATENTS, FLUX_TRAINING_GUIDANCE, SD3Engine, _unwrapped
from trainer.diffusion.text import TextConditioning

# The first position id of the i-th reference image's tokens is this × (i + 1): ``Flux2Pipeline._prepare_image_ids``'
# ``scale``, which keeps references apart from the target (0) and from one another.
REFERENCE_TIME_STEP = 10


def patchified(latents: torch.Tensor) -> torch.Tensor:
    """(batch, c, h, w) → (batch, 4c, h/2, w/2), channel-major as ``Flux2KleinPipeline._patchify_latents``."""
    batch, channels, height, width = latents.shape
    return (latents.view(batch, channels, height // 2, 2, width // 2, 2).permute(0, 1, 3, 5, 2, 4)
            .reshape(batch, channels * 4, height // 2, width // 2))


def unpatchified(latents: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`patchified`."""
    batch, channels, height, width = latents.shape
    return (latents.reshape(batch, channels // 4, 2, 2, height, width).permute(0, 1, 4, 2, 5, 3)
            .reshape(batch, channels // 4, height * 2, width * 2))


class Flux2Engine(SD3Engine):
    """Flow matching on Flux.2 (see the module's docstring)."""

    def latents(self, mean: torch.Tensor) -> torch.Tensor:
        vae = self.parts.vae
        patches = patchified(mean)
        shape = (1, -1, 1, 1)
        average = vae.bn.running_mean.view(shape).to(patches.device, patches.dtype)
        spread = torch.sqrt(vae.bn.running_var.view(shape) + self.batch_norm_eps()).to(patches.device, patches.dtype)
        return unpatchified((patches - average) / spread)

    def batch_norm_eps(self) -> float:
        """The ε under the statistics' square root: the VAE's own, as Flux.2's pipelines decode with it."""
        return float(self.parts.vae.config.batch_norm_eps)

    def encode_prompts(self, encoders, prompts, device):
        pipe = self._text_pipeline(encoders)
        embeddings, _ = pipe.encode_prompt(list(prompts), device=torch.device(device),
                                           max_sequence_length=self.family.max_sequence_length or 512)
        return TextConditioning(embeddings)

    def predict(self, denoiser, noisy, sigma, text):
        return self.predict_with_references(denoiser, noisy, sigma, text, ())

    def predict_with_references(self, denoiser, noisy: torch.Tensor, sigma: torch.Tensor, text: TextConditioning,
                                references: tuple[torch.Tensor, ...] | list[torch.Tensor]) -> torch.Tensor:
        """The velocity of ``noisy``'s tokens, with each of ``references`` (latents as :meth:`latents` gives them,
        any size) packed after them as ``Flux2Pipeline.prepare_image_latents`` packs its reference images: position
        ids (t, h, w, 0) with t = 10, 20, … (``_prepare_image_ids``; the target's t is 0); the output is read off the
        target's tokens only."""
        patches = patchified(noisy)
        batch, channels, height, width = patches.shape
        tokens = [patches.reshape(batch, channels, height * width).permute(0, 2, 1)]
        ids = [torch.cartesian_prod(torch.arange(1), torch.arange(height), torch.arange(width), torch.arange(1))]
        for i, reference in enumerate(references):
            packed = patchified(reference.to(noisy.dtype))
            tokens.append(packed.flatten(2).permute(0, 2, 1))
            ids.append(torch.cartesian_prod(torch.tensor([REFERENCE_TIME_STEP * (i + 1)]),
                                            torch.arange(packed.shape[-2]), torch.arange(packed.shape[-1]),
                                            torch.arange(1)))
        image_ids = torch.cat(ids)
        text_ids = torch.cartesian_prod(torch.arange(1), torch.arange(1), torch.arange(1),
                                        torch.arange(text.hidden.shape[1]))
        guidance = None
        if _unwrapped(denoiser).config.guidance_embeds:
            guidance = torch.full((batch,), FLUX_TRAINING_GUIDANCE, device=noisy.device, dtype=torch.float32)
        out = denoiser(hidden_states=torch.cat(tokens, dim=1), timestep=sigma.to(noisy.device, noisy.dtype),
                       guidance=guidance, encoder_hidden_states=text.hidden.to(noisy.dtype),
                       txt_ids=text_ids.to(noisy.device)[None].expand(batch, -1, -1),
                       img_ids=image_ids.to(noisy.device)[None].expand(batch, -1, -1), return_dict=False)[0]
        out = out[:, : height * width]
        return unpatchified(out.permute(0, 2, 1).reshape(batch, channels, height, width))


class Flux2EditEngine(Flux2Engine):
    """Flux.2 trained on before/after pairs: the batch's control latents are its reference images
    (``Flux2KleinPipeline``'s and ``Flux2Pipeline``'s ``image=[…]``), one tensor per reference in
    ``extras[CONTROL_LATENTS]``."""

    def predict_batch(self, denoiser, noisy, sigma, text, extras):
        return self.predict_with_references(denoiser, noisy, sigma, text, extras.get(CONTROL_LATENTS, ()))

    def edit_arguments(self, references, pictures, width, height):
        # Every reference as a list: at the target's size (≤ 1 MP, a multiple of 16) the pipeline takes each as it
        # is, as training encodes it; it would scale a larger one down to a megapixel.
        return {"image": list(references)}
