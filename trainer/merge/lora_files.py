"""LoRA files in and out: kohya's format and diffusers', read into one in-memory form.

A LoRA is a set of modules, each ``ΔW = up @ down · alpha / rank``:

* kohya (Automatic1111, ComfyUI, kohya): ``lora_unet_<module_with_underscores>.lora_down.weight`` /
  ``.lora_up.weight`` / ``.alpha``; SDXL UNet modules named in the original (SAI) layout, as kohya does;
  text encoders ``lora_te_`` (SD 1.x/2.x) or ``lora_te1_``/``lora_te2_`` (SDXL), with the ``text_model`` level.
* diffusers: ``unet.<module.with.dots>`` plus one of the spellings diffusers reads (peft's ``lora_A``/``lora_B``,
  ``.lora.down``/``.lora.up``, the attention-processor ``to_q_lora.down``, ``lora_linear_layer``), text
  encoders under ``text_encoder.``/``text_encoder_2.``.  The scale is ``lora_alpha / r`` from the
  ``lora_adapter_metadata`` JSON or an ``.alpha`` key when present, else 1 (diffusers' own convention).

Modules are keyed by their canonical kohya name (``trainer.lora_names``: diffusers-style for every
family; SDXL's SAI names are translated when read and written back when an SDXL kohya file is saved), so
old Kamaal SDXL files with diffusers-style names and kohya's own read the same.  Fusing into a model
matches against the model's own module names.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from trainer import families
from trainer.errors import InputError
from trainer.fsutil import atomic_write_bytes
from trainer.lora_names import (
    DIFFUSERS_DOWN_SUFFIXES,
    SDXL_LAYOUT,
    TEXT_ENCODER_PREFIXES,
    UNET_PREFIX,
    UnetLayout,
    canonical_name,
    diffusers_file_keys,
    is_sai_name,
    kohya_name,
    parse_diffusers_key,
    sai_name,
)
from trainer.merge.lora_set import LoraModule, LoraSet
from trainer.models.safetensors_header import read_header, refuse_dtypes

KOHYA_PARTS = {"down": ".lora_down.weight", "up": ".lora_up.weight"}


def detect_lora_format(keys: list[str]) -> str:
    if any(k.endswith(KOHYA_PARTS["down"]) for k in keys):
        return "kohya"
    if any(k.endswith(DIFFUSERS_DOWN_SUFFIXES) for k in keys):
        return "diffusers"
    return "unknown"


def read_lora(path: Path | str, what: str = "LoRA") -> LoraSet:
    """Read a LoRA file of either format; ``InputError`` naming ``what`` if it is not one."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what}: {path} does not exist" if not path.exists() else f"{what}: {path} is not a file")
    if path.suffix.lower() != ".safetensors":
        raise InputError(f"{what}: {path} is not a .safetensors file (LoRAs are read from safetensors only)")
    # The header first (safetensors_header): a damaged or odd file is refused naming the file and tensor,
    # before safetensors reads a byte of it.
    refuse_dtypes(read_header(path, what), what, kind="LoRA weights")
    try:
        with safe_open(str(path), framework="pt") as handle:
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}
            metadata = dict(handle.metadata() or {})
    except Exception as error:  # safetensors raises its own types on damaged files
        raise InputError(f"{what}: {path} could not be read as safetensors ({error})") from None
    _refuse_non_finite(tensors, path, what)
    if any(key.endswith(".dora_scale") or ".lora_magnitude_vector" in key for key in tensors):
        # A DoRA module rescales each row of the whole weight by a norm of the base it was trained on: not a
        # low-rank difference that fuses, merges or converts as the other modules do.
        raise InputError(f"{what}: {path} is a DoRA file: the Merge page fuses and merges LoRA files only so far; "
                         "ComfyUI loads it as it is, and diffusers its diffusers/ file")
    kind = detect_lora_format(list(tensors))
    transformer = _transformer_lora(tensors, metadata, kind, path, what)
    if transformer is not None:
        return transformer
    if kind == "kohya":
        modules = _kohya_modules(tensors, path, what)
    elif kind == "diffusers":
        modules = _diffusers_modules(tensors, metadata, path, what)
    elif lycoris := sorted({"LoHa" if ".hada_" in k else "LoKr" for k in tensors if ".hada_" in k or ".lokr_" in k}):
        raise InputError(f"{what}: {path} is a {'/'.join(lycoris)} (LyCORIS) file: the Merge page fuses and merges "
                         "LoRA files only so far; Automatic1111 and ComfyUI load it as it is")
    else:
        hint = "a full model, not a LoRA" if any(".diffusion_model." in k or k.startswith("down_blocks.")
                                                 for k in tensors) else "no lora_down/lora_A weights"
        raise InputError(f"{what}: {path} is not a LoRA ({hint})")
    return LoraSet(modules, metadata, kind)


