"""LoRA files in and out: kohya's format and diffusers', read into one in-memory form.

A LoRA is a set of modules, each ``ΔW = up @ down · alpha / rank``:

* kohya (Automatic1111, ComfyUI): ``lora_unet_<module_with_underscores>.lora_down.weight`` / ``.lora_up.weight``
  / ``.alpha``; text encoders ``lora_te_`` (SD 1.x/2.x) or ``lora_te1_``/``lora_te2_`` (SDXL), always with
  the ``text_model`` level (``lora_te_text_model_encoder_layers_0_self_attn_q_proj``).
* diffusers (peft names): ``unet.<module.with.dots>.lora_A.weight`` (down) / ``.lora_B.weight`` (up), text
  encoders under ``text_encoder.``/``text_encoder_2.``.  The scale is ``lora_alpha / r`` from the
  ``lora_adapter_metadata`` JSON when present, else 1 (diffusers' own convention for files without it).

Modules are keyed by their kohya name.  Kohya → diffusers has to put the dots back; the module names of
Stable Diffusion's UNet and CLIP are made of a known set of words, some containing underscores
(``down_blocks``, ``to_q``, ``self_attn``…), so the underscores are split and those words re-joined.
Fusing into a model does not rely on this: it matches against the model's own module names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from trainer.errors import InputError
from trainer.fsutil import atomic_write_bytes

KOHYA_PARTS = {"down": ".lora_down.weight", "up": ".lora_up.weight"}
DIFFUSERS_PARTS = {"down": ".lora_A.weight", "up": ".lora_B.weight"}
# diffusers component prefix → kohya prefix, per family of text encoders.
_TE_PREFIXES = {False: {"text_encoder": "lora_te"}, True: {"text_encoder": "lora_te1", "text_encoder_2": "lora_te2"}}
# Words in SD's UNet and CLIP module names that contain an underscore, longest first when matching.
_COMPOUNDS = {
    "down_blocks", "up_blocks", "mid_block", "transformer_blocks", "to_q", "to_k", "to_v", "to_out",
    "proj_in", "proj_out", "conv_in", "conv_out", "conv_shortcut", "time_emb_proj", "time_embedding",
    "linear_1", "linear_2", "add_embedding", "conv_norm_out", "text_model", "self_attn", "q_proj", "k_proj",
    "v_proj", "out_proj", "layer_norm1", "layer_norm2", "final_layer_norm", "token_embedding",
    "position_embedding", "text_projection", "add_k_proj", "add_v_proj",
}
BASE_MODEL_VERSION = {"sd15": "sd_v1", "sd2": "sd_v2", "sdxl": "sdxl_base_v1-0"}


@dataclass
class LoraModule:
    down: torch.Tensor  # (rank, in) or (rank, in, kh, kw)
    up: torch.Tensor  # (out, rank) or (out, rank, 1, 1)
    alpha: float

    @property
    def rank(self) -> int:
        return int(self.down.shape[0])

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def weight_shape(self) -> tuple[int, ...]:
        return (int(self.up.shape[0]), *self.down.shape[1:])

    def delta(self) -> torch.Tensor:
        """ΔW in float32, shaped like the weight it changes."""
        product = self.up.flatten(1).float() @ self.down.flatten(1).float()
        return (product * self.scale).reshape(self.weight_shape())


@dataclass
class LoraSet:
    modules: dict[str, LoraModule]  # kohya module name → module
    metadata: dict[str, str] = field(default_factory=dict)
    source_format: str = "kohya"

    @property
    def two_text_encoders(self) -> bool:
        return any(name.startswith(("lora_te1_", "lora_te2_")) for name in self.modules)

    def family(self) -> str | None:
        """'sdxl', 'sd1/2' or None (unknown), from names and kohya metadata."""
        version = self.metadata.get("ss_base_model_version", "") + self.metadata.get("modelspec.architecture", "")
        if "sdxl" in version or "xl" in version.lower() or self.two_text_encoders:
            return "sdxl"
        names = " ".join(self.modules)
        if "down_blocks_0_attentions" in names or self.metadata.get("ss_v2") is not None:
            return "sd1/2"
        if "transformer_blocks_1_" in names:
            return "sdxl"
        return None


def detect_lora_format(keys: list[str]) -> str:
    if any(k.endswith(KOHYA_PARTS["down"]) for k in keys):
        return "kohya"
    if any(k.endswith(DIFFUSERS_PARTS["down"]) for k in keys):
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
    try:
        with safe_open(str(path), framework="pt") as handle:
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}
            metadata = dict(handle.metadata() or {})
    except Exception as error:  # safetensors raises its own types on damaged files
        raise InputError(f"{what}: {path} could not be read as safetensors ({error})") from None
    kind = detect_lora_format(list(tensors))
    if kind == "kohya":
        modules = _kohya_modules(tensors, path, what)
    elif kind == "diffusers":
        modules = _diffusers_modules(tensors, metadata, path, what)
    else:
        hint = "a full model, not a LoRA" if any(".diffusion_model." in k or k.startswith("down_blocks.")
                                                 for k in tensors) else "no lora_down/lora_A weights"
        raise InputError(f"{what}: {path} is not a LoRA ({hint})")
    return LoraSet(modules, metadata, kind)


def _pair(down: torch.Tensor | None, up: torch.Tensor | None, name: str, path: Path, what: str) -> None:
    if down is None or up is None:
        raise InputError(f"{what}: {path} has an incomplete module {name} (needs both down and up weights)")
    if up.shape[1] != down.shape[0]:
        raise InputError(f"{what}: {path} module {name} has mismatched ranks ({down.shape[0]} vs {up.shape[1]})")


def _kohya_modules(tensors: dict[str, torch.Tensor], path: Path, what: str) -> dict[str, LoraModule]:
    names = sorted({k[: -len(KOHYA_PARTS["down"])] for k in tensors if k.endswith(KOHYA_PARTS["down"])})
    modules: dict[str, LoraModule] = {}
    for name in names:
        down, up = tensors.get(name + KOHYA_PARTS["down"]), tensors.get(name + KOHYA_PARTS["up"])
        _pair(down, up, name, path, what)
        alpha = tensors.get(name + ".alpha")
        modules[name] = LoraModule(down, up, float(alpha) if alpha is not None else float(down.shape[0]))
    unknown = [k for k in tensors if not k.endswith((KOHYA_PARTS["down"], KOHYA_PARTS["up"], ".alpha"))]
    if unknown:
        raise InputError(f"{what}: {path} holds {len(unknown)} tensor(s) that are not plain LoRA weights "
                         f"(first: {unknown[0]}); LoHa/LoKr and DoRA files are not supported")
    return modules


def _diffusers_alphas(metadata: dict[str, str]) -> dict[str, tuple[int, float, dict, dict]]:
    """Per component: (r, lora_alpha, rank_pattern, alpha_pattern) from ``lora_adapter_metadata``."""
    raw = metadata.get("lora_adapter_metadata")
    if not raw:
        return {}
    try:
        flat = json.loads(raw)
    except json.JSONDecodeError:
        return {}
    found: dict[str, tuple[int, float, dict, dict]] = {}
    for component in ("unet", "text_encoder", "text_encoder_2"):
        if f"{component}.r" in flat:
            r = int(flat[f"{component}.r"])
            found[component] = (r, float(flat.get(f"{component}.lora_alpha", r)),
                                flat.get(f"{component}.rank_pattern") or {},
                                flat.get(f"{component}.alpha_pattern") or {})
    return found


def _diffusers_modules(tensors: dict[str, torch.Tensor], metadata: dict[str, str], path: Path,
                       what: str) -> dict[str, LoraModule]:
    keys = [k for k in tensors if k.endswith(DIFFUSERS_PARTS["down"])]
    two_encoders = any(k.startswith("text_encoder_2.") for k in tensors)
    prefixes = {"unet": "lora_unet", **_TE_PREFIXES[two_encoders]}
    scales = _diffusers_alphas(metadata)
    modules: dict[str, LoraModule] = {}
    for key in keys:
        full = key[: -len(DIFFUSERS_PARTS["down"])]
        component, _, module = full.partition(".")
        if component not in prefixes:
            raise InputError(f"{what}: {path} has LoRA weights for {component!r}; expected unet, text_encoder "
                             "or text_encoder_2")
        down, up = tensors[key], tensors.get(full + DIFFUSERS_PARTS["up"])
        _pair(down, up, full, path, what)
        rank = int(down.shape[0])
        if (explicit := tensors.get(full + ".alpha")) is not None:
            alpha = float(explicit)
        elif component in scales:
            _, default_alpha, _, alpha_pattern = scales[component]
            alpha = float(alpha_pattern.get(module, default_alpha))
        else:
            alpha = float(rank)  # no alpha recorded: scale 1, as diffusers loads it
        modules[kohya_name(component, module, two_encoders)] = LoraModule(down, up, alpha)  # type: ignore[arg-type]
    return modules


def kohya_name(component: str, module: str, two_encoders: bool) -> str:
    """``("text_encoder", "encoder.layers.0.self_attn.q_proj")`` → ``lora_te_text_model_encoder_…``"""
    if component == "unet":
        return "lora_unet_" + module.replace(".", "_")
    if not module.startswith("text_model.") and not module.startswith("text_projection"):
        module = "text_model." + module  # transformers 5 flattened CLIP; files keep the classic names
    return f"{_TE_PREFIXES[two_encoders][component]}_{module.replace('.', '_')}"


def diffusers_key(name: str) -> str:
    """``lora_unet_down_blocks_0_attentions_0_…_to_q`` → ``unet.down_blocks.0.attentions.0.….to_q``"""
    for prefix, component in (("lora_unet_", "unet"), ("lora_te1_", "text_encoder"), ("lora_te2_", "text_encoder_2"),
                              ("lora_te_", "text_encoder")):
        if name.startswith(prefix):
            return f"{component}.{_dotted(name[len(prefix):])}"
    raise InputError(f"LoRA module {name} has no known prefix (lora_unet_, lora_te_, lora_te1_, lora_te2_)")


def _dotted(underscored: str) -> str:
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


def kohya_tensors(lora: LoraSet) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for name, module in sorted(lora.modules.items()):
        tensors[name + KOHYA_PARTS["down"]] = module.down.contiguous()
        tensors[name + KOHYA_PARTS["up"]] = module.up.contiguous()
        tensors[name + ".alpha"] = torch.tensor(float(module.alpha), dtype=torch.float32)
    return tensors


def diffusers_tensors(lora: LoraSet) -> dict[str, torch.Tensor]:
    """Diffusers' format has no per-module alpha: the scale is folded into ``up`` (scale 1 on load)."""
    tensors: dict[str, torch.Tensor] = {}
    for name, module in sorted(lora.modules.items()):
        key = diffusers_key(name)
        up = module.up.float() * module.scale
        tensors[key + DIFFUSERS_PARTS["down"]] = module.down.contiguous()
        tensors[key + DIFFUSERS_PARTS["up"]] = up.to(module.up.dtype).contiguous()
    return tensors


