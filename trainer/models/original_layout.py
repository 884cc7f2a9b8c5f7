"""diffusers → original (CompVis/SGM) key layout: the single-file format A1111 and ComfyUI load.

The inverse of diffusers' own single-file conversion (``diffusers.loaders.single_file_utils``), written
from the well-known key correspondence.  Used to write tiny single-file checkpoints for the loader's
tests, and to export fully fine-tuned models for the tools people already use.

Layout facts: the UNet's ``down_blocks.b.resnets.j`` is ``input_blocks.{1 + b*(L+1) + j}.0`` (L =
layers per block) and its attention ``.1``; the downsampler closes each level as ``input_blocks.n.0.op``.
Up blocks have L+1 layers each, their upsampler sits after the attention (``.2.conv``) or in its place
(``.1.conv``).  The VAE's decoder levels are numbered in reverse.  OpenCLIP keeps q/k/v as one
``in_proj`` matrix and stores ``text_projection`` transposed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from trainer.families import family
from trainer.models.info import Architecture

Tensors = Mapping[str, torch.Tensor]

_RESNET_NAMES = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
                 "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
_UNET_TOP = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2",
             "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}
_VAE_ATTENTION_NAMES = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
_OPEN_CLIP_LAYER_NAMES = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc",
                          "mlp.fc2": "mlp.c_proj", "self_attn.out_proj": "attn.out_proj"}

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."


def _rename_resnet(rest: str) -> str:
    name, _, tail = rest.rpartition(".")
    return f"{_RESNET_NAMES.get(name, name)}.{tail}"


def unet_key_to_original(key: str, layers_per_block: int, attention_levels: set[int]) -> str:
    """One UNet weight's original-layout name, without the ``model.diffusion_model.`` prefix
    (``down_blocks.1.attentions.0.proj_in.weight`` → ``input_blocks.4.1.proj_in.weight``).
    ``attention_levels`` = indices of the up blocks that have cross-attention."""
    per_level = layers_per_block + 1
    module, _, param = key.rpartition(".")
    if module in _UNET_TOP:
        return f"{_UNET_TOP[module]}.{param}"
    if m := re.fullmatch(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
        level, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        index = 1 + level * per_level + j
        return f"input_blocks.{index}.0.{_rename_resnet(rest)}" if kind == "resnets" else \
            f"input_blocks.{index}.1.{rest}"
    if m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
        return f"input_blocks.{(int(m[1]) + 1) * per_level}.0.op.{m[2]}"
    if m := re.fullmatch(r"mid_block\.resnets\.(\d+)\.(.+)", key):
        return f"middle_block.{2 * int(m[1])}.{_rename_resnet(m[2])}"
    if m := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", key):
        return f"middle_block.1.{m[1]}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
        level, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        index = level * per_level + j
        return f"output_blocks.{index}.0.{_rename_resnet(rest)}" if kind == "resnets" else \
            f"output_blocks.{index}.1.{rest}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
        level = int(m[1])
        slot = 2 if level in attention_levels else 1
        return f"output_blocks.{level * per_level + layers_per_block}.{slot}.conv.{m[2]}"
    raise ValueError(f"no original-layout name for UNet weight {key}")


def unet_to_original(unet: Tensors, layers_per_block: int, attention_levels: set[int]) -> dict[str, torch.Tensor]:
    """UNet weights; ``attention_levels`` = indices of the up blocks that have cross-attention."""
    return {UNET_PREFIX + unet_key_to_original(key, layers_per_block, attention_levels): value
            for key, value in unet.items()}


def vae_to_original(vae: Tensors, levels: int) -> dict[str, torch.Tensor]:
    """VAE weights; its attention projections become 1×1 convolutions, as in the original files."""
    out: dict[str, torch.Tensor] = {}
    for key, value in vae.items():
        new = key.replace("conv_norm_out", "norm_out")
        if m := re.fullmatch(r"(encoder|decoder)\.(down|up)_blocks\.(\d+)\.(resnets|\w+samplers)\.(.+)", new):
            part, direction, level, kind, rest = m[1], m[2], int(m[3]), m[4], m[5]
            level = level if direction == "down" else levels - 1 - level  # decoder levels count backwards
            if kind == "resnets":
                new = f"{part}.{direction}.{level}.block.{rest.replace('conv_shortcut', 'nin_shortcut')}"
            else:
                new = f"{part}.{direction}.{level}.{'downsample' if direction == 'down' else 'upsample'}" \
                      f".{rest.removeprefix('0.')}"
        elif m := re.fullmatch(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)", new):
            new = f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
        elif m := re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)\.(weight|bias)", new):
            new = f"{m[1]}.mid.attn_1.{_VAE_ATTENTION_NAMES[m[2]]}.{m[3]}"
            if m[3] == "weight" and m[2] != "group_norm":
                value = value.reshape(*value.shape, 1, 1)
        out[VAE_PREFIX + new] = value
    return out


def _with_text_model_prefix(encoder: Tensors) -> dict[str, torch.Tensor]:
    # transformers ≥ 5.6 flattened CLIPTextModel (no "text_model." level); the original files keep it.
    return {k if k.startswith(("text_model.", "text_projection")) else f"text_model.{k}": v
            for k, v in encoder.items()}


def clip_to_original(encoder: Tensors, prefix: str) -> dict[str, torch.Tensor]:
    """OpenAI CLIP text encoder (SD 1.x, SDXL's first): the HF layout under a prefix."""
    return {prefix + k: v for k, v in _with_text_model_prefix(encoder).items()}


def open_clip_to_original(encoder: Tensors, prefix: str) -> dict[str, torch.Tensor]:
    """OpenCLIP text encoder (SD 2.x, SDXL's second) in OpenCLIP's own layout."""
    encoder = _with_text_model_prefix(encoder)
    out: dict[str, torch.Tensor] = {}
    fixed = {"text_model.embeddings.token_embedding.weight": "token_embedding.weight",
             "text_model.embeddings.position_embedding.weight": "positional_embedding",
             "text_model.final_layer_norm.weight": "ln_final.weight",
             "text_model.final_layer_norm.bias": "ln_final.bias"}
    for key, value in encoder.items():
        if key in fixed:
            out[prefix + fixed[key]] = value
        elif key == "text_projection.weight":
            out[prefix + "text_projection"] = value.T.contiguous()
        elif m := re.fullmatch(r"text_model\.encoder\.layers\.(\d+)\.(.+)\.(weight|bias)", key):
            layer, module, param = m[1], m[2], m[3]
            block = f"{prefix}transformer.resblocks.{layer}."
            if module in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
                if module == "self_attn.q_proj":
                    base = f"text_model.encoder.layers.{layer}.self_attn."
                    qkv = [encoder[f"{base}{p}_proj.{param}"] for p in "qkv"]
                    out[f"{block}attn.in_proj_{param}"] = torch.cat(qkv, dim=0)
            else:
                out[f"{block}{_OPEN_CLIP_LAYER_NAMES[module]}.{param}"] = value
        elif not key.endswith("position_ids"):
            raise ValueError(f"no original-layout name for text encoder weight {key}")
    return out


def open_clip_to_hf(encoder: Tensors) -> dict[str, torch.Tensor]:
    """OpenCLIP's layout (no prefix: ``transformer.resblocks.N.…``, ``token_embedding.weight``…) → Hugging
    Face's, with the ``text_model.`` level: the inverse of :func:`open_clip_to_original`, for any width (q, k
    and v are the three equal row blocks of ``in_proj``).  Keys it has no place for are left out."""
    fixed = {"token_embedding.weight": "text_model.embeddings.token_embedding.weight",
             "positional_embedding": "text_model.embeddings.position_embedding.weight",
             "ln_final.weight": "text_model.final_layer_norm.weight",
             "ln_final.bias": "text_model.final_layer_norm.bias"}
    layer_names = {original: hf for hf, original in _OPEN_CLIP_LAYER_NAMES.items()}
    out: dict[str, torch.Tensor] = {}
    for key, value in encoder.items():
        if key in fixed:
            out[fixed[key]] = value
        elif key == "text_projection":
            out["text_projection.weight"] = value.T.contiguous()
        elif m := re.fullmatch(r"transformer\.resblocks\.(\d+)\.(.+)\.(weight|bias)", key):
            layer, module, param = m[1], m[2], m[3]
            base = f"text_model.encoder.layers.{layer}."
            if module in layer_names:
                out[f"{base}{layer_names[module]}.{param}"] = value
        elif m := re.fullmatch(r"transformer\.resblocks\.(\d+)\.attn\.in_proj_(weight|bias)", key):
            base = f"text_model.encoder.layers.{m[1]}.self_attn."
            for part, tensor in zip("qkv", value.chunk(3, dim=0), strict=True):
                out[f"{base}{part}_proj.{m[2]}"] = tensor.clone()  # its own storage: saved on its own later
    return out


def pipeline_to_original(pipeline: object, architecture: Architecture) -> dict[str, torch.Tensor]:
    """A whole StableDiffusion(XL)Pipeline as one original-layout state dict."""
    unet, config = pipeline.unet, pipeline.unet.config  # type: ignore[attr-defined]
    attention_levels = {i for i, kind in enumerate(config.up_block_types) if "CrossAttn" in kind}
    out = unet_to_original(unet.state_dict(), config.layers_per_block, attention_levels)
    vae = pipeline.vae  # type: ignore[attr-defined]
    out |= vae_to_original(vae.state_dict(), len(vae.config.block_out_channels))
    for encoder in family(architecture).text_encoders:
        convert = open_clip_to_original if encoder.open_clip else clip_to_original
        out |= convert(getattr(pipeline, encoder.component).state_dict(), encoder.single_file_prefix)
    return out