def _transformer_lora(tensors: dict[str, torch.Tensor], metadata: dict[str, str], kind: str, path: Path,
                      what: str) -> LoraSet | None:
    """A transformer family's LoRA file (``family_loras``) in either layout, or None for an SD family's: a diffusers
    file with ``transformer.`` keys, or a kohya-format file whose metadata or module names are a transformer
    family's."""
    from trainer.merge import family_loras

    named = family_loras.family_from_metadata(metadata)
    if family_loras.is_diffusers_transformer_file(tensors):
        parts = family_loras.diffusers_modules(tensors)
        _refuse_unknown([k for k in tensors if not k.endswith(".alpha") and not any(
            k.endswith(suffix) for pair in family_loras.DIFFUSERS_PARTS for suffix in pair)], path, what)
        try:
            scales = _diffusers_alphas(metadata)
        except ValueError as error:
            raise InputError(f"{what}: {path} has lora_adapter_metadata that cannot be used ({error})") from None
        modules: dict[str, LoraModule] = {}
        for name, (down, up) in sorted(parts.items()):
            _pair(down, up, name, path, what)
            assert down is not None and up is not None
            component, _, module = name.partition(".")
            explicit = tensors.get(f"{name}.alpha")
            if explicit is not None:
                alpha = _alpha(explicit, name, path, what)
            elif component in scales:
                alpha = float(scales[component][3].get(module, scales[component][1]))
            else:
                alpha = float(down.shape[0])  # no alpha recorded: scale 1, as diffusers loads it
            modules[name] = LoraModule(down, up, alpha)
        layout = family_loras.DIFFUSERS
    elif kind == "kohya":
        modules = _kohya_modules(tensors, path, what, canonical=False)
        layout = family_loras.ORIGINAL
        if named is None and (_unet_names(modules) or not family_loras.families_by_names(modules, layout)):
            return None  # an SD family's kohya file
    else:
        return None
    possible = (named,) if named else family_loras.families_by_names(modules, layout)
    return LoraSet(modules, metadata, "diffusers" if layout == family_loras.DIFFUSERS else "kohya", layout, possible)


# The first words of an SD UNet's modules in kohya names (diffusers-style; SDXL's SAI names: ``is_sai_name``).
_UNET_STARTS = tuple(UNET_PREFIX + root for root in ("down_blocks_", "mid_block_", "up_blocks_", "conv_in", "conv_out",
                                                      "time_embedding_", "add_embedding_"))


def _unet_names(modules: dict[str, LoraModule]) -> bool:
    """Every module is an SD UNet's or a text encoder's: an SD LoRA, without asking the transformer layouts."""
    return all(name.startswith((*_UNET_STARTS, "lora_te")) or is_sai_name(name) for name in modules)


def _refuse_non_finite(tensors: dict[str, torch.Tensor], path: Path, what: str) -> None:
    """NaN or infinite weights (a run that diverged) would make every fused or merged weight NaN, and break
    the SVD merge: refused, naming the tensor."""
    for key, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise InputError(f"{what}: {path} tensor {key} holds {bad} NaN or infinite value(s) of {tensor.numel()}; "
                             "the LoRA is broken (a training run that diverged?) and cannot be used")


def _pair(down: torch.Tensor | None, up: torch.Tensor | None, name: str, path: Path, what: str) -> None:
    if down is None or up is None:
        raise InputError(f"{what}: {path} has an incomplete module {name} (needs both down and up weights)")
    module = f"{what}: {path} module {name}"
    if not (down.is_floating_point() and up.is_floating_point()):
        raise InputError(f"{module} has {down.dtype}/{up.dtype} weights; LoRA weights are floating point")
    if down.dim() not in (2, 4) or up.dim() not in (2, 4):
        raise InputError(f"{module} has a {list(down.shape)} down and a {list(up.shape)} up weight; LoRA weights "
                         "are matrices (rank × in, out × rank) or 1×1-kernel convolutions")
    if up.shape[1] != down.shape[0]:
        raise InputError(f"{module} has mismatched ranks ({down.shape[0]} vs {up.shape[1]})")
    if down.shape[0] == 0:
        raise InputError(f"{module} has rank 0 (no weights)")
    if 0 in down.shape or 0 in up.shape:
        raise InputError(f"{module} has an empty weight ({list(down.shape)} down, {list(up.shape)} up)")
    if up.dim() == 4 and tuple(up.shape[2:]) != (1, 1):
        raise InputError(f"{module} has a {list(up.shape)} up weight; a convolution's up weight has a 1×1 kernel")


