"""Lesson 1, weight, layer and bias: sliders for one input, one weight and one bias of the pretrained toy
network, with every layer's activations and the chosen neuron's ``y = σ(W·x + b)`` redrawn at once.

The network is the shipped pretrained toy (``resources/models/toy-pretrained.safetensors``) run in numpy
(:mod:`desktop_app.learn.toy_math`): a slider moves, the forward pass reruns in microseconds.  The weight and
bias are those of one neuron of the first hidden layer (marked in its heatmap), and the input is the first
feature, so one neuron's sum ``z = w·x₀ + (the other nine inputs' part) + b`` is the whole story of the formula panel.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPaintEvent, QPen
from PySide6.QtWidgets import QGridLayout, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from desktop_app.learn.i18n import marked, tr
from desktop_app.learn.toy_math import ForwardPass, ToyWeights, forward, sigmoid
from desktop_app.learn.widgets import FloatSlider, HeatStrip, TrLabel

NEURON = 46  # the first hidden layer's neuron the sliders move: one that listens to x₀ (its weight is −1.3)
FEATURE = 0  # the input feature the input slider moves (and the weight connects)
START_INPUT = np.linspace(0.2, 0.8, 10)  # the nine inputs that stay put, and x₀'s starting value


class SigmoidView(QWidget):
    """σ(z) for z in [−6, 6], with the chosen neuron's current z and σ(z) marked."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.z = 0.0
        self.setMinimumSize(220, 150)

    def show_point(self, z: float) -> None:
        self.z = z
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        margin = 18.0
        box = QRectF(margin, 8, self.width() - 2 * margin, self.height() - 30)

        def at(z: float, y: float) -> QPointF:
            return QPointF(box.left() + (z + 6) / 12 * box.width(), box.bottom() - y * box.height())

        painter.setPen(QPen(QColor("#bcccdc"), 1))
        painter.drawLine(at(-6, 0), at(6, 0))
        painter.drawLine(at(0, 0), at(0, 1))
        painter.drawLine(at(-6, 1), at(6, 1))
        curve = QPainterPath(at(-6, float(sigmoid(np.array(-6.0)))))
        for z in np.linspace(-6, 6, 121):
            curve.lineTo(at(float(z), float(sigmoid(np.array(z)))))
        painter.setPen(QPen(QColor("#334e68"), 2))
        painter.drawPath(curve)
        z = float(np.clip(self.z, -6, 6))
        point = at(z, float(sigmoid(np.array(self.z))))
        painter.setPen(QPen(QColor("#b42318"), 1, Qt.PenStyle.DashLine))
        painter.drawLine(QPointF(point.x(), box.bottom()), point)
        painter.setBrush(QColor("#b42318"))
        painter.drawEllipse(point, 5, 5)
        painter.setPen(QColor("#52606d"))
        painter.drawText(QRectF(0, box.bottom() + 4, self.width(), 18), Qt.AlignmentFlag.AlignCenter,
                         f"z = {self.z:+.2f}    σ(z) = {float(sigmoid(np.array(self.z))):.3f}")
        painter.end()


