"""The model-family registry: one module per family, each declaring what is particular to it.

    from trainer.families import family
    family("sdxl").text_encoders            # what to load, encode, train and name
    family(config.model.architecture).memory  # the memory estimate's constants

Light (no torch): the config, the GUI and the CLI read it.  The engine, the exports, merges and the GUI
ask the registry instead of comparing family names; ``tests/test_house_rules.py`` holds them to it.  A new
family is a new module here (plus its tiny test model and its presets); add it to ``_MODULES``.
"""

from __future__ import annotations

import importlib

from trainer.families.base import Family, FlowFacts, Kind, KohyaFacts, MemoryFacts, PredictionType, TextEncoder

# Order is the order people see them in (the form's architecture list).
_MODULES = ("toy", "sd15", "sd2", "sdxl", "sd3", "flux", "fluxkontext", "chroma", "zimage", "qwenimage",
            "qwenimageedit", "qwenimage21", "hidream", "lumina2", "flux2klein", "flux2kleinedit", "flux2dev",
            "flux2devedit", "ernieimage", "kandinsky5", "krea2", "ideogram4")

FAMILIES: dict[str, Family] = {}
for _module in _MODULES:
    _family: Family = importlib.import_module(f"trainer.families.{_module}").FAMILY
    FAMILIES[_family.name] = _family

NAMES: tuple[str, ...] = tuple(FAMILIES)
# The families that are diffusion models (a base model file, samples, LoRA files).
MODEL_FAMILIES: tuple[str, ...] = tuple(name for name, f in FAMILIES.items() if not f.is_toy)
# The families with a tiny test model (``kamaal-train tiny-model --arch``).
TINY_FAMILIES: tuple[str, ...] = tuple(name for name in MODEL_FAMILIES if FAMILIES[name].tiny)


def family(name: str) -> Family:
    """The family called ``name`` (a config's ``model.architecture``); ``KeyError`` naming the known ones."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise KeyError(f"unknown model family {name!r} (known: {', '.join(NAMES)})") from None


def is_toy(name: object) -> bool:
    """Whether ``name`` is the toy network (not a diffusion model: no images, samples or base files)."""
    found = FAMILIES.get(name) if isinstance(name, str) else None
    return found is not None and found.is_toy


def kohya_facts(name: str) -> KohyaFacts:
    """How kohya's files describe the family ``name``; ``KeyError`` for a family without LoRA files (the toy)."""
    facts = family(name).kohya
    if facts is None:
        raise KeyError(f"model family {name!r} has no LoRA files")
    return facts


def by_pipeline_class(class_name: str) -> list[Family]:
    """The families a diffusers folder's ``model_index.json`` ``_class_name`` can be."""
    return [f for f in FAMILIES.values() if f.pipeline_class == class_name]


def by_lora_family(lora_family: str) -> list[Family]:
    return [f for f in FAMILIES.values() if f.kohya is not None and f.kohya.lora_family == lora_family]


def lora_family_facts(lora_family: str) -> KohyaFacts:
    """The kohya facts shared by the families of ``lora_family`` (the first family's)."""
    members = by_lora_family(lora_family)
    if not members or members[0].kohya is None:
        raise KeyError(f"unknown LoRA family {lora_family!r}")
    return members[0].kohya


__all__ = ["FAMILIES", "MODEL_FAMILIES", "NAMES", "TINY_FAMILIES", "Family", "FlowFacts", "Kind", "KohyaFacts",
           "MemoryFacts", "PredictionType", "TextEncoder", "by_lora_family", "by_pipeline_class", "family", "is_toy",
           "kohya_facts", "lora_family_facts"]
