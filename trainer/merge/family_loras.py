"""LoRA files of the transformer families (SD 3.5, Flux.1, Chroma, Z-Image, Qwen-Image, Flux.2, …): which family a
file is for, which of its two layouts it is in, and the exact way between the layouts.

Kamaal's export writes two files per LoRA run of such a family (``trainer.lora_formats``), and the tools people use
write the same two kinds:

* **diffusers**: ``transformer.<module>.lora_A.weight`` / ``.lora_B.weight`` (``text_encoder.<module>…`` for CLIP),
  the scale folded into B — what the family pipeline's ``load_lora_weights`` reads;
* **original** (kohya, ComfyUI, musubi-tuner, ai-toolkit): ``lora_unet_<original path, dots as underscores>`` (Ideogram
  4: ``diffusion_model.<original path>``) ``.lora_down/.lora_up/.alpha``, CLIP as ``lora_te1_…``, where one fused
  original layer (Flux's ``img_attn.qkv``) is one module whose down stacks its parts' downs and whose up is
  block-diagonal.  Only families with ``KohyaFacts.transformer_layout`` have it (Z-Image and HiDream do not yet).

In memory (``LoraSet.layout`` set) modules keep the file's own module names, so a merge of files of one layout writes
every key the inputs had and loads wherever they loaded.  Between the layouts the family's layout function gives the
mapping, exact both ways: joining stacks the parts' downs and places their ups block-diagonally (the sum of the
parts, as the export writes it); splitting gives each part the shared down and its own rows of up, then drops the
columns that are zero in those rows (the other parts' blocks), which gives back the ranks the export started from.
The layout needs the transformer's widths: it is built from the family's shipped configs and its tiny test config,
and the one whose fused layers have the file's row counts is used.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable

import torch

from trainer import families
from trainer.errors import InputError
from trainer.lora_names import dotted, kohya_name
from trainer.merge.lora_set import LoraModule, LoraSet

DIFFUSERS, ORIGINAL = "diffusers", "original"
LAYOUT_LABELS = {DIFFUSERS: "diffusers layout", ORIGINAL: "original (kohya/ComfyUI) layout"}
DIFFUSERS_PARTS = ((".lora_A.weight", ".lora_B.weight"), (".lora.down.weight", ".lora.up.weight"))
Place = tuple[str, int, int, int, bool]  # original path, first row, rows, the original layer's rows, halves swapped
# How a diffusers-layout file names the denoiser: diffusers' own ``transformer.``, or ``diffusion_model.`` (ai-toolkit's
# files for the newer families, ComfyUI's model prefix; diffusers' loaders strip it) before the same module paths.
DENOISER_PREFIXES = ("transformer.", "diffusion_model.")


def transformer_members(lora_family: str) -> list[families.Family]:
    return [f for f in families.by_lora_family(lora_family) if f.kind == "transformer"]


def transformer_lora_families() -> list[str]:
    """The LoRA families of the transformer families, in registry order."""
    return list(dict.fromkeys(f.kohya.lora_family for f in families.FAMILIES.values()
                              if f.kind == "transformer" and f.kohya is not None))


def label(lora_family: str) -> str:
    return families.lora_family_facts(lora_family).lora_family_label


def describe(lora: LoraSet) -> str:
    """The family a transformer LoRA is for, for messages: "Flux.1", "Flux.1 or Chroma"."""
    return " or ".join(label(name) for name in lora.lora_families) or "a transformer model Kamaal does not name"


# ---- which family ------------------------------------------------------------------------------------------------

def kamaal_architecture(metadata: dict[str, str]) -> str | None:
    """The family Kamaal's own metadata names: ``kamaal.family`` (the kohya file), else the architecture of the
    ``kamaal.config`` the LoRA was trained with (the diffusers file); None where neither names a known family."""
    architecture = metadata.get("kamaal.family")
    if not architecture and metadata.get("kamaal.config"):
        try:
            architecture = json.loads(metadata["kamaal.config"]).get("model", {}).get("architecture")
        except (ValueError, AttributeError, RecursionError):
            architecture = None
    return architecture if isinstance(architecture, str) and architecture in families.FAMILIES else None


def family_from_metadata(metadata: dict[str, str]) -> str | None:
    """The LoRA family a file's metadata names: Kamaal's own (``kamaal_architecture``), else kohya's/modelspec's
    fields as the families declare them.  None: not a transformer family's."""
    architecture = kamaal_architecture(metadata)
    member = families.FAMILIES.get(architecture) if architecture else None
    if member is not None:
        return member.kohya.lora_family if member.kind == "transformer" and member.kohya else None
    version, spec = metadata.get("ss_base_model_version", ""), metadata.get("modelspec.architecture", "")
    for member in families.FAMILIES.values():
        facts = member.kohya
        if member.kind == "transformer" and facts is not None and (
                (version and version == facts.base_model_version) or (spec and spec == facts.modelspec_architecture)):
            return facts.lora_family
    return None