class NeuronLesson(QWidget):
    def __init__(self, network: ToyWeights, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.base = network
        self.input = FloatSlider(marked("Input x₀"), 0.0, 1.0, 0.01, float(START_INPUT[FEATURE]))
        self.weight = FloatSlider(marked("Weight w (x₀ → marked neuron)"), -6.0, 6.0, 0.01,
                                  float(network.weights["input_layer"][NEURON, FEATURE]))
        self.bias = FloatSlider(marked("Bias b (marked neuron)"), -6.0, 6.0, 0.01,
                                float(network.biases["input_layer"][NEURON]))
        self.reset_button = QPushButton()
        self.reset_button.clicked.connect(self.reset)
        self.strips = [HeatStrip(marked("Input (10)")), HeatStrip(marked("Layer 1 (50)")),
                       HeatStrip(marked("Layer 2 (50)")), HeatStrip(marked("Output"))]
        self.formula = QLabel()
        self.formula.setObjectName("neuronFormula")
        self.formula.setTextFormat(Qt.TextFormat.RichText)
        self.formula.setWordWrap(True)
        self.curve = SigmoidView()
        self.output = QLabel()
        self.output.setObjectName("neuronOutput")
        self.output.setStyleSheet("font-size: 13pt; font-weight: 600; color: #1f2933;")
        self.watch = TrLabel(marked("Move the bias: the neuron's z shifts by exactly as much, and its σ(z) slides "
                                    "along the S-curve. Near the flat ends of the curve even big changes barely "
                                    "move the output: the neuron is saturated."), role="subtle")

        sliders = QVBoxLayout()
        for slider in (self.input, self.weight, self.bias):
            sliders.addWidget(slider)
        row = QHBoxLayout()
        row.addWidget(self.output, 1)
        row.addWidget(self.reset_button)
        sliders.addLayout(row)
        strips = QHBoxLayout()
        for strip in self.strips:
            strips.addWidget(strip)
        right = QVBoxLayout()
        right.addWidget(self.formula)
        right.addWidget(self.curve, 1)
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.addLayout(sliders, 0, 0, 1, 2)
        grid.addLayout(strips, 1, 0)
        grid.addLayout(right, 1, 1)
        grid.addWidget(self.watch, 2, 0, 1, 2)
        grid.setColumnStretch(0, 3)
        grid.setColumnStretch(1, 2)
        grid.setRowStretch(1, 1)
        for slider in (self.input, self.weight, self.bias):
            slider.valueChanged.connect(self.refresh)
        self.result: ForwardPass = forward(network, START_INPUT)
        self.retranslate()

    def network(self) -> ToyWeights:
        """The pretrained network with the sliders' weight and bias in place."""
        weight = self.base.weights["input_layer"].copy()
        weight[NEURON, FEATURE] = self.weight.value()
        bias = self.base.biases["input_layer"].copy()
        bias[NEURON] = self.bias.value()
        return self.base.with_weight("input_layer", weight).with_bias("input_layer", bias)

    def input_vector(self) -> np.ndarray:
        x = START_INPUT.copy()
        x[FEATURE] = self.input.value()
        return x

    def reset(self) -> None:
        self.input.set_value(float(START_INPUT[FEATURE]))
        self.weight.set_value(float(self.base.weights["input_layer"][NEURON, FEATURE]))
        self.bias.set_value(float(self.base.biases["input_layer"][NEURON]))

    def refresh(self, *_: object) -> None:
        network, x = self.network(), self.input_vector()
        self.result = result = forward(network, x)
        layers = [x, result.activations["input_layer"], result.activations["hidden_layer"],
                  result.activations["output_layer"]]
        # Inputs and sigmoid outputs live in [0, 1]: centred on 0.5 so the colour says "high" or "low".
        for strip, values, chosen in zip(self.strips, layers, ({FEATURE}, {NEURON}, set(), set()), strict=True):
            centred = values if strip is self.strips[-1] else values - 0.5
            strip.show_values(centred, 1.5 if strip is self.strips[-1] else 0.5, chosen)
        w, b, x0 = self.weight.value(), self.bias.value(), float(x[FEATURE])
        z = float(result.z["input_layer"][NEURON])
        others = z - w * x0 - b
        neuron, others_text = tr("The marked neuron of layer 1:"), tr("(the other 9 inputs)")
        self.formula.setText(
            f"<p style='font-size:12pt'>y = σ(W·x + b)</p>"
            f"<p>{neuron}<br>z = w·x₀ + {others_text} + b<br>"
            f"&nbsp;&nbsp;= {w:.2f}·{x0:.2f} + ({others:+.2f}) + ({b:+.2f}) = <b>{z:+.3f}</b><br>"
            f"σ(z) = <b>{float(result.activations['input_layer'][NEURON]):.3f}</b></p>")
        self.curve.show_point(z)
        self.output.setText(tr("Network output: {value}").format(value=f"{result.output:+.4f}"))

    def retranslate(self) -> None:
        for slider in (self.input, self.weight, self.bias):
            slider.retranslate()
        self.reset_button.setText(tr("Reset"))
        self.watch.retranslate()
        for strip in self.strips:
            strip.update()
        self.refresh()
