"""The names a LoRA module has in the files other tools read, and the way back.

One module, three spellings:

* **The model's own path** (diffusers): ``down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q``.
* **kohya's name**: ``lora_unet_`` + the module's path *in the model kohya trains*, dots → underscores.
  For SD 1.x/2.x kohya trains diffusers' UNet layout, so the names follow it
  (``lora_unet_down_blocks_1_attentions_0_…``).  For SDXL kohya trains the original (SAI/SGM) UNet,
  so its names follow the single-file layout: ``lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q``.
  kohya's own loaders (``--network_weights``, ``sdxl_merge_lora.py``) do not convert, so an SDXL file
  with diffusers-style names is silently left untrained there; ComfyUI and Automatic1111 read both.
  Text encoders: ``lora_te_`` (one encoder) or ``lora_te1_``/``lora_te2_`` (SDXL), always with the
  ``text_model`` level.
* **diffusers' file keys** (``diffusers_file_keys``): see below.

In memory (``trainer.merge.lora_files.LoraSet``) every module is keyed by its kohya name in the
*diffusers-style* spelling, for every family ("canonical").  SAI names become canonical when a file is
read (``canonical_name``) and go back when an SDXL kohya file is written (``sai_name``).  SAI names are
read for the standard layout of two layers per block, which every SD 1.x/2.x/SDXL model has.

The diffusers file is written so that diffusers *and* ComfyUI apply every module:

* UNet attention projections in the attention-processor spelling
  ``unet.….attn1.processor.to_q_lora.down.weight`` (ComfyUI maps diffusers attention keys only so);
* every other UNet module as ``unet.….conv1.lora.down.weight``;
* text encoders as ``text_encoder.text_model.….q_proj.lora_linear_layer.down.weight``.

No key uses peft's ``lora_A``: diffusers converts a file's old-style keys only when its *first* key lacks
``lora_A``, so a file that mixes the two loses whichever half sorts second.  The alpha/rank scale is
baked into the up weights (ComfyUI never reads metadata), so every reader applies scale 1.

Light: plain string work, importable without torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from trainer.errors import InputError

UNET_PREFIX = "lora_unet_"
# diffusers component → kohya prefix, for models with one and with two text encoders.
TEXT_ENCODER_PREFIXES = {False: {"text_encoder": "lora_te"},
                         True: {"text_encoder": "lora_te1", "text_encoder_2": "lora_te2"}}
COMPONENTS = ("unet", "text_encoder", "text_encoder_2")
# Words in SD's UNet and CLIP module names that contain an underscore (re-joined when the dots come back).
_COMPOUNDS = {
    "down_blocks", "up_blocks", "mid_block", "transformer_blocks", "to_q", "to_k", "to_v", "to_out",
    "proj_in", "proj_out", "conv_in", "conv_out", "conv_shortcut", "time_emb_proj", "time_embedding",
    "linear_1", "linear_2", "add_embedding", "conv_norm_out", "text_model", "self_attn", "q_proj", "k_proj",
    "v_proj", "out_proj", "layer_norm1", "layer_norm2", "final_layer_norm", "token_embedding",
    "position_embedding", "text_projection", "add_k_proj", "add_v_proj",
}
# The original layout's names for the parts of a ResNet block and the UNet's top-level layers,
# in the underscore spelling of kohya names.
_RESNET_FROM_SAI = {"in_layers_0": "norm1", "in_layers_2": "conv1", "emb_layers_1": "time_emb_proj",
                    "out_layers_0": "norm2", "out_layers_3": "conv2", "skip_connection": "conv_shortcut"}
_TOP_FROM_SAI = {"time_embed_0": "time_embedding_linear_1", "time_embed_2": "time_embedding_linear_2",
                 "label_emb_0_0": "add_embedding_linear_1", "label_emb_0_2": "add_embedding_linear_2",
                 "input_blocks_0_0": "conv_in", "out_0": "conv_norm_out", "out_2": "conv_out"}
_SAI_START = re.compile(r"(input_blocks|middle_block|output_blocks)_\d|time_embed_\d|label_emb_\d|out_[02]$")
_ATTENTION_PROJECTION = re.compile(r"(.*\.attn[12])\.(to_q|to_k|to_v|to_out\.0)")


@dataclass(frozen=True)
class UnetLayout:
    """What the original layout's numbering depends on: layers per block, and which up levels have
    attention (their upsampler sits after it, ``…2.conv``, else in its place, ``…1.conv``)."""

    layers_per_block: int = 2
    up_attention_levels: frozenset[int] = frozenset({0, 1})

    @classmethod
    def from_config(cls, config: Any) -> UnetLayout:
        levels = frozenset(i for i, kind in enumerate(config.up_block_types) if "CrossAttn" in kind)
        return cls(int(config.layers_per_block), levels)


# Every SDXL model (the real one and the tiny test one) has attention at every up level that has an
# upsampler; SD 1.x/2.x files keep diffusers-style names, so they need no layout.
SDXL_LAYOUT = UnetLayout(2, frozenset({0, 1}))


def dotted(underscored: str) -> str:
    """``down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q`` → the dotted module path."""
    words = underscored.split("_")
    parts: list[str] = []
    i = 0
    while i < len(words):
        for width in (3, 2):
            joined = "_".join(words[i: i + width])
            if i + width <= len(words) and joined in _COMPOUNDS:
                parts.append(joined)
                i += width
                break
        else:
            parts.append(words[i])
            i += 1
    return ".".join(parts)


def kohya_name(component: str, module: str, two_encoders: bool) -> str:
    """The canonical kohya name: ``("unet", "down_blocks.0.….to_q")`` → ``lora_unet_down_blocks_0_…_to_q``;
    text encoders always get the ``text_model`` level (transformers 5 flattened CLIP, files did not)."""
    if component == "unet":
        return UNET_PREFIX + module.replace(".", "_")
    if not module.startswith(("text_model.", "text_projection")):
        module = "text_model." + module
    prefixes = TEXT_ENCODER_PREFIXES[two_encoders]
    if component not in prefixes:
        raise InputError(f"LoRA weights for {component!r} do not fit a model with "
                         f"{'two text encoders' if two_encoders else 'one text encoder'}")
    return f"{prefixes[component]}_{module.replace('.', '_')}"


def component_and_path(name: str) -> tuple[str, str]:
    """Canonical kohya name → (diffusers component, dotted module path)."""
    for prefix, component in (("lora_unet_", "unet"), ("lora_te1_", "text_encoder"),
                              ("lora_te2_", "text_encoder_2"), ("lora_te_", "text_encoder")):
        if name.startswith(prefix):
            return component, dotted(name[len(prefix):])
    raise InputError(f"LoRA module {name} has no known prefix (lora_unet_, lora_te_, lora_te1_, lora_te2_)")


def diffusers_key(name: str) -> str:
    """``lora_unet_down_blocks_0_attentions_0_…_to_q`` → ``unet.down_blocks.0.attentions.0.….to_q``"""
    component, path = component_and_path(name)
    return f"{component}.{path}"


# ---- the original (SAI) layout's names, for SDXL kohya files ----------------------------------------

def sai_name(name: str, layout: UnetLayout = SDXL_LAYOUT) -> str:
    """A canonical UNet module name in kohya's SDXL spelling (other names are returned unchanged)."""
    if not name.startswith(UNET_PREFIX):
        return name
    from trainer.models.original_layout import unet_key_to_original

    path = dotted(name[len(UNET_PREFIX):])
    original = unet_key_to_original(f"{path}.weight", layout.layers_per_block, set(layout.up_attention_levels))
    return UNET_PREFIX + original.removesuffix(".weight").replace(".", "_")