def families_by_names(modules: dict[str, LoraModule], layout: str) -> tuple[str, ...]:
    """The LoRA families whose layout (for some known transformer size) holds every denoiser module of the file."""
    return tuple(name for name in transformer_lora_families() if _fitting_places(name, modules, layout) is not None)


# ---- the layouts ---------------------------------------------------------------------------------------------------

def _layout_function(lora_family: str) -> Callable[[dict], dict[str, Place]] | None:
    import importlib

    spec = families.lora_family_facts(lora_family).transformer_layout
    if spec is None:
        return None
    module_name, function_name = spec.split(":")
    return getattr(importlib.import_module(module_name), function_name)


def _configs(member: families.Family) -> list[dict]:
    """The denoiser configs a LoRA for ``member`` may have been trained on: the shipped ones of its class (the real
    models' sizes), then the tiny test model's (its arguments over the class's defaults)."""
    import diffusers

    from trainer.models.info import MODEL_CONFIGS

    class_name, arguments = member.tiny["denoiser"]
    found: list[dict] = []
    for path in sorted(MODEL_CONFIGS.glob(f"*/{member.denoiser}/config.json")):
        config = json.loads(path.read_text(encoding="utf-8"))
        if config.get("_class_name") == class_name:
            found.append(config)
    parameters = inspect.signature(getattr(diffusers, class_name).__init__).parameters
    defaults = {k: p.default for k, p in parameters.items() if p.default is not inspect.Parameter.empty}
    return [*found, defaults | dict(arguments)]


@functools.cache
def family_layouts(lora_family: str) -> tuple[dict[str, Place], ...]:
    """The family's layout (diffusers path → original place) for each known transformer size."""
    function = _layout_function(lora_family)
    if function is None:
        return ()
    layouts: list[dict[str, Place]] = []
    for member in transformer_members(lora_family):
        for config in _configs(member):
            try:
                layout = function(config)
            except (KeyError, TypeError, ValueError, IndexError):  # a config of another variant's shape
                continue
            if layout not in layouts:
                layouts.append(layout)
    return tuple(layouts)


def original_key(lora_family: str, original_path: str) -> str:
    prefix = families.lora_family_facts(lora_family).original_prefix
    return prefix + (original_path if prefix.endswith(".") else original_path.replace(".", "_"))


def _is_text(name: str) -> bool:
    return name.startswith(("text_encoder", "lora_te"))


def _fitting_places(lora_family: str, modules: dict[str, LoraModule], layout: str) -> dict[str, Place] | None:
    """The family's layout whose names and fused row counts fit the file's denoiser modules; None if none does."""
    denoiser = {name: module for name, module in modules.items() if not _is_text(name)}
    if not denoiser:
        return None
    for places in family_layouts(lora_family):
        if layout == DIFFUSERS:
            fits = all(denoiser_path(name) in places and places[denoiser_path(name)][2] in (0, module.up.shape[0])
                       for name, module in denoiser.items())
        else:
            totals = {original_key(lora_family, place[0]): place[3] for place in places.values()}
            fits = all(name in totals and totals[name] in (0, module.up.shape[0]) for name, module in denoiser.items())
        if fits:
            return places
    return None


# ---- between the layouts -------------------------------------------------------------------------------------------

def convert_layout(lora: LoraSet, target: str, what: str) -> LoraSet:
    """``lora`` (a transformer family's, ``layout`` set) in the ``target`` layout, exactly; ``InputError`` naming
    ``what`` where the family or its mapping is not known."""
    if lora.layout == target:
        return lora
    family = lora.family()
    if family is None:
        possible = ", ".join(label(name) for name in lora.lora_families) or "no family Kamaal knows"
        raise InputError(f"{what}: cannot tell which model family the LoRA is for (its metadata does not say; its "
                         f"module names fit {possible}), so it cannot be converted between layouts")
    places = _fitting_places(family, lora.modules, lora.layout)
    if places is None:
        has_layout = bool(family_layouts(family))
        why = ("its modules do not fit any known transformer of that family" if has_layout else
               f"Kamaal knows no original (kohya/ComfyUI) layout for {label(family)} LoRAs yet")
        raise InputError(f"{what}: a {label(family)} LoRA in the {LAYOUT_LABELS[lora.layout]} cannot be converted to "
                         f"the {LAYOUT_LABELS[target]}: {why}")
    join = _join if target == ORIGINAL else _split
    modules = join(family, places, {n: m for n, m in lora.modules.items() if not _is_text(n)})
    for name, module in lora.modules.items():
        if _is_text(name):
            other = _text_name(family, lora.layout, name)
            if other is None:
                raise InputError(f"{what}: module {name} is for no text encoder a {label(family)} LoRA trains")
            modules[other] = _scaled(module)
    return LoraSet(dict(sorted(modules.items())), dict(lora.metadata), "kohya" if target == ORIGINAL else "diffusers",
                   layout=target, lora_families=(family,))


