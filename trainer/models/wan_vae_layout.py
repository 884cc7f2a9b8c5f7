"""The key layout of Wan 2.1's video VAE as its original code names it — the layout of ComfyUI's
``qwen_image_vae.safetensors`` (Qwen-Image's VAE is a Wan 2.1 VAE) — against diffusers' (``AutoencoderKLWan``,
``AutoencoderKLQwenImage``: the same keys), both ways, for any depth.

Facts (from diffusers' ``convert_wan_vae_to_diffusers``, which knows the real model's shape only, and ComfyUI's
``comfy/ldm/wan/vae.py``): a residual block is one ``residual`` sequence (RMS norm 0, conv 2, RMS norm 3, conv 6)
and a ``shortcut``; the encoder's ``downsamples`` and the decoder's ``upsamples`` are flat lists — diffusers keeps the
encoder's flat and groups the decoder's into ``up_blocks`` of ``num_res_blocks + 1`` resnets, each but the last
followed by its upsampler; ``middle`` is resnet, attention, resnet; ``head`` is norm 0, conv 2; ``conv1`` and
``conv2`` outside both are the quant and post-quant convolutions.
"""

from __future__ import annotations

import re

_RESNET = (("norm1.gamma", "residual.0.gamma"), ("conv1.", "residual.2."), ("norm2.gamma", "residual.3.gamma"),
           ("conv2.", "residual.6."), ("conv_shortcut.", "shortcut."))
_OUTSIDE = (("quant_conv.", "conv1."), ("post_quant_conv.", "conv2."))


def _resnet(rest: str) -> str:
    for diffusers, original in _RESNET:
        if rest.startswith(diffusers):
            return original + rest[len(diffusers):]
    return rest  # a resample's own names (resample.1, time_conv) are the same in both


def original_key(key: str, num_res_blocks: int) -> str:
    """One diffusers key of the VAE → its name in the original layout."""
    for diffusers, original in _OUTSIDE:
        if key.startswith(diffusers):
            return original + key[len(diffusers):]
    part, _, rest = key.partition(".")
    if rest.startswith("conv_in."):
        return f"{part}.conv1.{rest.removeprefix('conv_in.')}"
    if rest.startswith("norm_out."):
        return f"{part}.head.0.{rest.removeprefix('norm_out.')}"
    if rest.startswith("conv_out."):
        return f"{part}.head.2.{rest.removeprefix('conv_out.')}"
    if m := re.match(r"mid_block\.resnets\.(\d+)\.(.*)", rest):
        return f"{part}.middle.{2 * int(m[1])}.{_resnet(m[2])}"
    if m := re.match(r"mid_block\.attentions\.0\.(.*)", rest):
        return f"{part}.middle.1.{m[1]}"
    if m := re.match(r"down_blocks\.(\d+)\.(.*)", rest):
        return f"{part}.downsamples.{m[1]}.{_resnet(m[2])}"
    per_block = num_res_blocks + 2  # num_res_blocks + 1 resnets, then the upsampler
    if m := re.match(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", rest):
        return f"{part}.upsamples.{int(m[1]) * per_block + int(m[2])}.{_resnet(m[3])}"
    if m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.(.*)", rest):
        return f"{part}.upsamples.{int(m[1]) * per_block + num_res_blocks + 1}.{m[2]}"
    return key


def to_original(state: dict, num_res_blocks: int) -> dict:
    """A diffusers VAE state dict → the original keys (ComfyUI's file)."""
    return {original_key(key, num_res_blocks): value for key, value in state.items()}


def to_diffusers(original: dict, diffusers_keys: list[str], num_res_blocks: int) -> dict:
    """Original keys → diffusers' (the inverse of :func:`to_original` over the model's own keys); a key the model
    has no place for is kept as it is, for the loader to name."""
    back = {original_key(key, num_res_blocks): key for key in diffusers_keys}
    return {back.get(key, key): value for key, value in original.items()}
