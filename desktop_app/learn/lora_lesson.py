"""Lesson 4, LoRA: ``W + scale·(α/r)·B·A`` on the pretrained toy network's hidden layer, live in numpy, and
the parameter count ``r·(d_in + d_out)`` against ``d_in·d_out`` for the toy and for real layers.

The adapter is a trained one: ``resources/models/toy-lora-shifted.safetensors``, what the ``toy-lora`` preset
trains on the trainer (rank 8 on the hidden layer, the pretrained network asked its task the other way round; a
test re-derives the file).  A rank below 8 keeps its strongest directions (the best rank-r approximation of
its change), so the rank slider changes the output too; from 8 up the change is the file's exactly.  The
real layers and the whole-model counts come from the registry (:mod:`trainer.families.example_layers`).  GUI
thread only.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QHBoxLayout, QHeaderView, QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

from desktop_app import paths
from desktop_app.learn.i18n import marked, tr
from desktop_app.learn.toy_math import (
    LoraAdapter,
    ToyWeights,
    forward,
    load_toy_lora,
    lora_parameters,
    strongest_directions,
)
from desktop_app.learn.widgets import FloatSlider
from trainer.families.example_layers import EXAMPLE_LAYERS

LAYER = "hidden_layer"
PROBE_INPUT = np.linspace(0.2, 0.8, 10)


def compact(count: float) -> str:
    """12,345 → '12.3 k'; 2,567,463,684 → '2.57 G' (tables of counts that span nine digits)."""
    for limit, suffix in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if count >= limit:
            return f"{count / limit:.3g}{suffix}"
    return str(int(count))


def short_layer_name(layer: str) -> str:
    """'mid_block.attentions.0.transformer_blocks.0.attn2.to_k' → 'mid_block … attn2.to_k' (the full name is the
    cell's tooltip)."""
    parts = layer.split(".")
    return layer if len(parts) <= 3 else f"{parts[0]} … {'.'.join(parts[-2:])}"


class MatrixDiagram(QWidget):
    """W (d_out × d_in) + (α/r)·B (d_out × r)·A (r × d_in), each box drawn to its shape's proportions."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.rank = 4
        self.setMinimumSize(300, 170)

    def show_rank(self, rank: int) -> None:
        self.rank = rank
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        # Sized to fit: 50 + r + 50 units across (W, B, A side by side) plus the signs, 50 units down.
        unit = min((self.height() - 40) / 50, (self.width() - 90) / (100 + self.rank), 2.6)
        top = 12.0
        x = 10.0
        font = QFont(painter.font())
        font.setPointSizeF(11)
        painter.setFont(font)

        def box(width: float, height: float, colour: str, label: str, caption: str) -> None:
            nonlocal x
            painter.setPen(QPen(QColor("#334e68"), 1))
            painter.setBrush(QColor(colour))
            painter.drawRect(QRectF(x, top, width, height))
            painter.setPen(QColor("#1f2933"))
            painter.drawText(QRectF(x, top, width, height), Qt.AlignmentFlag.AlignCenter, label)
            painter.setPen(QColor("#52606d"))
            painter.drawText(QRectF(x - 20, top + height + 2, width + 40, 18), Qt.AlignmentFlag.AlignCenter, caption)
            x += width

        def sign(text: str) -> None:
            nonlocal x
            painter.setPen(QColor("#1f2933"))
            painter.drawText(QRectF(x, top, 56, 50 * unit), Qt.AlignmentFlag.AlignCenter, text)
            x += 56

        side = 50 * unit
        thin = max(self.rank * unit, 3.0)
        box(side, side, "#d9e2ec", "W", "50 × 50")
        sign("+ α/r ·")
        box(thin, side, "#fcd9bd", "B" if thin > 14 else "", f"50 × {self.rank}")
        x += 8
        box(side, thin, "#c6f7e2", "A" if thin > 14 else "", f"{self.rank} × 50")
        painter.end()


def trained_lora() -> LoraAdapter:
    """The shipped adapter the lesson shows (``toy-lora`` preset's output)."""
    return load_toy_lora(paths.resources_dir() / "models" / "toy-lora-shifted.safetensors")[LAYER]


class LoraLesson(QWidget):
    def __init__(self, network: ToyWeights, adapter: LoraAdapter | None = None, parent: QWidget | None = None
                 ) -> None:
        super().__init__(parent)
        self.network = network
        self.adapter = adapter or trained_lora()
        self.rank = FloatSlider(marked("Rank r"), 1, 32, 1, 4, decimals=0)
        self.scale = FloatSlider(marked("Scale (strength)"), 0.0, 2.0, 0.05, 1.0)
        self.diagram = MatrixDiagram()
        self.output = QLabel()
        self.output.setObjectName("loraOutput")
        self.output.setStyleSheet("font-size: 12pt; font-weight: 600; color: #1f2933;")
        self.output.setWordWrap(True)
        self.trained = QLabel()
        self.trained.setObjectName("loraTrained")
        self.trained.setWordWrap(True)
        self.trained.setProperty("role", "subtle")
        self.counts = QLabel()
        self.counts.setObjectName("loraCounts")
        self.counts.setWordWrap(True)
        self.table = QTableWidget(len(EXAMPLE_LAYERS) + 1, 4)
        self.table.setObjectName("loraTable")
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.setTextElideMode(Qt.TextElideMode.ElideNone)
        self.table.setMinimumHeight(150)
        numbers = QVBoxLayout()
        numbers.addWidget(self.output)
        numbers.addWidget(self.trained)
        numbers.addWidget(self.counts)
        numbers.addStretch(1)
        middle = QHBoxLayout()
        middle.addWidget(self.diagram, 3)
        middle.addLayout(numbers, 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.rank)
        layout.addWidget(self.scale)
        layout.addLayout(middle)
        layout.addWidget(self.table, 1)
        self.rank.valueChanged.connect(self.refresh)
        self.scale.valueChanged.connect(self.refresh)
        self.retranslate()

    def change(self) -> np.ndarray:
        """The trained change ``(α/r)·B·A`` kept to the slider's rank, times the scale."""
        return self.scale.value() * strongest_directions(self.adapter.delta(), int(self.rank.value()))

    def adapted_network(self) -> ToyWeights:
        return self.network.with_weight(LAYER, self.network.weights[LAYER] + self.change())

    def outputs(self) -> tuple[float, float]:
        """(base network's output, adapted network's output) for the lesson's fixed input."""
        return forward(self.network, PROBE_INPUT).output, forward(self.adapted_network(), PROBE_INPUT).output

    def refresh(self, *_: object) -> None:
        rank = int(self.rank.value())
        self.diagram.show_rank(rank)
        base, adapted = self.outputs()
        self.output.setText(tr("Output without LoRA: {base}, with LoRA: {adapted}").format(
            base=f"{base:+.4f}", adapted=f"{adapted:+.4f}"))
        self.trained.setText(tr("The adapter was trained at rank {trained} (the toy-lora preset). Below that, "
                                "the slider keeps its {rank} strongest directions.").format(
            trained=self.adapter.rank, rank=min(rank, self.adapter.rank)))
        d_out, d_in = self.network.weights[LAYER].shape
        lora = lora_parameters(d_in, d_out, rank)
        self.counts.setText(tr("Toy hidden layer: LoRA trains r·(d_in + d_out) = {rank}·({d_in} + {d_out}) = "
                               "{lora} numbers instead of d_in·d_out = {full} ({share}).").format(
            rank=rank, d_in=d_in, d_out=d_out, lora=lora, full=d_in * d_out, share=f"{lora / (d_in * d_out):.0%}"))
        for row, example in enumerate(EXAMPLE_LAYERS):
            full = example.d_in * example.d_out
            lora = lora_parameters(example.d_in, example.d_out, rank)
            cells = (f"{example.display_name}\n{short_layer_name(example.layer)}", f"{example.d_in}→{example.d_out}",
                     f"{compact(full)} → {compact(lora)} ({lora / full:.2%})",
                     f"{compact(example.model_parameters)} → {compact(example.lora_model_parameters(rank))} "
                     f"({example.lora_model_parameters(rank) / example.model_parameters:.2%})")
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(example.layer if column == 0 else text)
                self.table.setItem(row, column, item)
        note = QTableWidgetItem(tr("Whole model: the LoRA on its default layers against every weight of the "
                                   "UNet or transformer."))
        self.table.setItem(len(EXAMPLE_LAYERS), 0, note)
        self.table.setSpan(len(EXAMPLE_LAYERS), 0, 1, 4)
        self.table.resizeRowsToContents()

    def retranslate(self) -> None:
        self.rank.retranslate()
        self.scale.retranslate()
        self.table.setHorizontalHeaderLabels([tr("Model and layer"), tr("Shape"), tr("Layer: full → LoRA"),
                                              tr("Whole model: full → LoRA")])
        self.refresh()