def _text_name(lora_family: str, layout: str, name: str) -> str | None:
    """A text-encoder module's name in the other layout: kohya numbers the encoders in the pipeline's order
    (``lora_te1_`` first) and always has CLIP's ``text_model`` level; the diffusers file names them by component and
    module path, which has that level or not as the encoder's class does (transformers 5).  None: no encoder of the
    family has that name."""
    encoders = transformer_members(lora_family)[0].text_encoders
    components = [encoder.component for encoder in encoders]
    if layout == DIFFUSERS:
        component, _, path = name.partition(".")
        if component not in components:
            return None
        index = components.index(component) + 1
        return f"lora_te{index}_" + kohya_name("text_encoder", path, False).removeprefix("lora_te_")
    prefix, _, rest = name.partition("_text_model_")
    number = prefix.removeprefix("lora_te")
    if not rest or not number.isdigit() or not 1 <= int(number) <= len(components):
        return None
    encoder = encoders[int(number) - 1]
    path = dotted("text_model_" + rest)
    return f"{encoder.component}.{path if _has_text_model_level(encoder.transformers_class) else path[11:]}"


@functools.cache
def _has_text_model_level(class_name: str) -> bool:
    """Whether the encoder's module paths start with ``text_model.`` (CLIPTextModelWithProjection's do, transformers
    5's CLIPTextModel's do not): asked of the class itself, built tiny on the meta device."""
    import transformers

    with torch.device("meta"):
        encoder = getattr(transformers, class_name)(transformers.CLIPTextConfig(
            hidden_size=8, intermediate_size=8, num_hidden_layers=1, num_attention_heads=2, vocab_size=8,
            projection_dim=8))
    return any(name == "text_model" for name, _ in encoder.named_children())


def _scaled(module: LoraModule) -> LoraModule:
    """The same ΔW with its scale folded into up (alpha = rank), as both of Kamaal's files store it."""
    return LoraModule(module.down, (module.up.float() * module.scale).to(module.up.dtype), float(module.rank))


def _swap_halves(up: torch.Tensor) -> torch.Tensor:
    return torch.cat(up.chunk(2, dim=0)[::-1])


def _join(lora_family: str, places: dict[str, Place], modules: dict[str, LoraModule]) -> dict[str, LoraModule]:
    """Diffusers modules → original ones: whole layers renamed; a fused layer as the export writes it — one slot of
    the largest part rank per part (in row order), the part's down there and its up in its rows, zero for a part
    not trained."""
    groups: dict[str, dict[str, LoraModule]] = {}
    for name, module in modules.items():
        path = denoiser_path(name)
        groups.setdefault(places[path][0], {})[path] = _scaled(module)
    joined: dict[str, LoraModule] = {}
    for original, trained in groups.items():
        first = places[next(iter(trained))]
        if first[2] == 0:  # a whole layer
            (module,) = trained.values()
            up = _swap_halves(module.up) if first[4] else module.up
            joined[original_key(lora_family, original)] = LoraModule(module.down, up, module.alpha)
            continue
        parts = sorted((place[1], place[2], path) for path, place in places.items() if place[0] == original)
        rank = max(module.rank for module in trained.values())
        some = next(iter(trained.values()))
        down = torch.zeros(rank * len(parts), some.down.shape[1], dtype=some.down.dtype)
        up = torch.zeros(first[3], rank * len(parts), dtype=some.up.dtype)
        for slot, (offset, rows, path) in enumerate(parts):
            if path in trained:
                part = trained[path]
                down[slot * rank: slot * rank + part.rank] = part.down
                up[offset: offset + rows, slot * rank: slot * rank + part.rank] = part.up
        joined[original_key(lora_family, original)] = LoraModule(down, up, float(down.shape[0]))
    return joined


