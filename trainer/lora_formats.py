"""LoRA in training: the adapters put on the model, and the two files they become.

Adapters are peft's (``add_adapter``): on the UNet modules named in ``lora.target_modules`` and, with
``lora.train_text_encoder``, on the text encoders' attention projections.  At the end of a run they are
read module by module (down, up and the scale peft really applies) into the merge room's in-memory form,
``trainer.merge.lora_files.LoraSet``, and written by the same writers that convert and merge LoRAs:

* ``RUN_NAME.safetensors`` in the kohya format (Automatic1111, ComfyUI, kohya).  It keeps the alpha the
  user trained with (diffusers' converter writes alpha = rank), ``lora_te_`` for one text encoder, and for
  SDXL the original-layout (SAI) UNet names kohya itself uses, so ``--network_weights`` continues it.
* ``diffusers/pytorch_lora_weights.safetensors``, which diffusers' ``load_lora_weights`` and ComfyUI
  both apply whole (the key spellings are in ``trainer.lora_names``).

Both carry the resolved config in their metadata.  DoRA (``lora.adapter = "dora"``, peft's ``use_dora``) adds a
trained magnitude per output channel: W' = m · (W + s·B·A) / ‖W + s·B·A‖, the norm over each output row.  Its
diffusers file is peft's spelling (``lora_A``/``lora_B`` and ``lora_magnitude_vector.weight``, which
``load_lora_weights`` reads as DoRA); its kohya file adds ``….dora_scale`` to each LoRA module in the shape
ComfyUI reads as "decomposed on the output axis", (out, 1) — see :func:`comfy_dora_scale` for the value.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from trainer.families import family, kohya_facts
from trainer.lora_names import UnetLayout, kohya_name
from trainer.merge.lora_files import LoraModule, LoraSet, kohya_metadata, save_lora

TEXT_ENCODER_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]
ADAPTER = "default"
DIFFUSERS_FILE = "pytorch_lora_weights.safetensors"


def add_lora_adapters(unet: Any, text_encoders: Sequence[Any], lora: Any, train_text: bool) -> None:
    """peft adapters with ``lora`` (the config's ``lora`` section) on the UNet, and on the text encoders
    when ``train_text``; B starts at zero, so the model draws what it drew before."""
    from peft import LoHaConfig, LoKrConfig, LoraConfig

    def config(targets: list[str]) -> Any:
        adapter = getattr(lora, "adapter", "lora")
        if adapter == "dora":  # B starts at zero and m at ‖W‖ per row: the model is unchanged until it learns
            return LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                              init_lora_weights="gaussian", target_modules=targets, use_dora=True)
        if adapter == "loha":  # one factor pair starts at zero, so the product does (peft's default init)
            return LoHaConfig(r=lora.rank, alpha=lora.alpha, module_dropout=lora.dropout, target_modules=targets)
        if adapter == "lokr":
            return LoKrConfig(r=lora.rank, alpha=lora.alpha, module_dropout=lora.dropout, target_modules=targets)
        return LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                          init_lora_weights="gaussian", target_modules=targets)

    unet.add_adapter(config(list(lora.target_modules)))
    if train_text:
        for encoder in text_encoders:
            if encoder is not None and has_clip_attention(encoder):  # CLIP; T5 (SD 3.5, Flux) stays frozen
                encoder.add_adapter(config(TEXT_ENCODER_TARGETS))


def has_clip_attention(encoder: Any) -> bool:
    return any(name.endswith(".q_proj") for name, _ in encoder.named_modules())


def adapter_modules(model: Any) -> dict[str, LoraModule]:
    """The model's peft LoRA layers by module path: down, up (float32, on the CPU) and the alpha that gives
    the scale peft applies (``scaling · r``, so rank/alpha patterns and rsLoRA come out right)."""
    from peft.tuners.lora import LoraLayer

    found: dict[str, LoraModule] = {}
    if model is None:  # an optional encoder the model runs without (SD 3.5's T5)
        return found
    for name, layer in model.named_modules():
        if isinstance(layer, LoraLayer) and ADAPTER in layer.lora_A:
            down = layer.lora_A[ADAPTER].weight.detach().to("cpu", torch.float32).contiguous()
            up = layer.lora_B[ADAPTER].weight.detach().to("cpu", torch.float32).contiguous()
            found[name] = LoraModule(down, up, float(layer.scaling[ADAPTER]) * int(down.shape[0]))
    return found


def dora_magnitudes(model: Any) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The model's DoRA layers by module path: (peft's magnitude m as stored, the base weight W dequantized),
    both float32 on the CPU; empty for a model without DoRA."""
    from peft.tuners.lora import LoraLayer
    from peft.utils.integrations import dequantize_module_weight

    found: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    if model is None:
        return found
    for name, layer in model.named_modules():
        if isinstance(layer, LoraLayer) and ADAPTER in getattr(layer, "lora_magnitude_vector", {}):
            magnitude = layer.lora_magnitude_vector[ADAPTER].weight.detach().to("cpu", torch.float32)
            base = dequantize_module_weight(layer.get_base_layer()).detach().to("cpu", torch.float32)
            found[name] = magnitude.contiguous(), base
    return found


def comfy_dora_scale(magnitude: torch.Tensor, base: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """``dora_scale`` for a kohya file, such that ComfyUI applies exactly the weight peft trained.

    peft: W' = m · (W + ΔW) / ‖W + ΔW‖ (row norms).  ComfyUI (``comfy/weight_adapter/base.py``,
    ``weight_decompose``), given a ``dora_scale`` d of shape (out, 1, …), computes (W + ΔW) · d / (‖W‖ + ε) with
    the norm of the *base* weight W's rows and ε float32's epsilon (its computation dtype).  So d = m · (‖W‖ + ε) /
    ‖W + ΔW‖.  Tools that apply d as LyCORIS defines it (divided by ‖W + ΔW‖) are off by ‖W‖/‖W + ΔW‖ per row,
    1 at the start of training; Automatic1111 reads ``dora_scale`` on the input axis only."""
    rows = base.shape[0]
    base_norm = base.reshape(rows, -1).norm(dim=1) + torch.finfo(torch.float32).eps
    merged_norm = (base + delta).reshape(rows, -1).norm(dim=1)
    scale = magnitude.reshape(rows) * base_norm / merged_norm
    return scale.reshape(rows, *[1] * (base.dim() - 1)).contiguous()


def lora_set(architecture: str, unet: Any, text_encoders: Sequence[Any]) -> LoraSet:
    """Everything the adapters learned, keyed by canonical kohya names."""
    model = family(architecture)
    two_encoders = len(model.text_encoders) > 1
    modules = {kohya_name("unet", path, two_encoders): module for path, module in adapter_modules(unet).items()}
    for spec, encoder in zip(model.text_encoders, text_encoders, strict=False):
        modules |= {kohya_name(spec.component, path, two_encoders): module
                    for path, module in adapter_modules(encoder).items()}
    return LoraSet(modules, {"ss_base_model_version": kohya_facts(architecture).base_model_version}, "kohya")


def training_metadata(lora: LoraSet, architecture: str, run_name: str, config: dict[str, Any]) -> dict[str, str]:
    """The merge room's kohya fields (network, rank, alpha, base model) plus the model spec and the config."""
    kohya = kohya_facts(architecture)
    return kohya_metadata(lora, architecture, run_name) | {
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": kohya.modelspec_architecture,
        "modelspec.implementation": kohya.implementation,
        "kamaal.config": json.dumps(config),
    }


def export_transformer_lora(path: Path, architecture: str, denoiser: Any, text_encoders: Sequence[Any],
                            config: dict[str, Any]) -> Path:
    """The diffusers/peft LoRA file of a transformer family (SD 3.5, Flux), or of any family's DoRA:
    ``transformer.<module>.lora_A/B`` (``unet.…``) and ``text_encoder.<module>.lora_A/B``, as the pipeline's
    ``save_lora_weights`` names them, so ``load_lora_weights`` and ComfyUI apply it; the scale alpha/rank is folded
    into B (both assume 1).  DoRA's magnitudes as ``….lora_magnitude_vector.weight``, in peft's shape."""
    from safetensors.torch import save

    from trainer.fsutil import atomic_write_bytes

    model = family(architecture)
    tensors: dict[str, torch.Tensor] = {}
    named = [(model.denoiser, denoiser), *((spec.component, encoder)
                                           for spec, encoder in zip(model.text_encoders, text_encoders, strict=False))]
    for prefix, module in named:
        for name, lora in adapter_modules(module).items():
            tensors[f"{prefix}.{name}.lora_A.weight"] = lora.down
            tensors[f"{prefix}.{name}.lora_B.weight"] = (lora.up * lora.scale).contiguous()
        for name, (magnitude, _) in dora_magnitudes(module).items():  # DoRA: the scale in B changes no norm
            # ".weight": transformers 5 loads a text encoder's magnitudes only so (peft's own files omit it, and
            # diffusers' denoiser loader reads both spellings).
            tensors[f"{prefix}.{name}.lora_magnitude_vector.weight"] = magnitude.contiguous()
    atomic_write_bytes(path, save(tensors, metadata={"format": "pt", "kamaal.config": json.dumps(config)}))
    return path


def export_kohya_transformer_lora(path: Path, architecture: str, denoiser: Any, text_encoders: Sequence[Any],
                                  run_name: str, config: dict[str, Any]) -> Path | None:
    """The kohya-format LoRA of a transformer family in the original layout kohya, ComfyUI and Forge use
    (Flux: ``lora_unet_double_blocks_0_img_attn_qkv``, SD 3.5: ``lora_unet_joint_blocks_0_x_block_attn_qkv``;
    the text encoders ``lora_te1_…``, ``lora_te2_…`` in the pipeline's order, as kohya's ``lora_flux`` and
    ``lora_sd3`` name them; Ideogram 4: ``diffusion_model.layers.0.attention.qkv``, its ``KohyaFacts.original_prefix``);
    ``None`` where the family has no such layout yet.  ``text_encoders`` are all the
    family's encoders in order, or none (a T5 without adapters writes nothing).

    A fused original layer (q, k, v in one ``qkv``; q, k, v and the MLP input in a single block's ``linear1``)
    gets one LoRA whose down stacks every part's down and whose up is block-diagonal, each part's up in its
    own rows — exactly the sum of the parts, as kohya writes it; a part not trained is a zero block.  Each
    part's scale is folded into its up, and alpha is the rank (scale 1).
    """
    import importlib

    from safetensors.torch import save

    from trainer.fsutil import atomic_write_bytes

    model = family(architecture)
    facts = kohya_facts(architecture)
    if facts.transformer_layout is None:
        return None
    module_name, function_name = facts.transformer_layout.split(":")
    layout = getattr(importlib.import_module(module_name), function_name)(dict(denoiser.config))
    trained = adapter_modules(denoiser)
    magnitudes = dora_magnitudes(denoiser)
    tensors: dict[str, torch.Tensor] = {}
    for original in dict.fromkeys(layout[name][0] for name in trained):
        key = facts.original_prefix + (original if facts.original_prefix.endswith(".") else original.replace(".", "_"))
        parts = sorted((spec[1], spec[2], spec[3], name) for name, spec in layout.items() if spec[0] == original)
        if parts[0][1] == 0:  # a whole layer
            (name,) = (name for *_, name in parts)
            lora = trained[name]
            up = lora.up * lora.scale
            if layout[name][4]:  # (scale, shift) in diffusers, (shift, scale) in the original
                up = torch.cat(up.chunk(2, dim=0)[::-1])
            down = lora.down
        else:
            rank = max(trained[name].rank for *_, name in parts if name in trained)
            width = next(trained[name].down.shape[1] for *_, name in parts if name in trained)
            down = torch.zeros(rank * len(parts), width)
            up = torch.zeros(parts[0][2], rank * len(parts))
            for slot, (offset, rows, _, name) in enumerate(parts):
                if name in trained:
                    lora = trained[name]
                    down[slot * rank: slot * rank + lora.rank] = lora.down
                    up[offset: offset + rows, slot * rank: slot * rank + lora.rank] = lora.up * lora.scale
        tensors[key + ".lora_down.weight"] = down.contiguous()
        tensors[key + ".lora_up.weight"] = up.contiguous()
        tensors[key + ".alpha"] = torch.tensor(float(down.shape[0]))
        if magnitudes:
            tensors[key + ".dora_scale"] = _fused_dora_scale(denoiser, parts, trained, magnitudes, layout)
    for index, encoder in enumerate(text_encoders, start=1):
        encoder_magnitudes = dora_magnitudes(encoder)
        for name, lora in adapter_modules(encoder).items():
            # kohya numbers the encoders in the pipeline's order: Flux's CLIP-L te1 (T5 would be te3), SD 3.5's
            # CLIP-L te1, CLIP-G te2 (T5 te3); the module path as kohya_name spells it (with text_model.)
            key = f"lora_te{index}_" + kohya_name("text_encoder", name, False).removeprefix("lora_te_")
            tensors[key + ".lora_down.weight"] = lora.down
            tensors[key + ".lora_up.weight"] = (lora.up * lora.scale).contiguous()
            tensors[key + ".alpha"] = torch.tensor(float(lora.rank))
            if name in encoder_magnitudes:
                magnitude, base = encoder_magnitudes[name]
                tensors[key + ".dora_scale"] = comfy_dora_scale(magnitude, base, lora.delta().reshape(base.shape))
    ranks = sorted({int(v.shape[0]) for k, v in tensors.items() if k.endswith(".lora_down.weight")})
    metadata = {"ss_network_module": facts.network_module, "ss_network_dim": str(ranks[-1] if ranks else 0),
                "ss_network_alpha": str(ranks[-1] if ranks else 0), "ss_output_name": run_name,
                "ss_base_model_version": facts.base_model_version, "modelspec.sai_model_spec": "1.0.0",
                "modelspec.architecture": facts.modelspec_architecture, "modelspec.title": run_name,
                "modelspec.implementation": facts.implementation, "kamaal.config": json.dumps(config),
                "kamaal.family": model.name}
    atomic_write_bytes(path, save(tensors, metadata=metadata))
    return path


def _fused_dora_scale(denoiser: Any, parts: list[tuple[int, int, int, str]], trained: dict[str, LoraModule],
                      magnitudes: dict[str, tuple[torch.Tensor, torch.Tensor]], layout: dict[str, Any]) -> torch.Tensor:
    """``dora_scale`` of one original-layout layer made of ``parts`` (offset, rows, total rows, diffusers module):
    DoRA's norms are per output row, and each row of a fused layer is one part's, so each part's rows get their
    own :func:`comfy_dora_scale`; a part without DoRA gets ‖W‖ + ε, which ComfyUI turns into W unchanged."""
    from peft.utils.integrations import dequantize_module_weight

    eps = torch.finfo(torch.float32).eps
    scales = []
    for *_, name in parts:
        if name in magnitudes:
            magnitude, base = magnitudes[name]
            scale = comfy_dora_scale(magnitude, base, trained[name].delta().reshape(base.shape))
        else:
            module = denoiser.get_submodule(name)
            base = dequantize_module_weight(getattr(module, "base_layer", module)).detach().to("cpu", torch.float32)
            scale = (base.reshape(len(base), -1).norm(dim=1) + eps).reshape(len(base), *[1] * (base.dim() - 1))
        if layout[name][4]:  # (scale, shift) in diffusers, (shift, scale) in the original: its rows swap halves
            scale = torch.cat(scale.chunk(2, dim=0)[::-1])
        scales.append(scale)
    return torch.cat(scales).contiguous()


def export_lora_files(kohya_path: Path, diffusers_path: Path, architecture: str, unet: Any,
                      text_encoders: Sequence[Any], run_name: str, config: dict[str, Any]) -> list[Path]:
    """Write both files atomically; ``text_encoders`` are those that carry adapters (may be empty)."""
    lora = lora_set(architecture, unet, text_encoders)
    save_lora(lora, kohya_path, "kohya", training_metadata(lora, architecture, run_name, config),
              layout=UnetLayout.from_config(unet.config))
    save_lora(lora, diffusers_path, "diffusers", {"format": "pt", "kamaal.config": json.dumps(config)})
    return [kohya_path, diffusers_path]


def export_dora_kohya_file(path: Path, architecture: str, unet: Any, text_encoders: Sequence[Any], run_name: str,
                           config: dict[str, Any]) -> Path:
    """A UNet family's DoRA run in the kohya format: the LoRA file :func:`export_lora_files` writes, plus
    ``….dora_scale`` (:func:`comfy_dora_scale`) beside each module's ``lora_down``/``lora_up``/``alpha``."""
    from safetensors.torch import save

    from trainer.fsutil import atomic_write_bytes
    from trainer.lora_names import sai_name
    from trainer.merge.lora_files import kohya_tensors

    model = family(architecture)
    two_encoders = len(model.text_encoders) > 1
    lora = lora_set(architecture, unet, text_encoders)
    layout = UnetLayout.from_config(unet.config)
    tensors = kohya_tensors(lora, layout)
    original = kohya_facts(architecture).original_unet_names
    components = [("unet", unet)] + [(spec.component, encoder)
                                     for spec, encoder in zip(model.text_encoders, text_encoders, strict=False)]
    for component, module in components:
        for module_path, (magnitude, base) in dora_magnitudes(module).items():
            name = kohya_name(component, module_path, two_encoders)
            delta = lora.modules[name].delta().reshape(base.shape)
            key = sai_name(name, layout) if component == "unet" and original else name
            tensors[f"{key}.dora_scale"] = comfy_dora_scale(magnitude, base, delta)
    metadata = training_metadata(lora, architecture, run_name, config) | {
        "ss_network_args": json.dumps({"dora_wd": "True", "wd_on_output": "True"})}
    atomic_write_bytes(path, save(tensors, metadata=metadata))
    return path


LYCORIS_PARTS = {"loha": ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1", "hada_t2"),
                 "lokr": ("lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b", "lokr_t2")}


def lycoris_tensors(architecture: str, unet: Any, text_encoders: Sequence[Any],
                    layout: UnetLayout | None = None) -> dict[str, torch.Tensor]:
    """A LoHa or LoKr run's adapters under LyCORIS' keys, as kohya's ``lycoris.kohya`` network writes them and
    Automatic1111 and ComfyUI apply them: ``lora_unet_…_to_q.hada_w1_a`` …, ``….lokr_w1`` …, and ``….alpha``.
    SD 3.5's and Flux's transformer modules are named ``lycoris_`` + the diffusers module path
    (``lycoris_transformer_blocks_0_attn_to_q``, SimpleTuner's spelling), which ComfyUI maps onto the rows of its
    fused ``qkv`` layers (a product of factors does not fuse into one as LoRA's stacked downs do); their CLIP
    encoders keep kohya's ``lora_te1_``/``lora_te2_`` names.

    The scale a loader applies is alpha ÷ the rank it reads from the file (LoHa: ``hada_w1_b``'s rows; LoKr: the
    rank of a decomposed factor, or 1 when neither factor is decomposed) — peft's is alpha ÷ r; where a LoKr has
    no decomposed factor, peft's scale is folded into ``lokr_w2`` and no alpha is written."""
    from trainer.lora_names import SDXL_LAYOUT, sai_name

    model = family(architecture)
    two_encoders = len(model.text_encoders) > 1
    facts = kohya_facts(architecture)
    components = [("unet", unet)] + [(spec.component, encoder)
                                     for spec, encoder in zip(model.text_encoders, text_encoders, strict=False)]
    tensors: dict[str, torch.Tensor] = {}
    for component, module in components:
        for path, layer in module.named_modules():
            kind = next((k for k, parts in LYCORIS_PARTS.items() if hasattr(layer, parts[0])), None)
            if kind is None or ADAPTER not in getattr(layer, "r", {}):
                continue
            if component == "unet" and facts.lycoris_names == "diffusers":
                name = "lycoris_" + path.replace(".", "_")
            else:
                name = kohya_name(component, path, two_encoders)
            if component == "unet" and facts.original_unet_names:
                name = sai_name(name, layout or SDXL_LAYOUT)
            found = {part: getattr(layer, part)[ADAPTER].detach().to("cpu", torch.float32).contiguous()
                     for part in LYCORIS_PARTS[kind] if ADAPTER in getattr(layer, part)}
            scale = float(layer.scaling[ADAPTER])
            decomposed = kind == "loha" or "lokr_w1_a" in found or "lokr_w2_a" in found
            if not decomposed:
                found["lokr_w2"] = found["lokr_w2"] * scale
            for part, value in found.items():
                tensors[f"{name}.{part}"] = value
            if decomposed:
                tensors[f"{name}.alpha"] = torch.tensor(float(layer.alpha[ADAPTER]), dtype=torch.float32)
    return tensors


def export_lycoris_files(kohya_path: Path, peft_dir: Path, architecture: str, unet: Any,
                         text_encoders: Sequence[Any], lora: Any, run_name: str, config: dict[str, Any]) -> list[Path]:
    """A LoHa/LoKr run's two outputs: the kohya/LyCORIS file (A1111, ComfyUI, kohya) and peft's own adapter
    folders (``peft_dir/unet`` or ``peft_dir/transformer``, ``peft_dir/text_encoder``…:
    ``adapter_model.safetensors`` + ``adapter_config.json``, which ``peft.inject_adapter_in_model`` and
    ``set_peft_model_state_dict`` load — diffusers' own loader reads LoRA only)."""
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save

    from trainer.fsutil import atomic_write_bytes, atomic_write_text

    facts = kohya_facts(architecture)
    layout = UnetLayout.from_config(unet.config) if facts.original_unet_names else None
    tensors = lycoris_tensors(architecture, unet, text_encoders, layout)
    metadata = {"ss_network_module": "lycoris.kohya", "ss_network_args": json.dumps({"algo": lora.adapter}),
                "ss_network_dim": str(lora.rank), "ss_network_alpha": str(lora.alpha),
                "ss_base_model_version": facts.base_model_version, "ss_output_name": run_name,
                "modelspec.architecture": facts.modelspec_architecture.replace("/lora", f"/lora-{lora.adapter}"),
                "modelspec.implementation": facts.implementation, "kamaal.config": json.dumps(config)}
    atomic_write_bytes(kohya_path, save(tensors, metadata=metadata))
    model = family(architecture)
    for component, module in [(model.denoiser, unet)] + [(spec.component, encoder) for spec, encoder
                                                         in zip(model.text_encoders, text_encoders, strict=False)]:
        config_of = getattr(module, "peft_config", {}).get(ADAPTER)
        if config_of is None:
            continue
        folder = peft_dir / component
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().to("cpu").contiguous() for k, v in
                 get_peft_model_state_dict(module, adapter_name=ADAPTER).items()}
        atomic_write_bytes(folder / "adapter_model.safetensors", save(state, metadata={"format": "pt"}))
        atomic_write_text(folder / "adapter_config.json", json.dumps(config_of.to_dict(), indent=2, default=list))
    return [kohya_path, peft_dir]
