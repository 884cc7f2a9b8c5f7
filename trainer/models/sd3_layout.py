"""SD 3.5 between diffusers' layout and Stability's single file (``sd3.5_large.safetensors``), for any width.

The transformer's layout facts are ``trainer.families.sd3``'s (``sai_layout``, ``sai_parameters``), the
conversion ``fused_layout``'s.  The whole file, as Stability ships it and ComfyUI's checkpoint loader detects it:

* ``model.diffusion_model.`` — the MMDiT (``joint_blocks.N.{x_block,context_block}``, fused ``qkv``);
* ``first_stage_model.`` — the VAE in the original autoencoder's keys;
* ``text_encoders.clip_l.transformer.`` / ``text_encoders.clip_g.transformer.`` — both CLIPs in Hugging Face's
  layout with the ``text_model.`` level and ``text_projection.weight`` (CLIP-G too: not OpenCLIP's layout);
* ``text_encoders.t5xxl.transformer.`` — T5-XXL's encoder, its embedding once, as ``shared.weight``.

Both directions are exact (renaming, concatenation and slicing only).
"""

from __future__ import annotations

import torch

from trainer.families.sd3 import FAMILY, sai_layout, sai_parameters
from trainer.models import fused_layout

PREFIX = "model.diffusion_model."
T5_TIED = "encoder.embed_tokens.weight"  # T5's input embedding: the same tensor as shared.weight


def to_original(state: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    """A diffusers ``SD3Transformer2DModel`` state dict → SAI keys (no prefix); ``ValueError`` for a key it
    cannot place."""
    return fused_layout.to_original(state, sai_layout(config), sai_parameters(config), "original-layout (SAI)")


def to_diffusers(original: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    """SAI keys (no prefix) → a diffusers ``SD3Transformer2DModel`` state dict (the inverse of
    :func:`to_original`)."""
    return fused_layout.to_diffusers(original, sai_layout(config), sai_parameters(config))


def unknown_keys(original: dict[str, torch.Tensor], config: dict) -> list[str]:
    """SAI keys the transformer of ``config`` has no place for (a file of another size or model)."""
    return fused_layout.unknown_keys(original, sai_layout(config), sai_parameters(config))


def pipeline_to_original(pipeline: object) -> dict[str, torch.Tensor]:
    """A StableDiffusion3Pipeline as Stability's single file (the module docstring's keys): what ComfyUI's
    "Load Checkpoint" takes whole, and what Kamaal's reader loads back bit for bit.  A pipeline without T5
    (``text_encoder_3`` None) writes the two CLIPs only, as Stability's ``*_incl_clips`` files are."""
    from trainer.models.original_layout import clip_to_original, vae_to_original

    transformer = pipeline.transformer  # type: ignore[attr-defined]
    out = {PREFIX + key: value for key, value in to_original(transformer.state_dict(),
                                                             dict(transformer.config)).items()}
    vae = pipeline.vae  # type: ignore[attr-defined]
    out |= vae_to_original(vae.state_dict(), len(vae.config.block_out_channels))
    for spec in FAMILY.text_encoders:
        encoder = getattr(pipeline, spec.component, None)
        if encoder is None:
            continue
        state = encoder.state_dict()
        if spec.tokenizer_kind == "t5":
            if "shared.weight" not in state and T5_TIED in state:
                state = {"shared.weight": state[T5_TIED], **state}
            out |= {spec.single_file_prefix + key: value for key, value in state.items() if key != T5_TIED}
        else:
            out |= clip_to_original(state, spec.single_file_prefix)  # HF layout, text_model. kept
    return out