def kohya_metadata(lora: LoraSet, architecture: str | None, title: str) -> dict[str, str]:
    """The fields kohya-based tools read to show and sort LoRAs."""
    ranks = sorted({m.rank for m in lora.modules.values()})
    alphas = sorted({m.alpha for m in lora.modules.values()})
    metadata = {"ss_network_module": "networks.lora", "ss_network_dim": str(ranks[-1] if ranks else 0),
                "ss_network_alpha": str(alphas[-1] if alphas else 0), "ss_output_name": title,
                "modelspec.title": title}
    if architecture in BASE_MODEL_VERSION:
        metadata["ss_base_model_version"] = BASE_MODEL_VERSION[architecture]
        metadata["ss_v2"] = str(architecture == "sd2")
    return metadata


def save_lora(lora: LoraSet, path: Path, fmt: str, metadata: dict[str, str]) -> Path:
    """Write ``lora`` to ``path`` atomically in ``fmt`` ('kohya' or 'diffusers')."""
    from safetensors.torch import save

    if fmt not in ("kohya", "diffusers"):
        raise InputError(f"format must be kohya or diffusers, got {fmt!r}")
    tensors = kohya_tensors(lora) if fmt == "kohya" else diffusers_tensors(lora)
    atomic_write_bytes(path, save(tensors, metadata={k: str(v) for k, v in metadata.items()}))
    return path