def _split(lora_family: str, places: dict[str, Place], modules: dict[str, LoraModule]) -> dict[str, LoraModule]:
    """Original modules → diffusers ones: each part gets the shared down and its rows of up, less the columns that
    are zero there (another part's block, or a part that was not trained: no module at all)."""
    by_original: dict[str, list[tuple[str, Place]]] = {}
    for path, place in places.items():
        by_original.setdefault(original_key(lora_family, place[0]), []).append((path, place))
    split: dict[str, LoraModule] = {}
    for name, module in modules.items():
        module = _scaled(module)
        for path, (_, offset, rows, _, swapped) in by_original[name]:
            if rows == 0:
                up = _swap_halves(module.up) if swapped else module.up
                split[f"transformer.{path}"] = LoraModule(module.down, up, module.alpha)
                continue
            up = module.up[offset: offset + rows]
            used = up.flatten(1).abs().sum(dim=0) != 0
            if not bool(used.any()):
                continue
            split[f"transformer.{path}"] = LoraModule(module.down[used].contiguous(), up[:, used].contiguous(),
                                                      float(int(used.sum())))
    return split


# ---- reading and writing -------------------------------------------------------------------------------------------

def diffusers_modules(tensors: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor | None, torch.Tensor | None]]:
    """A diffusers-layout transformer file's (down, up) by module name (``transformer.…``, ``text_encoder.…``);
    a key of another kind is left out (the caller refuses it)."""
    found: dict[str, list[torch.Tensor | None]] = {}
    for key, tensor in tensors.items():
        for down, up in DIFFUSERS_PARTS:
            for suffix, slot in ((down, 0), (up, 1)):
                if key.endswith(suffix):
                    found.setdefault(key[: -len(suffix)], [None, None])[slot] = tensor
    return {name: (parts[0], parts[1]) for name, parts in found.items()}


def is_diffusers_transformer_file(tensors: dict[str, torch.Tensor]) -> bool:
    return any(key.startswith(DENOISER_PREFIXES) and key.endswith(tuple(d for d, _ in DIFFUSERS_PARTS))
               for key in tensors)


def denoiser_path(name: str) -> str:
    """A diffusers-layout module name's path in the denoiser ("" for a text encoder's)."""
    prefix = next((p for p in DENOISER_PREFIXES if name.startswith(p)), None)
    return name[len(prefix):] if prefix else ""


def with_denoiser_prefix(lora: LoraSet, prefix: str) -> LoraSet:
    """A diffusers-layout LoRA whose denoiser modules are named with ``prefix``, so files of both spellings merge into
    the first one's names."""
    from dataclasses import replace

    if lora.layout != DIFFUSERS:
        return lora
    modules = {prefix + denoiser_path(name) if denoiser_path(name) else name: module
               for name, module in lora.modules.items()}
    return replace(lora, modules=modules)


def denoiser_prefix(lora: LoraSet) -> str:
    return next((p for name in lora.modules for p in DENOISER_PREFIXES if name.startswith(p)), DENOISER_PREFIXES[0])


def family_tensors(lora: LoraSet) -> dict[str, torch.Tensor]:
    """The file of ``lora``'s layout, every module's scale folded into up/B (alpha = rank), as the export writes."""
    tensors: dict[str, torch.Tensor] = {}
    for name, module in sorted(lora.modules.items()):
        scaled = _scaled(module)
        if lora.layout == DIFFUSERS:
            tensors[f"{name}.lora_A.weight"] = scaled.down.contiguous()
            tensors[f"{name}.lora_B.weight"] = scaled.up.contiguous()
        else:
            tensors[f"{name}.lora_down.weight"] = scaled.down.contiguous()
            tensors[f"{name}.lora_up.weight"] = scaled.up.contiguous()
            tensors[f"{name}.alpha"] = torch.tensor(float(scaled.rank))
    return tensors


def family_metadata(lora: LoraSet, title: str) -> dict[str, str]:
    """What the export's own files carry to say what they are: kohya's and modelspec's fields for the original
    layout (as ``export_kohya_transformer_lora``), and ``kamaal.family`` in both, so Kamaal names the family again."""
    family = lora.family()
    metadata: dict[str, str] = {"format": "pt"} if lora.layout == DIFFUSERS else {}
    if family is None:
        return metadata
    named = kamaal_architecture(lora.metadata)  # an edit variant stays itself (Kontext, not Flux.1)
    metadata["kamaal.family"] = named if named in {m.name for m in transformer_members(family)} else \
        transformer_members(family)[0].name
    if lora.layout == ORIGINAL:
        facts = families.lora_family_facts(family)
        rank = max((m.rank for m in lora.modules.values()), default=0)
        metadata |= {"ss_network_module": facts.network_module, "ss_network_dim": str(rank),
                     "ss_network_alpha": str(rank), "ss_output_name": title,
                     "ss_base_model_version": facts.base_model_version, "modelspec.sai_model_spec": "1.0.0",
                     "modelspec.architecture": facts.modelspec_architecture, "modelspec.title": title,
                     "modelspec.implementation": facts.implementation}
    return metadata
