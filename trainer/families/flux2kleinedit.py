"""Flux.2 klein edit: Flux.2 klein (``flux2klein``'s model and files) trained on before/after pairs — the target, an
instruction caption, and up to four reference images (``control``, ``control_2``, …: BFL names four as klein's most).
``Flux2KleinPipeline(image=[…])`` encodes each reference by the VAE as the target is encoded (patchified 2×2,
normalised by the batch-norm statistics), packs its tokens after the noisy target's, with position ids whose first
(time) axis is 10 for the first reference, 20 for the second, … (the target's is 0), and reads the prediction off the
target's tokens.

Its own registry entry rather than a mode of klein, so the Train page's architecture list says which run is which: an
edit family makes the health check demand a control for every target (``Family.control_images``), and a text-to-image
klein run must stay possible on the same folder of images.  Everything else is klein's: the model (a klein folder or
BFL file loads as this family when the config names it, ``files_of``), the prompts (the instruction alone — the
pipeline shows the references to the transformer only, so captions cache per caption), LoRA names and both files."""

from dataclasses import replace

from trainer.families import flux2klein
from trainer.families.base import GB

FAMILY = replace(
    flux2klein.FAMILY,
    name="flux2kleinedit",
    display_name="Flux.2 klein edit",
    variant_of="flux2klein",
    modes=("lora",),  # an edit LoRA; a full or frozen run's file is klein's, which nothing tells apart
    engine="trainer.diffusion.engine_flux2:Flux2EditEngine",
    file_markers=(),  # its files are klein's: detected as klein, loaded as the edit family when the config names it
    file_lacks=(),
    files_of="flux2klein",
    single_file_writer=None,
    control_images=4,  # BFL: klein 4B and 9B take up to four reference images
    memory=replace(
        flux2klein.FAMILY.memory,
        # One reference at the target's size doubles the image tokens: twice klein's activations per target pixel
        # (each further reference adds as much again; the presets assume one).
        activation_bytes_per_latent_pixel=16 * GB / 128**2),
)
