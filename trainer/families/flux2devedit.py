"""Flux.2 dev edit: Flux.2 dev (``flux2dev``'s model and files) trained on before/after pairs — the target, an
instruction caption, and up to six reference images (``control``, ``control_2``, …).  ``Flux2Pipeline(image=[…])``
treats them as Flux.2 klein's pipeline does (``flux2kleinedit``): each encoded by the VAE as the target is, packed
after the noisy target's tokens with position ids whose first (time) axis is 10, 20, …, the prediction read off the
target's tokens — so the engine is klein edit's; dev adds only its guidance input, held at 1.0 in training as for
text-to-image dev.

Six, not klein's four: diffusers' pipeline sets no limit, and Black Forest Labs recommend at most six references for
dev (each one adds as many tokens as the target: 4096 at 1024 px).  Its own registry entry, as klein edit's is (the
architecture list says which run is which; the health check then demands a control for every target), and
everything else is dev's: the model (a dev folder or BFL file loads as this family when the config names it,
``files_of``), the prompts (the instruction alone: the pipeline shows the references to the transformer only, so
captions cache per caption), LoRA names and both files."""

from dataclasses import replace

from trainer.families import flux2dev
from trainer.families.base import GB

FAMILY = replace(
    flux2dev.FAMILY,
    name="flux2devedit",
    display_name="Flux.2 dev edit",
    variant_of="flux2dev",
    modes=("lora",),  # an edit LoRA; a full or frozen run's file is dev's, which nothing tells apart
    engine="trainer.diffusion.engine_flux2:Flux2EditEngine",
    file_markers=(),  # its files are dev's: detected as dev, loaded as the edit family when the config names it
    files_of="flux2dev",
    single_file_writer=None,
    control_images=6,  # BFL recommend at most six reference images for dev; Flux2Pipeline itself sets no limit
    memory=replace(
        flux2dev.FAMILY.memory,
        # One reference at the target's size doubles the image tokens: twice dev's activations per target pixel
        # (each further reference adds as much again; the presets assume one).
        activation_bytes_per_latent_pixel=72 * GB / 128**2),
)