def _alpha(value: torch.Tensor, name: str, path: Path, what: str) -> float:
    """A module's ``.alpha`` tensor as a number; one number, not a vector."""
    if value.numel() != 1:
        raise InputError(f"{what}: {path} module {name} has an alpha of shape {list(value.shape)}; alpha is "
                         "one number")
    return float(value)


def _refuse_unknown(unknown: list[str], path: Path, what: str) -> None:
    if unknown:
        raise InputError(f"{what}: {path} holds {len(unknown)} tensor(s) that are not plain LoRA weights "
                         f"(first: {unknown[0]}); LoHa/LoKr and DoRA files are not supported")


def _add(modules: dict[str, LoraModule], name: str, module: LoraModule, path: Path, what: str) -> None:
    if name in modules:  # the same module under two spellings (SAI and diffusers-style)
        raise InputError(f"{what}: {path} holds module {name} twice, under two names")
    modules[name] = module


def _kohya_modules(tensors: dict[str, torch.Tensor], path: Path, what: str,
                  canonical: bool = True) -> dict[str, LoraModule]:
    names = sorted({k[: -len(KOHYA_PARTS["down"])] for k in tensors if k.endswith(KOHYA_PARTS["down"])})
    modules: dict[str, LoraModule] = {}
    for name in names:
        down, up = tensors.get(name + KOHYA_PARTS["down"]), tensors.get(name + KOHYA_PARTS["up"])
        _pair(down, up, name, path, what)
        alpha = tensors.get(name + ".alpha")
        _add(modules, canonical_name(name) if canonical else name,
             LoraModule(down, up, _alpha(alpha, name, path, what) if alpha is not None else float(down.shape[0])),
             path, what)
    _refuse_unknown([k for k in tensors if not k.endswith((KOHYA_PARTS["down"], KOHYA_PARTS["up"], ".alpha"))],
                    path, what)
    return modules


def _diffusers_alphas(metadata: dict[str, str]) -> dict[str, tuple[int, float, dict, dict]]:
    """Per component: (r, lora_alpha, rank_pattern, alpha_pattern) from ``lora_adapter_metadata``."""
    raw = metadata.get("lora_adapter_metadata")
    if not raw:
        return {}
    try:
        flat = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        return {}
    found: dict[str, tuple[int, float, dict, dict]] = {}
    if not isinstance(flat, dict):
        raise ValueError("it is not a table")
    for component in ("unet", "transformer", "text_encoder", "text_encoder_2"):
        if f"{component}.r" in flat:
            r = _number(flat[f"{component}.r"], f"{component}.r")
            alpha = _number(flat.get(f"{component}.lora_alpha", r), f"{component}.lora_alpha")
            rank_pattern = flat.get(f"{component}.rank_pattern") or {}
            alpha_pattern = flat.get(f"{component}.alpha_pattern") or {}
            if not isinstance(rank_pattern, dict) or not isinstance(alpha_pattern, dict):
                raise ValueError(f"{component}.rank_pattern and alpha_pattern must be tables")
            for key, value in alpha_pattern.items():
                _number(value, f"{component}.alpha_pattern[{key!r}]")
            found[component] = (int(r), alpha, rank_pattern, alpha_pattern)
    return found


