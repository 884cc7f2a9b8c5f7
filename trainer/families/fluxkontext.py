"""Flux.1 Kontext [dev] (12 B): Flux.1 dev's transformer, fine-tuned to edit — the control image's latents are packed
as extra tokens after the noisy target's, with position ids whose first axis is 1 (the target's is 0), and the
prediction is read off the target's tokens only (``FluxKontextPipeline``).  Trained on before/after pairs: an
instruction caption, a control image and the wanted result.

A variant of Flux.1 (``flux.FAMILY``): the same VAE, CLIP-L and T5, flow matching, layout and LoRA names (a Kontext
LoRA is a Flux.1 LoRA by its keys; the kohya file is written by Flux's BFL layout).  Its own: the pipeline class, the
engine (``diffusion/engine_kontext.py``), the registry's pair facts, and its single file — BFL's
``flux1-kontext-dev.safetensors`` has Flux.1 dev's keys, so the config's ``model.architecture`` says which it is."""

from dataclasses import replace

from trainer.families import flux
from trainer.families.base import GB

FAMILY = replace(
    flux.FAMILY,
    name="fluxkontext",
    display_name="Flux.1 Kontext",
    variant_of="flux",
    modes=("lora",),  # an edit LoRA; full and frozen-layer runs write Flux.1's file, which nothing reads as Kontext
    engine="trainer.diffusion.engine_kontext:KontextEngine",
    pipeline_class="FluxKontextPipeline",
    # FluxKontextPipeline's own defaults: distilled guidance 2.5, 28 steps.
    sample_defaults={"guidance_scale": 2.5, "inference_steps": 28},
    single_file_writer=None,
    single_file_reader="trainer.models.flux_single:load_kontext_single_file",
    file_markers=(),  # its file is Flux.1 dev's: detected as Flux.1, loaded as Kontext when the config names it
    files_of="flux",
    config_folders={"flow_matching": "flux-kontext-dev"},
    control_images=1,  # FluxKontextPipeline takes one control image
    memory=replace(
        flux.FAMILY.memory,
        # The control image's tokens double the image part of the sequence: twice Flux.1's activations per target
        # pixel (the attention's quadratic share is small beside the MLPs' at these lengths with flash attention).
        activation_bytes_per_latent_pixel=36 * GB / 128**2),
    # The tiny model's VAE scales its latents to about unit spread, as the real VAE's factor does its own (Flux.1's
    # tiny VAE keeps the real factor and gives latents of spread 0.12: an image's content is lost in the noise, and a
    # test could not see whether the model reads the control).
    tiny={**flux.FAMILY.tiny, "vae": {**flux.FAMILY.tiny["vae"], "scaling_factor": 3.0}},
)