def is_sai_name(name: str) -> bool:
    return name.startswith(UNET_PREFIX) and bool(_SAI_START.match(name[len(UNET_PREFIX):]))


def canonical_name(name: str, layers_per_block: int = 2) -> str:
    """A kohya name in the canonical (diffusers-style) spelling: SAI UNet names are translated,
    everything else is returned unchanged.  A SAI name of no known module is returned as it is, so the
    caller can refuse it by name."""
    if not is_sai_name(name):
        return name
    rest = name[len(UNET_PREFIX):]
    translated = _from_sai(rest, layers_per_block + 1)
    return UNET_PREFIX + translated if translated else name


def _from_sai(rest: str, per_level: int) -> str | None:
    if rest in _TOP_FROM_SAI:
        return _TOP_FROM_SAI[rest]
    if m := re.fullmatch(r"input_blocks_(\d+)_(\d+)_(.+)", rest):
        index, slot, tail = int(m[1]), int(m[2]), m[3]
        if index % per_level == 0:
            return f"down_blocks_{index // per_level - 1}_downsamplers_0_conv" if (slot, tail) == (0, "op") else None
        level, j = divmod(index - 1, per_level)
        if slot == 0:
            part = _RESNET_FROM_SAI.get(tail)
            return f"down_blocks_{level}_resnets_{j}_{part}" if part else None
        return f"down_blocks_{level}_attentions_{j}_{tail}" if slot == 1 else None
    if m := re.fullmatch(r"middle_block_(\d)_(.+)", rest):
        index, tail = int(m[1]), m[2]
        if index == 1:
            return f"mid_block_attentions_0_{tail}"
        part = _RESNET_FROM_SAI.get(tail)
        return f"mid_block_resnets_{index // 2}_{part}" if part and index in (0, 2) else None
    if m := re.fullmatch(r"output_blocks_(\d+)_(\d+)_(.+)", rest):
        index, slot, tail = int(m[1]), int(m[2]), m[3]
        level, j = divmod(index, per_level)
        if tail == "conv" and slot in (1, 2):
            return f"up_blocks_{level}_upsamplers_0_conv"
        if slot == 0:
            part = _RESNET_FROM_SAI.get(tail)
            return f"up_blocks_{level}_resnets_{j}_{part}" if part else None
        return f"up_blocks_{level}_attentions_{j}_{tail}" if slot == 1 else None
    return None