def _number(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{field} must be a finite number, got {value!r}")
    return float(value)


def _diffusers_modules(tensors: dict[str, torch.Tensor], metadata: dict[str, str], path: Path,
                       what: str) -> dict[str, LoraModule]:
    """Every diffusers spelling, mixed or not; alphas from ``.alpha`` keys, adapter metadata, or 1."""
    parts: dict[tuple[str, str], dict[str, tuple[str, torch.Tensor]]] = {}
    unknown: list[str] = []
    for key, tensor in tensors.items():
        parsed = parse_diffusers_key(key)
        if parsed is None:
            if not key.endswith(".alpha"):
                unknown.append(key)
            continue
        component, module, part = parsed
        parts.setdefault((component, module), {})[part] = (key, tensor)
    _refuse_unknown(unknown, path, what)
    two_encoders = any(component == "text_encoder_2" for component, _ in parts)
    try:
        scales = _diffusers_alphas(metadata)
    except ValueError as error:
        raise InputError(f"{what}: {path} has lora_adapter_metadata that cannot be used ({error})") from None
    modules: dict[str, LoraModule] = {}
    for (component, module), found in sorted(parts.items()):
        if component not in ("unet", *TEXT_ENCODER_PREFIXES[two_encoders]):
            raise InputError(f"{what}: {path} has LoRA weights for {component!r}; expected unet, text_encoder "
                             "or text_encoder_2")
        down, up = found.get("down", ("", None))[1], found.get("up", ("", None))[1]
        _pair(down, up, f"{component}.{module}", path, what)
        assert down is not None and up is not None
        explicit = tensors.get(f"{component}.{module}.alpha")
        if explicit is not None:
            alpha = _alpha(explicit, f"{component}.{module}", path, what)
        elif component in scales:
            _, default_alpha, _, alpha_pattern = scales[component]
            alpha = float(alpha_pattern.get(module, default_alpha))
        else:
            alpha = float(down.shape[0])  # no alpha recorded: scale 1, as diffusers loads it
        _add(modules, kohya_name(component, module, two_encoders), LoraModule(down, up, alpha), path, what)
    return modules


def kohya_tensors(lora: LoraSet, layout: UnetLayout | None = None) -> dict[str, torch.Tensor]:
    """Kohya keys; an SDXL LoRA's UNet modules in the SAI layout kohya itself uses (``layout`` of the model
    it was trained on, else the standard SDXL one)."""
    lora_family = lora.family()
    original = lora_family is not None and families.lora_family_facts(lora_family).original_unet_names
    tensors: dict[str, torch.Tensor] = {}
    for name, module in sorted(lora.modules.items()):
        key = sai_name(name, layout or SDXL_LAYOUT) if original else name
        tensors[key + KOHYA_PARTS["down"]] = module.down.contiguous()
        tensors[key + KOHYA_PARTS["up"]] = module.up.contiguous()
        tensors[key + ".alpha"] = torch.tensor(float(module.alpha), dtype=torch.float32)
    return tensors


def diffusers_tensors(lora: LoraSet) -> dict[str, torch.Tensor]:
    """The diffusers file that diffusers and ComfyUI both apply whole (``trainer.lora_names``); it has no
    per-module alpha, so the scale is folded into ``up`` (scale 1 on load)."""
    tensors: dict[str, torch.Tensor] = {}
    for name, module in sorted(lora.modules.items()):
        down_key, up_key = diffusers_file_keys(name)
        up = module.up.float() * module.scale
        tensors[down_key] = module.down.contiguous()
        tensors[up_key] = up.to(module.up.dtype).contiguous()
    return tensors


def kohya_metadata(lora: LoraSet, architecture: str | None, title: str) -> dict[str, str]:
    """The fields kohya-based tools read to show and sort LoRAs."""
    ranks = sorted({m.rank for m in lora.modules.values()})
    alphas = sorted({m.alpha for m in lora.modules.values()})
    metadata = {"ss_network_module": "networks.lora", "ss_network_dim": str(ranks[-1] if ranks else 0),
                "ss_network_alpha": str(alphas[-1] if alphas else 0), "ss_output_name": title,
                "modelspec.title": title}
    kohya = families.family(architecture).kohya if architecture in families.FAMILIES else None
    if kohya is not None:
        metadata["ss_base_model_version"] = kohya.base_model_version
        metadata["ss_v2"] = str(kohya.v2)
    return metadata


def save_lora(lora: LoraSet, path: Path, fmt: str, metadata: dict[str, str], layout: UnetLayout | None = None) -> Path:
    """Write ``lora`` to ``path`` atomically in ``fmt`` ('kohya' or 'diffusers')."""
    from safetensors.torch import save

    from trainer.merge.family_loras import family_tensors

    if fmt not in ("kohya", "diffusers"):
        raise InputError(f"format must be kohya or diffusers, got {fmt!r}")
    if lora.layout:  # a transformer family's: written in its own layout (``family_loras.convert_layout`` first)
        tensors = family_tensors(lora)
    else:
        tensors = kohya_tensors(lora, layout) if fmt == "kohya" else diffusers_tensors(lora)
    atomic_write_bytes(path, save(tensors, metadata={k: str(v) for k, v in metadata.items()}))
    return path
