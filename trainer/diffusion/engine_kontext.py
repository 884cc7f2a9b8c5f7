"""Flux.1 Kontext: Flux's flow matching on before/after pairs (``FluxKontextPipeline``'s conditioning).

The target image's latents are what is noised and predicted, as for Flux.1; each control image is encoded by the same
VAE into latents of its own, packed 2×2 into tokens that follow the target's in the sequence, with position ids whose
first axis is 1 (the target's 0) — so the transformer tells the two images apart while they share rows and columns,
exactly as the pipeline builds ``latent_ids`` + ``image_ids``.  The transformer's output is read off the target's
tokens: the loss never sees the control's (there is nothing to denoise there).  The job puts the control latents of a
batch in the engine's extras under ``CONTROL_LATENTS`` (cached with the target's where the latent cache is on); the
text conditioning is the instruction caption's, Flux's own, so captions cache as they do for Flux.1.

Another edit family joins through the same two facts: ``Family.control_images`` (how many references it takes) and an
engine that reads ``extras[CONTROL_LATENTS]`` in ``predict_batch`` (Flux.2 would give each reference its own time
offset in the ids; Qwen-Image-Edit also shows the control image to its VL text encoder, so its captions would cache
per pair, not per caption).
"""

from __future__ import annotations

from trainer.diffusion.engines import CONTROL_LATENTS, FluxEngine


class KontextEngine(FluxEngine):
    """Flow matching on Flux.1 Kontext: the target's tokens, then the control latents' tokens with first id 1."""

    def predict_batch(self, denoiser, noisy, sigma, text, extras):
        return self.predict_in_context(denoiser, noisy, sigma, text, extras.get(CONTROL_LATENTS, ()))

    def edit_arguments(self, references, pictures, width, height):
        # The control at the size trained on: the pipeline would otherwise resize it to one of Kontext's preferred
        # resolutions and draw at a megapixel.
        return {"image": references[0], "max_area": width * height, "_auto_resize": False}