# ---- diffusers file keys ----------------------------------------------------------------------------

# Read: every spelling diffusers, peft and older diffusers versions write, as (down suffix, up suffix).
_DIFFUSERS_PARTS = ((".lora_A.weight", ".lora_B.weight"), (".lora.down.weight", ".lora.up.weight"),
                    (".lora_linear_layer.down.weight", ".lora_linear_layer.up.weight"),
                    ("_lora.down.weight", "_lora.up.weight"))
DIFFUSERS_DOWN_SUFFIXES = tuple(down for down, _ in _DIFFUSERS_PARTS)
_UNET_ROOTS = ("down_blocks.", "mid_block.", "up_blocks.", "conv_in.", "conv_out.", "time_embedding.",
               "add_embedding.")


def diffusers_file_keys(name: str) -> tuple[str, str]:
    """The (down, up) keys of a canonical module in Kamaal's diffusers file (see the module docstring)."""
    component, path = component_and_path(name)
    if component != "unet":
        return (f"{component}.{path}.lora_linear_layer.down.weight",
                f"{component}.{path}.lora_linear_layer.up.weight")
    if m := _ATTENTION_PROJECTION.fullmatch(path):
        projection = m[2].removesuffix(".0")
        base = f"unet.{m[1]}.processor.{projection}_lora"
        return f"{base}.down.weight", f"{base}.up.weight"
    return f"unet.{path}.lora.down.weight", f"unet.{path}.lora.up.weight"


def parse_diffusers_key(key: str) -> tuple[str, str, str] | None:
    """A diffusers-format LoRA key in any spelling → (component, module path, 'down' or 'up'), or None
    for a key that is not a down/up weight (``.alpha``, DoRA magnitudes, …)."""
    found = next(((suffix, part) for down, up in _DIFFUSERS_PARTS
                  for suffix, part in ((down, "down"), (up, "up")) if key.endswith(suffix)), None)
    if found is None:
        return None
    suffix, part = found
    module = key[: -len(suffix)]
    if suffix.startswith("_lora"):  # attention processor spelling: ….processor.to_out_lora
        module = module + (".0" if module.endswith(".to_out") else "")
    module = module.replace(".processor.", ".")
    component, _, path = module.partition(".")
    if component not in COMPONENTS:
        if not module.startswith(_UNET_ROOTS):
            return None
        component, path = "unet", module  # old attention-processor files have no "unet." prefix
    return component, path, part
