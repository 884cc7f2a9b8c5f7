"""The toy network's weights and biases as heatmaps, one column per layer, updating as it learns.

Each layer shows its weight matrix (one row per neuron, one column per input) with its bias as a
strip beside it, row for row — the guide's ``y = W·x + b``.  All trainable layers share one
diverging colour scale (blue negative, red positive, shown by the colour bar) so their sizes can
be compared; it spans the 98th percentile of the values, so a few large weights do not wash out
the rest.  Frozen layers are drawn in muted grey with a "❄ frozen" label: they do not change.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, Qt
from PySide6.QtWidgets import QLabel, QStackedLayout, QWidget

from desktop_app.learn.i18n import tr
from desktop_app.preview.run_model import RunModel
from trainer.protocol import LayerSnapshot, LayerWeights

TRAINABLE_MAP = pg.colormap.get("CET-D1A")
FROZEN_MAP = pg.colormap.get("CET-L1")
TEXT = "#333333"
MUTED = "#8a8f98"


def robust_scale(layers: list[LayerSnapshot]) -> float:
    """The 98th percentile of |value| over the layers' weights and biases (1.0 when there is nothing)."""
    values = np.abs(np.concatenate([np.asarray(layer.weight + layer.bias, dtype=np.float32) for layer in layers]))
    scale = float(np.percentile(values, 98)) if values.size else 1.0
    return scale if np.isfinite(scale) and scale > 0 else 1.0


class LayerView:
    """The weights and bias images of one layer, inside a sub-layout of the graphics scene."""

    def __init__(self, layout: pg.GraphicsLayout) -> None:
        self.title = layout.addLabel("", row=0, col=0, colspan=2, size="9pt")
        self.weight_box = layout.addViewBox(row=1, col=0, invertY=True, enableMouse=False, defaultPadding=0)
        self.bias_box = layout.addViewBox(row=1, col=1, invertY=True, enableMouse=False, defaultPadding=0)
        self.bias_box.setFixedWidth(14)
        self.caption = layout.addLabel("", row=2, col=0, colspan=2, size="8pt", color=MUTED)
        self.weight_image = pg.ImageItem(axisOrder="row-major")
        self.bias_image = pg.ImageItem(axisOrder="row-major")
        self.weight_box.addItem(self.weight_image)
        self.bias_box.addItem(self.bias_image)
        self.bias_box.setYLink(self.weight_box)

    def show(self, layer: LayerSnapshot, scale: float) -> None:
        rows, cols = layer.shape
        weights = np.asarray(layer.weight, dtype=np.float32).reshape(rows, cols)
        bias = np.asarray(layer.bias, dtype=np.float32).reshape(rows, 1)
        colors = FROZEN_MAP if layer.frozen else TRAINABLE_MAP
        levels = (-scale, scale)
        lut = colors.getLookupTable(nPts=256)
        if layer.frozen:
            lut = (lut * 0.55 + 255 * 0.45).astype(np.uint8)  # muted: lighter and low-contrast
        for image, data in ((self.weight_image, weights), (self.bias_image, bias)):
            image.setImage(data, levels=levels, lut=lut, autoLevels=False)
        self.weight_box.setRange(xRange=(0, cols), yRange=(0, rows), padding=0)
        # A one-neuron layer is one row of weights: a short strip, not a full-height block.
        for box in (self.weight_box, self.bias_box):
            box.setMaximumHeight(28 if rows == 1 else 16_777_215)
        self.bias_box.setRange(xRange=(0, 1), padding=0)
        border = pg.mkPen(MUTED, width=1, style=Qt.PenStyle.DashLine) if layer.frozen else pg.mkPen("#c9ccd1")
        self.weight_box.setBorder(border)
        self.bias_box.setBorder(border)
        status = "  ❄ " + tr("frozen") if layer.frozen else ""
        self.title.setText(f"<b>{layer.name}</b>{status}", color=MUTED if layer.frozen else TEXT)
        self.caption.setText(f"W {rows}×{cols}  ·  b {rows}")


class WeightsView(QWidget):
    def __init__(self, model: RunModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("weightsView")
        self.model = model
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground("w")
        self.graphics.ci.setContentsMargins(4, 4, 4, 4)
        self.header = self.graphics.addLabel("", row=0, col=0, colspan=8, size="9pt", color=TEXT)
        self.layers_row = self.graphics.addLayout(row=1, col=0)
        self.color_bar = pg.ColorBarItem(values=(-1, 1), colorMap=TRAINABLE_MAP, interactive=False, width=12,
                                         colorMapMenu=False, pen=MUTED)
        self.graphics.addItem(self.color_bar, row=1, col=1)
        self.views: list[LayerView] = []
        self.frozen_layers: list[str] = []

        self.empty_hint = QLabel()
        self.empty_hint.setObjectName("weightsHint")
        self.empty_hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_hint.setWordWrap(True)
        self.empty_hint.setProperty("role", "hint")
        self.empty_hint.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        stack = QStackedLayout(self)
        stack.setStackingMode(QStackedLayout.StackingMode.StackAll)
        stack.addWidget(self.empty_hint)
        stack.addWidget(self.graphics)
        self.empty_hint.raise_()

        model.weightsChanged.connect(self.show_weights)
        self.retranslate()

    def show_weights(self, snapshot: LayerWeights | None) -> None:
        self.empty_hint.setVisible(snapshot is None)
        self.graphics.setVisible(snapshot is not None)
        if snapshot is None:
            return
        while len(self.views) < len(snapshot.layers):
            cell = self.layers_row.addLayout(row=0, col=len(self.views))
            self.views.append(LayerView(cell))
        trainable = [layer for layer in snapshot.layers if not layer.frozen] or list(snapshot.layers)
        scale = robust_scale(trainable)
        for view, layer in zip(self.views, snapshot.layers, strict=False):
            view.show(layer, robust_scale([layer]) if layer.frozen else scale)
        for column, layer in enumerate(snapshot.layers):
            self.layers_row.layout.setColumnStretchFactor(column, max(2, min(layer.shape[1], 50) // 5))
        self.color_bar.setLevels(low=-scale, high=scale)
        self.frozen_layers = [layer.name for layer in snapshot.layers if layer.frozen]
        self.header.setText(tr("Weights and biases at step {step}").format(step=f"{snapshot.step:,}"))

    def retranslate(self) -> None:
        """The hint, the header and the layers' labels in the interface's language (the Learn page switches it)."""
        self.empty_hint.setText(tr("The network's weights and biases appear here once training starts."))
        self.show_weights(self.model.layers)

    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.LanguageChange:
            self.retranslate()
        super().changeEvent(event)
