"""Lesson 6, merging (the guide's chapter 2 teaser): two toy LoRAs blended with a weight slider, and "add
difference" on the toy network's weights, all in numpy on the pretrained toy network.

Both LoRAs sit on the hidden layer and were trained on the trainer by the ``toy-lora`` preset, from the same
pretrained network: LoRA 1 on its task asked the other way round (``resources/models/toy-lora-shifted``, lesson
4's), LoRA 2 on a different task (``toy-lora-task1``); a test re-derives both files.  The blend is
``W + (1 − w)·ΔW₁ + w·ΔW₂``: at w = 0 it is the first LoRA's network exactly, at w = 1 the second's.  Add
difference is ``C + m·(A − B)``: what fine-tuning taught B (becoming A), carried over to another model C.
GUI thread only.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtWidgets import QGroupBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from desktop_app import paths
from desktop_app.learn.i18n import marked, tr
from desktop_app.learn.toy_math import ToyWeights, add_difference, forward, load_toy_lora, weighted_merge
from desktop_app.learn.widgets import FloatSlider, MatrixHeat, TrLabel

LAYER = "hidden_layer"
LORA_FILES = ("toy-lora-shifted.safetensors", "toy-lora-task1.safetensors")
PROBE_INPUT = np.linspace(0.2, 0.8, 10)


class MergeLesson(QWidget):
    def __init__(self, network: ToyWeights, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.network = network
        # Each LoRA's change to the layer, ΔW = (α/r)·B·A: two trained skills.
        models = paths.resources_dir() / "models"
        self.deltas = [load_toy_lora(models / name)[LAYER].delta() for name in LORA_FILES]
        self.blend = FloatSlider(marked("Weight w of LoRA 2"), 0.0, 1.0, 0.01, 0.5)
        self.blend_result = QLabel()
        self.blend_result.setObjectName("blendResult")
        self.blend_result.setWordWrap(True)
        self.multiplier = FloatSlider(marked("Multiplier m"), 0.0, 2.0, 0.05, 1.0)
        self.difference_result = QLabel()
        self.difference_result.setObjectName("differenceResult")
        self.difference_result.setWordWrap(True)
        self.blend_box = QGroupBox()
        blend_layout = QVBoxLayout(self.blend_box)
        self.blend_formula = TrLabel(marked("Merged layer = W + (1 − w)·ΔW₁ + w·ΔW₂, where ΔW = (α/r)·B·A of each "
                                            "LoRA. Both were trained from the same network: LoRA 1 on its task "
                                            "asked the other way round, LoRA 2 on a different task."),
                                     role="subtle")
        blend_layout.addWidget(self.blend_formula)
        blend_layout.addWidget(self.blend)
        blend_layout.addWidget(self.blend_result)
        # The hidden layer's changes, side by side: the merged one fades from the first LoRA's to the second's.
        self.blend_heats = [MatrixHeat(marked("ΔW₁ (LoRA 1)")), MatrixHeat(marked("merged change")),
                            MatrixHeat(marked("ΔW₂ (LoRA 2)"))]
        heats = QHBoxLayout()
        for heat in self.blend_heats:
            heats.addWidget(heat)
        blend_layout.addLayout(heats, 1)
        self.difference_box = QGroupBox()
        difference_layout = QVBoxLayout(self.difference_box)
        self.difference_formula = TrLabel(marked(
            "Add difference: C + m·(A − B). B is the pretrained network, A is B after fine-tuning (here: B with "
            "LoRA 1 fused in), C is another model (B with LoRA 2). A − B is exactly what fine-tuning taught; "
            "adding it to C gives C that skill too."), role="subtle")
        difference_layout.addWidget(self.difference_formula)
        difference_layout.addWidget(self.multiplier)
        difference_layout.addWidget(self.difference_result)
        self.difference_heats = [MatrixHeat(marked("A − B: what fine-tuning taught")),
                                 MatrixHeat(marked("C + m·(A − B) − C"))]
        heats = QHBoxLayout()
        for heat in self.difference_heats:
            heats.addWidget(heat)
        difference_layout.addLayout(heats, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.blend_box, 1)
        layout.addWidget(self.difference_box, 1)
        self.blend.valueChanged.connect(self.refresh)
        self.multiplier.valueChanged.connect(self.refresh)
        self.retranslate()

    def lora_network(self, index: int) -> ToyWeights:
        """The pretrained network with LoRA ``index`` (0 or 1) fused into its hidden layer."""
        return self.network.with_weight(LAYER, self.network.weights[LAYER] + self.deltas[index])

    def blended_network(self) -> ToyWeights:
        first, second = (self.lora_network(i).weights[LAYER] for i in (0, 1))
        return self.network.with_weight(LAYER, weighted_merge(first, second, self.blend.value()))

    def difference_network(self) -> ToyWeights:
        original, tuned, other = self.network, self.lora_network(0), self.lora_network(1)
        return other.with_weight(LAYER, add_difference(other.weights[LAYER], tuned.weights[LAYER],
                                                       original.weights[LAYER], self.multiplier.value()))

    def refresh(self, *_: object) -> None:
        weight = self.network.weights[LAYER]
        scale = float(np.percentile(np.abs(np.concatenate([d.ravel() for d in self.deltas])), 98))
        merged = self.blended_network().weights[LAYER] - weight
        for heat, matrix in zip(self.blend_heats, (self.deltas[0], merged, self.deltas[1]), strict=True):
            heat.show_matrix(matrix, scale)
        added = self.difference_network().weights[LAYER] - self.lora_network(1).weights[LAYER]
        for heat, matrix in zip(self.difference_heats, (self.deltas[0], added), strict=True):
            heat.show_matrix(matrix, scale)

        def out(net: ToyWeights) -> str:
            return f"{forward(net, PROBE_INPUT).output:+.4f}"

        self.blend_result.setText(tr("Output with LoRA 1: {first}    with LoRA 2: {second}    merged: {merged}")
                                  .format(first=out(self.lora_network(0)), second=out(self.lora_network(1)),
                                          merged=out(self.blended_network())))
        self.difference_result.setText(tr("B (pretrained): {original}    A (fine-tuned): {tuned}    C: {other}"
                                          "    C + m·(A − B): {result}").format(
            original=out(self.network), tuned=out(self.lora_network(0)), other=out(self.lora_network(1)),
            result=out(self.difference_network())))

    def retranslate(self) -> None:
        self.blend_box.setTitle(tr("Two LoRAs, one slider"))
        self.difference_box.setTitle(tr("Add difference"))
        for widget in (self.blend, self.multiplier, self.blend_formula, self.difference_formula, *self.blend_heats,
                       *self.difference_heats):
            widget.retranslate()
        self.refresh()
