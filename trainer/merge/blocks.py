"""UNet block names for per-block merge weights, in the scheme kohya's and SuperMerger's users know.

Every tensor of a model belongs to one block:

* ``IN00`` … ``IN11`` – the UNet's input blocks (SD 1.x/2.x have 12, SDXL 9): ``IN00`` is the first
  convolution, then each level's resnet/attention layers and its downsampler, numbered as in the
  original checkpoints' ``input_blocks.N``;
* ``M00`` – the middle block;
* ``OUT00`` … ``OUT11`` – the output blocks (``output_blocks.N``);
* ``BASE`` – everything else: the text encoder(s), the VAE, the UNet's time/size embeddings and
  its final norm and convolution.

Diffusers folders are numbered the same way (``down_blocks.b.resnets.j`` is ``IN{1 + b·(L+1) + j}``
with L layers per block), so a weight means the same layers in either form.

A transformer (Flux.1, Z-Image, Qwen-Image, SD 3.5, …) has no UNet blocks: its blocks are its repeated blocks as
its weights name them, ``CONTAINER.N`` — in a diffusers folder ``transformer_blocks.3`` and
``single_transformer_blocks.12`` (Flux), ``layers.5`` (Z-Image); in a single file the file's own names (BFL's
``double_blocks.3``/``single_blocks.12``); everything else (embedders, final layer, text encoders, VAE) is ``BASE``.

Weights are given as ``NAME=VALUE`` pairs with shell-style globs, later pairs winning
(``IN*=0.2,IN00=0,OUT*=0.8``), or as one number per block in the order BASE, IN…, M00, OUT…
(SuperMerger's order: 25+1 numbers for SD 1.x/2.x, 19+1 for SDXL).  Blocks not named take α.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable

from trainer.errors import InputError

BASE = "BASE"
# A transformer's repeated block: ``transformer/NAME.N.`` in a folder, ``NAME.N.`` (ComfyUI: after
# ``model.diffusion_model.``) in a single file.
_TRANSFORMER = re.compile(r"(?:transformer/|model\.diffusion_model\.)?([A-Za-z_]+)\.(\d+)\.")
_ORIGINAL = re.compile(r"model\.diffusion_model\.(input_blocks|middle_block|output_blocks)\.(\d+)\.")
_DIFFUSERS = re.compile(r"unet/(down_blocks|up_blocks)\.(\d+)\.(resnets|attentions|downsamplers|upsamplers)\.(\d+)\.")


def block_of(key: str, layers_per_block: int = 2) -> str:
    """The block a tensor belongs to; ``layers_per_block`` matters only for diffusers keys."""
    if m := _ORIGINAL.match(key):
        kind, index = m[1], int(m[2])
        return "M00" if kind == "middle_block" else f"{'IN' if kind == 'input_blocks' else 'OUT'}{index:02d}"
    if key.startswith("unet/conv_in."):
        return "IN00"
    if key.startswith("unet/mid_block."):
        return "M00"
    if m := _DIFFUSERS.match(key):
        direction, level, kind, j = m[1], int(m[2]), m[3], int(m[4])
        per_level = layers_per_block + 1
        if direction == "down_blocks":
            index = (level + 1) * per_level if kind == "downsamplers" else 1 + level * per_level + j
            return f"IN{index:02d}"
        index = level * per_level + (layers_per_block if kind == "upsamplers" else j)
        return f"OUT{index:02d}"
    return BASE


def transformer_block_of(key: str) -> str:
    """The block a transformer family's tensor belongs to: ``CONTAINER.N`` of its repeated blocks, else ``BASE``."""
    if m := _TRANSFORMER.match(key):
        return f"{m[1]}.{int(m[2])}"
    return BASE


def transformer_blocks(keys: Iterable[str], order: Iterable[str] = ()) -> list[str]:
    """A transformer's blocks: BASE, then each container's blocks by index, the containers in ``order`` (the family's
    ``Family.blocks``: Flux's ``transformer_blocks`` before ``single_transformer_blocks``), others by name after them
    (BFL's ``double_blocks`` before ``single_blocks``)."""
    rank = {name: i for i, name in enumerate(order)}
    found = {transformer_block_of(key) for key in keys} - {BASE}

    def place(block: str) -> tuple[int, str, int]:
        container, index = block.rsplit(".", 1)
        return rank.get(container, len(rank)), container, int(index)

    return [BASE, *sorted(found, key=place)]


def _order(name: str) -> tuple[int, int]:
    group = {"BASE": 0, "IN": 1, "M": 2, "OUT": 3}[re.sub(r"\d+", "", name)]
    digits = re.sub(r"\D", "", name)
    return group, int(digits) if digits else 0


def model_blocks(keys: Iterable[str], layers_per_block: int = 2) -> list[str]:
    """The blocks present in a model, in the order BASE, IN…, M00, OUT…"""
    return sorted({block_of(key, layers_per_block) for key in keys}, key=_order)


def parse_block_weights(spec: str, blocks: list[str], alpha: float) -> dict[str, float]:
    """Each block's weight from ``spec`` (see the module docstring); ``InputError`` naming what is wrong."""
    weights = dict.fromkeys(blocks, alpha)
    spec = spec.strip()
    if not spec:
        return weights
    parts = [p.strip() for p in spec.replace(";", ",").split(",") if p.strip()]
    if all("=" not in p for p in parts):
        if len(parts) != len(blocks):
            raise InputError(f"block weights: {len(parts)} numbers given, this model has {len(blocks)} blocks "
                             f"({', '.join(blocks)}); give one per block or NAME=VALUE pairs")
        return {block: _number(value, block) for block, value in zip(blocks, parts, strict=True)}
    for part in parts:
        pattern, sep, value = part.partition("=")
        pattern = pattern.strip().upper()
        if not sep:
            raise InputError(f"block weights: {part!r} is not NAME=VALUE (e.g. IN04=0.3 or OUT*=1)")
        matched = [b for b in blocks if fnmatch.fnmatchcase(b.upper(), pattern)]  # transformer names are lower case
        if not matched:
            raise InputError(f"block weights: {pattern!r} names no block of this model; it has {', '.join(blocks)}")
        for block in matched:
            weights[block] = _number(value, pattern)
    return weights


def _number(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"block weights: {name}={text.strip()!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise InputError(f"block weights: {name} must be a finite number, got {text.strip()}")
    return value
