"""What the hyperparameter form needs to know about each config field, derived from trainer/config.py.

The config declares every field once (type, range, default, description); this module turns a
pydantic ``FieldInfo`` into a :class:`FieldMeta` — which editor to use, its range, a label and a
tooltip — so the form never repeats a declaration.
"""

from __future__ import annotations

import re
import tomllib
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic_core import PydanticUndefined

from trainer.config import Config, Section
from trainer.families import FAMILIES

INT32_MAX = 2**31 - 1  # QSpinBox holds a C int

SECTION_TITLES = {
    "model": "Base model", "dataset": "Dataset", "training": "Training", "toy": "Toy network",
    "frozen": "Frozen layers", "lora": "LoRA", "dreambooth": "DreamBooth", "sampling": "Samples",
    "embedding": "New word (textual inversion)",
    "output": "Output",
}

# Labels that humanising the field name would get wrong.
LABELS = {
    "mode": "What to train", "training.log_every": "Log every", "training.eval_every": "Held-out loss every",
    "toy.weights_every": "Weights preview every", "toy.step_delay_ms": "Step delay", "toy.samples": "Data points",
    "toy.holdout_fraction": "Held-out share", "toy.task_seed": "Task seed", "output.runs_dir": "Runs folder",
    "lora.train_text_encoder": "Train text encoder", "model.path": "Base weights", "dataset.path": "Image folder",
    "model.vae_file": "VAE file", "model.text_encoder_files": "Text encoder files",
    "model.tokenizer_folder": "Tokenizer folder",
    "dreambooth.class_dir": "Class images", "sampling.every_n_steps": "Sample every",
    "output.checkpoint_every": "Checkpoint every", "output.keep_checkpoints": "Keep checkpoints",
    "dreambooth.num_class_images": "Class image count", "sampling.at_start": "Sample at start",
    "training.lr_cycles": "Restarts (cosine)", "training.lr_power": "Power (polynomial)",
    "training.ema_decay": "EMA decay", "training.ema_on_cpu": "EMA in RAM", "training.min_snr_gamma": "Min-SNR γ",
    "model.base_quantization": "Base weights in", "model.blocks_to_swap": "Blocks swapped to RAM",
    "model.text_encoder_device": "Text encoders wait on", "model.text_encoder_quantization": "Text encoders in",
    "output.tensorboard": "TensorBoard files",
    "dataset.keep_tags": "Keep first tags", "lora.adapter": "Adapter", "sampling.sampler": "Sampler",
    "embedding.token": "New word", "embedding.init_text": "Starts from", "embedding.vectors": "Vectors",
    "embedding.learning_rate": "Word learning rate",
    "dataset.masked_loss": "Masked loss", "dataset.unmasked_weight": "Unmasked weight",
    "training.debiased_estimation": "Debiased estimation", "training.timestep_min": "Lowest timestep",
    "training.timestep_max": "Highest timestep", "training.multires_noise_iterations": "Multires noise levels",
    "training.multires_noise_discount": "Multires noise discount", "training.zero_terminal_snr": "Zero terminal SNR",
}

SUFFIXES = {"toy.step_delay_ms": " ms", "dataset.resolution": " px", "dataset.repeats": "×"}

# The architecture list shows the registry's names for people ("Stable Diffusion 1.x", "Flux.1").
ARCHITECTURE_TITLES = {name: f.display_name for name, f in FAMILIES.items()}
# The names the samplers have in A1111 and ComfyUI.
SAMPLER_TITLES = {"default": "Default (DDIM)", "ddim": "DDIM", "euler": "Euler", "euler_a": "Euler a", "heun": "Heun",
                  "dpm++_2m": "DPM++ 2M", "dpm++_2m_karras": "DPM++ 2M Karras", "unipc": "UniPC", "pndm": "PNDM"}
MODE_TITLES = {"toy": "Toy network", "frozen": "Frozen layers", "lora": "LoRA", "dreambooth": "DreamBooth",
               "embedding": "Textual inversion"}
MODE_HINTS = {
    "toy": "The guide's three-layer network learns a synthetic task from scratch. Quick on any CPU.",
    "frozen": "Start from trained weights and train only the layers you name; the rest stay frozen.",
    "lora": "Train a small low-rank adapter on top of a diffusion model and export it as a LoRA file.",
    "dreambooth": "Teach a diffusion model a new subject from a few photos, named by a rare token.",
    "embedding": "Teach the text encoder a new word for your subject or style; the model itself stays as it is. "
                 "The file is a few kilobytes and works with any checkpoint of the same family.",
}

# A preset named for the card it fits: ``flux2klein-lora-12gb`` is made for a 12 GB GPU.
_CARD_IN_NAME = re.compile(r"-(\d+)gb$")


def architecture_groups() -> list[tuple[str, list[str]]]:
    """The registry's families grouped by their ``generation``, in the registry's order: what the architecture
    list shows under one header each (the toy, of no generation, comes first under none)."""
    groups: list[tuple[str, list[str]]] = []
    for name, family in FAMILIES.items():
        if groups and groups[-1][0] == family.generation:
            groups[-1][1].append(name)
        else:
            groups.append((family.generation, [name]))
    return groups


