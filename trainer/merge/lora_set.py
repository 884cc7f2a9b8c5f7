"""A LoRA in memory: modules, each ``ΔW = up @ down · alpha / rank``, and what the file said about itself.

Apart from the readers and writers (``lora_files``, ``family_loras``), so that both can build one without importing
each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from trainer import families


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
    # A transformer family's LoRA (``trainer.merge.family_loras``): "diffusers" or "original", its modules keyed by the
    # file's own module names; and the LoRA families it may be for (one where its metadata names it, none where its
    # names fit no family).  "": an SD family's LoRA, keyed by canonical kohya names.
    layout: str = ""
    lora_families: tuple[str, ...] = ()

    @property
    def two_text_encoders(self) -> bool:
        return any(name.startswith(("lora_te1_", "lora_te2_")) for name in self.modules)

    def family(self) -> str | None:
        """The LoRA family (``KohyaFacts.lora_family``: 'sdxl', 'sd1/2') or None (unknown), from the kohya
        metadata, the number of text encoders and the module names, by the markers the families declare.  A transformer
        family's LoRA: its one possible family, else None."""
        if self.layout:
            return self.lora_families[0] if len(self.lora_families) == 1 else None
        version = (self.metadata.get("ss_base_model_version", "")
                   + self.metadata.get("modelspec.architecture", "")).lower()
        lora_families = {f.kohya.lora_family: f for f in families.FAMILIES.values() if f.kohya is not None}
        for name, member in lora_families.items():
            if any(marker in version for marker in member.kohya.version_markers):  # type: ignore[union-attr]
                return name
        if self.two_text_encoders:
            return next((f.kohya.lora_family for f in families.FAMILIES.values()
                         if f.kohya is not None and len(f.text_encoders) > 1), None)
        names = " ".join(self.modules)
        kohya_v2 = self.metadata.get("ss_v2") is not None  # kohya writes it for SD 1.x/2.x LoRAs
        for name in lora_families:
            members = families.by_lora_family(name)
            if (any(marker in names for f in members for marker in f.kohya.name_markers)  # type: ignore[union-attr]
                    or (kohya_v2 and any(f.kohya.v2 for f in members))):  # type: ignore[union-attr]
                return name
        return None