def smallest_cards(presets: Iterable[Path]) -> dict[str, tuple[int, str]]:
    """For each architecture, the smallest GPU (in GB) one of ``presets`` is made for and that preset's name (the
    shorter of two for the same card: ``sd15-lora-8gb``, not ``sd15-loha-style-8gb``),
    read from the presets themselves (their ``model.architecture`` and the ``-<N>gb`` of their name), so the
    architecture list says what the shipped presets say.  Architectures without such a preset are absent."""
    cards: dict[str, tuple[int, str]] = {}
    for path in presets:
        found = _CARD_IN_NAME.search(path.stem)
        if found is None:
            continue
        architecture = tomllib.loads(path.read_text(encoding="utf-8")).get("model", {}).get("architecture")
        card = (int(found[1]), path.stem)
        if architecture in FAMILIES and (architecture not in cards or _rank(card) < _rank(cards[architecture])):
            cards[architecture] = card
    return cards


def _rank(card: tuple[int, str]) -> tuple[int, int]:
    return card[0], len(card[1])


EditorKind = Literal["int", "float", "scientific", "choice", "bool", "text", "path", "list_str", "list_int"]


@dataclass(frozen=True)
class FieldMeta:
    name: str  # dotted: "training.learning_rate", or "mode"
    kind: EditorKind
    label: str
    description: str
    default: Any
    minimum: float | None = None
    maximum: float | None = None
    min_exclusive: bool = False
    max_exclusive: bool = False
    multiple_of: int | None = None
    choices: tuple[str, ...] = ()
    suffix: str = ""

    @property
    def tooltip(self) -> str:
        lines = [self.description]
        if self.range_text:
            lines.append(f"Range: {self.range_text}")
        lines.append(f"Default: {format_value(self.default)}")
        return "\n".join(lines)

    @property
    def range_text(self) -> str:
        parts = []
        if self.minimum is not None:
            parts.append(f"{'>' if self.min_exclusive else '≥'} {format_value(self.minimum)}")
        if self.maximum is not None:
            parts.append(f"{'<' if self.max_exclusive else '≤'} {format_value(self.maximum)}")
        text = " and ".join(parts)
        if self.multiple_of:
            text += f"{', ' if text else ''}a multiple of {self.multiple_of}"
        return text


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value) or "(none)"
    return f'"{value}"' if value else "(empty)"


def humanize(name: str) -> str:
    words = name.replace("_", " ")
    return words[:1].upper() + words[1:]


def section_names() -> list[str]:
    return [name for name, info in Config.model_fields.items() if _section_type(info.annotation) is not None]


def field_names(section: str) -> list[str]:
    section_type = _section_type(Config.model_fields[section].annotation)
    assert section_type is not None
    return [f"{section}.{name}" for name in section_type.model_fields]


def all_field_names() -> list[str]:
    """Every value the settings hold: the top-level keys, each section's fields, and ``concepts``
    (the further concepts, one list of tables, edited on the Dataset page)."""
    return (["schema_version", "mode"] + [name for section in section_names() for name in field_names(section)]
            + ["concepts"])


def meta_for(dotted: str) -> FieldMeta:
    if "." in dotted:
        section, name = dotted.split(".")
        section_type = _section_type(Config.model_fields[section].annotation)
        assert section_type is not None
        info = section_type.model_fields[name]
    else:
        name, info = dotted, Config.model_fields[dotted]
    default = info.default_factory() if info.default is PydanticUndefined and info.default_factory else info.default
    bounds: dict[str, Any] = {}
    for item in info.metadata:
        for attr in ("ge", "gt", "le", "lt", "multiple_of"):
            if getattr(item, attr, None) is not None:
                bounds[attr] = getattr(item, attr)
    minimum = bounds.get("ge", bounds.get("gt"))
    maximum = bounds.get("le", bounds.get("lt"))
    kind, choices = _kind(dotted, info.annotation, info.json_schema_extra, bounds)
    suffix = SUFFIXES.get(dotted, " steps" if name.endswith("_every") or name.startswith("every_") else "")
    return FieldMeta(name=dotted, kind=kind, label=LABELS.get(dotted, humanize(name)),
                     description=info.description or "", default=default, minimum=minimum, maximum=maximum,
                     min_exclusive="gt" in bounds, max_exclusive="lt" in bounds,
                     multiple_of=bounds.get("multiple_of"), choices=choices, suffix=suffix)


def _kind(dotted: str, annotation: Any, extra: Any, bounds: dict[str, Any]) -> tuple[EditorKind, tuple[str, ...]]:
    if typing.get_origin(annotation) is Literal:
        return "choice", tuple(str(arg) for arg in typing.get_args(annotation))
    if annotation is bool:
        return "bool", ()
    if annotation is int:
        return "int", ()
    if annotation is float:
        # Strictly positive quantities that span decades (learning rate, alpha): type 1e-4, don't spin to it.
        spans_decades = "gt" in bounds and (bounds.get("le", bounds.get("lt")) or float("inf")) > 1
        return ("scientific" if spans_decades else "float"), ()
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation)
        return ("list_int" if item is int else "list_str"), ()
    if isinstance(extra, dict) and extra.get("path"):
        return "path", ()
    return "text", ()


def _section_type(annotation: Any) -> type[Section] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, Section) else None
